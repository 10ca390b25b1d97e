// The end of .ci/run: one line per suite run, each failed test with its first message
// line, the skipped tests, then exactly "N passed, N failed". Exits 1 unless every run passed on its own:
//   node .ci/summary.mjs <name>:<vitest json>:<vitest output log>:<vitest exit code> …
// A run fails when its report is missing, it executed no test, vitest's `success` is false,
// vitest printed unhandled errors (each counts as a failure), or vitest exited non-zero
// with nothing else to show for it. On CI (CI=true) a skipped test counts as failed unless
// it is a doc block skipped with its reason (`<!-- doc-test: skip: why -->`) or a slow test
// that runs once per CI run (title, or its suite's, ending `(runs once: where)`): a skip for
// want of a tool (Chromium, the AWS CLI) means .ci/run did not install it.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ALLOWED_SKIP = /\((skip|runs once): .+\)$/;
const ANSI = /\u001b\[[0-9;]*m/g;

let passed = 0;
let failed = 0;
const allowed = [];
const refused = [];
const failures = [];
const firstLine = (text) => String(text ?? '').replace(ANSI, '').split('\n')[0].slice(0, 300);
const relative = (file) => path.relative(process.cwd(), file);
for (const arg of process.argv.slice(2)) {
  const [name, jsonFile, logFile, exitText] = arg.split(':');
  const exit = Number(exitText ?? 0);
  const problems = [];
  let p = 0;
  let x = 0;
  let s = 0;
  if (!jsonFile || !existsSync(jsonFile)) {
    problems.push('no report (the run did not finish)');
    x += 1;
  } else {
    const r = JSON.parse(readFileSync(jsonFile, 'utf8'));
    // a file that failed without a failing test (it did not load, or a hook threw) counts once
    const brokenFiles = r.testResults.filter((t) => t.status === 'failed' && !t.assertionResults.some((a) => a.status === 'failed')).length;
    p = r.numPassedTests;
    x = r.numFailedTests + brokenFiles;
    for (const file of r.testResults) {
      if (file.status === 'failed' && !file.assertionResults.some((a) => a.status === 'failed')) {
        failures.push(`${name}: ${relative(file.name)}: ${firstLine(file.message)}`);
      }
      for (const a of file.assertionResults) {
        if (a.status === 'failed') failures.push(`${name}: ${relative(file.name)} > ${a.fullName || a.title}: ${firstLine(a.failureMessages?.[0])}`);
        if (a.status !== 'skipped' && a.status !== 'pending' && a.status !== 'todo') continue;
        s += 1;
        (ALLOWED_SKIP.test(a.title) || (a.ancestorTitles ?? []).some((t) => ALLOWED_SKIP.test(t)) ? allowed : refused).push(`${name}: ${a.fullName || a.title}`);
      }
    }
    if (p + r.numFailedTests === 0) {
      problems.push('executed no test');
      x += 1;
    }
    const log = logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').replace(ANSI, '') : '';
    const unhandled = Number(/^\s*Errors\s+(\d+) errors?\b/m.exec(log)?.[1] ?? 0);
    if (unhandled > 0) {
      problems.push(`${unhandled} unhandled error(s)`);
      x += unhandled;
    }
    if (!r.success && x === 0) {
      problems.push('vitest reported success: false');
      x += 1;
    }
  }
  if (exit !== 0 && x === 0) {
    problems.push(`vitest exited ${exit}`);
    x += 1;
  }
  console.log(`${name}: ${p} passed, ${x} failed, ${s} skipped${problems.length > 0 ? ` (${problems.join('; ')})` : ''}`);
  passed += p;
  failed += x;
}
for (const t of failures) console.log(`failed: ${t}`);
for (const t of allowed) console.log(`skipped with a stated reason: ${t}`);
for (const t of refused) console.log(`skipped${process.env.CI === 'true' ? ' (counted as failed on CI)' : ''}: ${t}`);
if (process.env.CI === 'true') failed += refused.length;
console.log(`skipped: ${allowed.length + refused.length} (${allowed.length} skipped with a stated reason${process.env.CI === 'true' && refused.length > 0 ? `, ${refused.length} counted as failed` : ''})`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
