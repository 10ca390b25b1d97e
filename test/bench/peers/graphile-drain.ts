// One graphile-worker process draining BENCH_JOBS no-op jobs that are already queued.
// graphile-worker deletes a job when it completes, so its tables keep no completion
// time: the span is measured here, Node clock, first `job:start` → last `job:complete`
// (the event after the job's completion query has returned).
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { run, type Logger, type WorkerEvents } from 'graphile-worker';
import { Logger as GwLogger } from 'graphile-worker';
import { printResult } from '../lib/proc.ts';

const total = Number(process.env.BENCH_JOBS);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const silent: Logger = new GwLogger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

const events = new EventEmitter() as WorkerEvents;
let first = 0;
let last = 0;
let done = 0;
const finished = new Promise<void>((resolve) => {
  events.on('job:start', () => {
    if (first === 0) first = performance.now();
  });
  events.on('job:complete', ({ error }) => {
    if (error) process.stderr.write(`job failed: ${String(error)}\n`);
    done++;
    last = performance.now();
    if (done === total) resolve();
  });
});

const runner = await run({
  connectionString: process.env.BENCH_DATABASE_URL,
  concurrency,
  maxPoolSize: concurrency + 2,
  pollInterval: 1_000,
  noHandleSignals: true,
  logger: silent,
  events,
  taskList: { noop: async () => {} },
});
await finished;
await runner.stop();
printResult({ jobs: done, seconds: (last - first) / 1000, clock: 'node: first job:start → last job:complete' });
process.exit(0);
