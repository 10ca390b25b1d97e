// .ci/summary.mjs, the end of .ci/run: a run that did not pass on its own makes CI red, and
// the last line is exactly "N passed, N failed". The all-skipped case is a real vitest run.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ci-summary-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}
const summary = (runs: string[], ci: boolean) => run(process.execPath, ['.ci/summary.mjs', ...runs], { CI: ci ? 'true' : 'false' });
const lastLine = (out: string) => out.trimEnd().split('\n').at(-1);

/** A vitest JSON report with these tests (title → status) in one file. */
async function report(name: string, tests: Record<string, string>, extra: Record<string, unknown> = {}): Promise<string> {
  const statuses = Object.values(tests);
  const file = path.join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      numPassedTests: statuses.filter((s) => s === 'passed').length,
      numFailedTests: statuses.filter((s) => s === 'failed').length,
      numPendingTests: statuses.filter((s) => s === 'skipped').length,
      numTodoTests: 0,
      success: !statuses.includes('failed'),
      testResults: [
        {
          name: 'x.spec.ts',
          status: statuses.includes('failed') ? 'failed' : 'passed',
          assertionResults: Object.entries(tests).map(([title, status]) => ({ title, fullName: title, status })),
        },
      ],
      ...extra,
    }),
  );
  return file;
}

describe('.ci/summary.mjs', () => {
  it('a deliberately all-skipped vitest run is red, on CI and off it', async () => {
    const spec = path.join(dir, 'two.unit.spec.ts');
    await writeFile(spec, "import { expect, it } from 'vitest';\nit('one', () => expect(1).toBe(1));\nit('two', () => expect(2).toBe(2));\n");
    const json = path.join(dir, 'skipped.json');
    const vitest = await run(path.join(ROOT, 'node_modules/.bin/vitest'), ['run', '--root', dir, '-t', 'no test has this name', '--reporter=json', `--outputFile.json=${json}`]);
    expect(vitest.code).toBe(0); // vitest itself calls this a success
    for (const ci of [true, false]) {
      const s = await summary([`skipped:${json}::0`], ci);
      expect(s.code, s.out).toBe(1);
      expect(s.out).toMatch(/skipped: 0 passed, 1 failed, 2 skipped \(executed no test\)/);
      expect(lastLine(s.out)).toBe(ci ? '0 passed, 3 failed' : '0 passed, 1 failed');
    }
  }, 60_000);

  it('green when every run passed; the last line is exactly "N passed, N failed", skips listed before it', async () => {
    const a = await report('a', { 'works': 'passed', 'README.md:12 npm test (skip: the suite itself)': 'skipped' });
    const b = await report('b', { 'also works': 'passed', 'more': 'passed', '10,000 messages (runs once: in the DATABASE_URL run)': 'skipped' });
    const s = await summary([`local:${a}::0`, `embedded:${b}::0`], true);
    expect(s.code, s.out).toBe(0);
    expect(s.out).toContain('skipped with a stated reason: local: README.md:12 npm test (skip: the suite itself)');
    expect(s.out).toContain('skipped with a stated reason: embedded: 10,000 messages (runs once: in the DATABASE_URL run)');
    expect(lastLine(s.out)).toBe('3 passed, 0 failed');
  });

  it('a skip for want of a tool fails CI (counted as failed), and only lists off CI', async () => {
    const a = await report('tool', { 'works': 'passed', 'GraphiQL browser test skipped: /usr/bin/chromium is missing': 'skipped' });
    const ci = await summary([`local:${a}::0`], true);
    expect(ci.code).toBe(1);
    expect(lastLine(ci.out)).toBe('1 passed, 1 failed');
    const dev = await summary([`local:${a}::0`], false);
    expect(dev.code).toBe(0);
    expect(lastLine(dev.out)).toBe('1 passed, 0 failed');
  });

  it('unhandled errors, success false, a non-zero exit and a missing report each count as failures', async () => {
    const ok = await report('ok', { 'works': 'passed' });
    const log = path.join(dir, 'unhandled.log');
    await writeFile(log, '\u001b[2m      Tests \u001b[22m 1 passed (1)\n\u001b[31m     Errors  2 errors\u001b[39m\n');
    const unhandled = await summary([`local:${ok}:${log}:1`], false);
    expect(unhandled.out).toMatch(/local: 1 passed, 2 failed, 0 skipped \(2 unhandled error\(s\)\)/);
    expect(unhandled.code).toBe(1);

    const unsure = await report('unsure', { 'works': 'passed' }, { success: false });
    expect(lastLine((await summary([`local:${unsure}::0`], false)).out)).toBe('1 passed, 1 failed');
    expect(lastLine((await summary([`local:${ok}::1`], false)).out)).toBe('1 passed, 1 failed');
    const missing = await summary([`local:${ok}::0`, `embedded:${path.join(dir, 'none.json')}::0`], false);
    expect(missing.out).toContain('embedded: 0 passed, 1 failed, 0 skipped (no report (the run did not finish))');
    expect(missing.code).toBe(1);
  });

  it('names each failed test and its first message line, so a red CI log says what to fix', async () => {
    const file = path.join(dir, 'failed.json');
    await writeFile(
      file,
      JSON.stringify({
        numPassedTests: 1,
        numFailedTests: 1,
        success: false,
        testResults: [
          {
            name: path.join(ROOT, 'test/worker/drain.int.spec.ts'),
            status: 'failed',
            assertionResults: [
              { title: 'works', fullName: 'drain works', status: 'passed' },
              { title: 'drains', fullName: 'drain drains 10,000', status: 'failed', failureMessages: ['Error: Test timed out in 120000ms.\n    at x.ts:1:1'] },
            ],
          },
          { name: path.join(ROOT, 'test/broken.int.spec.ts'), status: 'failed', message: 'Hook timed out in 10000ms.\nmore', assertionResults: [] },
        ],
      }),
    );
    const s = await summary([`local:${file}::1`], false);
    expect(s.code).toBe(1);
    expect(s.out).toContain('failed: local: test/worker/drain.int.spec.ts > drain drains 10,000: Error: Test timed out in 120000ms.');
    expect(s.out).toContain('failed: local: test/broken.int.spec.ts: Hook timed out in 10000ms.');
    expect(s.out).not.toContain('more');
    expect(lastLine(s.out)).toBe('1 passed, 2 failed');
  });
});
