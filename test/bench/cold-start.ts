// Cold start of a worker-thread function (issue 26): time from handing an attempt to the
// thread pool to its outcome, for
//   - a new pool (no thread yet: the thread starts, imports the module, runs),
//   - an idle thread that has not imported this module (a new version of a function),
//   - a warm thread (the module imported before),
// and the memory one more thread with the module imported costs the process.
// No database: the pool is what the worker and the API hand attempts to (apps/runtimes).
// Run: npx tsx test/bench/cold-start.ts   (COLD_START_SAMPLES, default 30)
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { ThreadPool } from '../../apps/runtimes/thread-pool.ts';

const samples = Number(process.env.COLD_START_SAMPLES ?? 30);
const logger = pino({ level: 'silent' });
const dir = mkdtempSync(path.join(tmpdir(), 'cold-start-'));
const source = path.resolve(import.meta.dirname, 'fixtures/functions/noop.mjs');
let versions = 0;
/** a module URL no thread has imported: a new version of the function */
const newVersion = (): string => {
  const file = path.join(dir, `noop-v${++versions}.mjs`);
  copyFileSync(source, file);
  return pathToFileURL(file).href;
};
const request = (moduleUrl: string) => ({
  moduleUrl, exportName: 'handler', payload: {}, invocationId: '00000000-0000-7000-8000-000000000000',
  functionName: 'cold', functionVersion: versions, attempt: 1, timeoutMs: 30_000, clientContext: null,
});
const timed = async (pool: ThreadPool, url: string): Promise<number> => {
  const t0 = performance.now();
  const outcome = await pool.run(request(url));
  if (!outcome.ok) throw new Error(`attempt failed: ${JSON.stringify(outcome.error)}`);
  return performance.now() - t0;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};
const line = (name: string, xs: number[]) =>
  console.log(`| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(1)} ms | ${pct(xs, 99).toFixed(1)} ms | ${Math.max(...xs).toFixed(1)} ms |`);

try {
  const fresh: number[] = [];
  for (let i = 0; i < samples; i++) {
    const pool = new ThreadPool(128, 1, logger);
    fresh.push(await timed(pool, newVersion()));
    await pool.close();
  }
  const pool = new ThreadPool(128, 1, logger);
  await timed(pool, newVersion()); // the thread exists from here on
  const newModule: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < samples; i++) {
    const url = newVersion();
    newModule.push(await timed(pool, url));
    for (let j = 0; j < 10; j++) warm.push(await timed(pool, url));
  }
  await pool.close();

  // memory: threads with the module imported, kept alive in one pool
  const rss = () => { globalThis.gc?.(); return process.memoryUsage().rss; };
  const counts = [0, 1, 2, 4, 8];
  const memory: string[] = [];
  for (const n of counts) {
    const p = new ThreadPool(128, Math.max(n, 1), logger);
    const url = newVersion();
    const before = rss();
    await Promise.all(Array.from({ length: n }, () => p.run(request(url))));
    await new Promise((r) => setTimeout(r, 200));
    memory.push(`${n} threads: +${((rss() - before) / 1048576).toFixed(1)} MiB RSS (${p.stats().threads} live)`);
    await p.close();
  }
  console.log(`node ${process.version}, ${samples} samples each; time from pool.run() to the outcome of the no-op handler\n`);
  console.log('| case | n | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |');
  line('new pool: thread start + import + run', fresh);
  line('idle thread, module not imported (new version)', newModule);
  line('warm thread (module imported)', warm);
  console.log(`\n${memory.join('\n')}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
