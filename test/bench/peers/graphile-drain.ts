// One graphile-worker process draining BENCH_JOBS no-op jobs that are already queued,
// with its fastest settings (0.17+): a local queue of 500 jobs fetched and locked per
// query, and completions sent at once in batches (`completeJobBatchDelay` 0).
// graphile-worker deletes a job when it completes, so its tables keep no completion
// time: the span is measured here, Node clock, from the first `job:start` to the moment
// its jobs table is empty. `job:complete` alone would stop the clock too early: with
// batched completions it fires when the task returns, before its completion is committed.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { performance } from 'node:perf_hooks';
import { run, type Logger, type WorkerEvents } from 'graphile-worker';
import { Logger as GwLogger } from 'graphile-worker';
import { drainCostWindow } from '../lib/cpu.ts';
import { printResult } from '../lib/proc.ts';

const total = Number(process.env.BENCH_JOBS);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const silent: Logger = new GwLogger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

const events = new EventEmitter() as WorkerEvents;
let first = 0;
let done = 0;
const finished = new Promise<void>((resolve) => {
  events.on('job:start', () => {
    if (first === 0) first = performance.now();
  });
  events.on('job:complete', ({ error }) => {
    if (error) process.stderr.write(`job failed: ${String(error)}\n`);
    done++;
    if (done === total) resolve();
  });
});

const cost = await drainCostWindow(process.env.BENCH_DATABASE_URL as string);
const probe = new pg.Client({ connectionString: process.env.BENCH_DATABASE_URL });
await probe.connect();
const runner = await run({
  connectionString: process.env.BENCH_DATABASE_URL,
  concurrency,
  maxPoolSize: concurrency + 2,
  pollInterval: 1_000,
  noHandleSignals: true,
  logger: silent,
  events,
  taskList: { noop: async () => {} },
  preset: {
    worker: {
      localQueue: { size: Number(process.env.BENCH_GRAPHILE_LOCAL_QUEUE ?? 500) },
      completeJobBatchDelay: 0,
    },
  },
});
await finished;
// every task has returned; the clock stops when the last completion batch has committed
for (;;) {
  const { rows } = await probe.query<{ left: number }>('select count(*)::int as left from graphile_worker._private_jobs');
  if (rows[0]?.left === 0) break;
  await new Promise((r) => setTimeout(r, 2));
}
const last = performance.now();
const spent = await cost(done, process.pid);
await probe.end();
await runner.stop();
printResult({ jobs: done, seconds: (last - first) / 1000, clock: 'node: first job:start → jobs table empty (last completion committed)', cost: spent });
process.exit(0);
