// The targets, checked against one run's measurements (ratios within the run).
import type { Measurement } from './types.ts';
import { GRAPHILE_WORKER, PG_BOSS } from './peers.ts';

export interface TargetResult {
  target: string;
  status: 'met' | 'not met' | 'not measured';
  detail: string;
}

const find = (ms: readonly Measurement[], scenario: string, subject: string, metric: string): number | null =>
  ms.find((m) => m.scenario === scenario && m.subject === subject && m.metric === metric)?.value ?? null;

const fmt = (n: number, digits = 2) => n.toLocaleString('en-US', { maximumFractionDigits: digits });

export function evaluateTargets(ms: readonly Measurement[]): TargetResult[] {
  const out: TargetResult[] = [];
  const check = (target: string, values: (number | null)[], ok: (...v: number[]) => boolean, detail: (...v: number[]) => string) => {
    if (values.some((v) => v === null || !Number.isFinite(v))) {
      out.push({ target, status: 'not measured', detail: '' });
      return;
    }
    const v = values as number[];
    out.push({ target, status: ok(...v) ? 'met' : 'not met', detail: detail(...v) });
  };
  const gw = find(ms, 'drain', GRAPHILE_WORKER, 'jobs/s');
  const INLINE = 'invoke-ledger (inline)';
  const inline = find(ms, 'drain', INLINE, 'jobs/s');
  const thread = find(ms, 'drain', 'invoke-ledger (worker threads)', 'jobs/s');
  const epi = find(ms, 'drain', INLINE, 'events/invocation');
  check('drain, inline ≥ 1.0× graphile-worker, ≥ 3 events/invocation', [inline, gw, epi], (a, b, e) => a / b >= 1 && e >= 3,
    (a, b, e) => `${fmt(a, 0)} vs ${fmt(b, 0)} jobs/s = ${fmt(a / b)}×, ${fmt(e)} events/invocation`);
  const workerCpu = find(ms, 'drain', INLINE, 'worker CPU/job');
  const pgCpu = find(ms, 'drain', INLINE, 'PostgreSQL CPU/job');
  const wal = find(ms, 'drain', INLINE, 'WAL/job');
  check('drain, inline, per job: worker process ≤ 60 µs CPU, PostgreSQL ≤ 100 µs, WAL ≤ 1,500 B', [workerCpu, pgCpu, wal],
    (w, p, b) => w <= 60 && p <= 100 && b <= 1500,
    (w, p, b) => `worker ${fmt(w, 0)} µs (once started), PostgreSQL ${fmt(p, 0)} µs, WAL ${fmt(b, 0)} B`);
  check('drain, worker threads ≥ 0.6× graphile-worker', [thread, gw], (a, b) => a / b >= 0.6,
    (a, b) => `${fmt(a, 0)} vs ${fmt(b, 0)} jobs/s = ${fmt(a / b)}×`);
  const defaults = find(ms, 'drain', 'invoke-ledger (inline, defaults)', 'jobs/s');
  check('drain with no tuning variables ≥ 0.8× the tuned inline drain', [defaults, inline], (a, b) => a / b >= 0.8,
    (a, b) => `${fmt(a, 0)} vs ${fmt(b, 0)} jobs/s = ${fmt(a / b)}×`);
  const acc = find(ms, 'accept', 'invoke-ledger (HTTP Event)', 'req/s');
  const boss = find(ms, 'accept', `${PG_BOSS} send`, 'req/s');
  const apiCpu = find(ms, 'accept', 'invoke-ledger (HTTP Event)', 'API CPU/request');
  check('accept ≥ 3× pg-boss send, API CPU ≤ 100 µs per request', [acc, boss, apiCpu], (a, b, c) => a / b >= 3 && c <= 100,
    (a, b, c) => `${fmt(a, 0)} vs ${fmt(b, 0)} req/s = ${fmt(a / b)}×, API ${fmt(c, 0)} µs per request`);
  const s64 = find(ms, 'sync', 'invoke-ledger (64 conn)', 'req/s');
  const s64p99 = find(ms, 'sync', 'invoke-ledger (64 conn)', 'p99');
  check('sync ≥ 3,000/s at 64 connections, p99 ≤ 50 ms', [s64, s64p99], (a, p) => a >= 3000 && p <= 50,
    (a, p) => `${fmt(a, 0)} req/s (${fmt(a / 3000)}× the target), p99 ${fmt(p)} ms`);
  const s1 = find(ms, 'sync', 'invoke-ledger (1 conn)', 'p50');
  const b1 = find(ms, 'sync', 'bare Hono (1 conn)', 'p50');
  check('sync p50 overhead at 1 connection ≤ 1 ms over the bare route', [s1, b1], (a, b) => a - b <= 1,
    (a, b) => `${fmt(a, 3)} − ${fmt(b, 3)} = ${fmt(a - b, 3)} ms`);
  const p50 = find(ms, 'pickup', 'invoke-ledger', 'p50');
  const p99 = find(ms, 'pickup', 'invoke-ledger', 'p99');
  check('pickup p50 ≤ 5 ms, p99 ≤ 25 ms', [p50, p99], (a, b) => a <= 5 && b <= 25, (a, b) => `p50 ${fmt(a)} ms, p99 ${fmt(b)} ms`);
  const scaled = find(ms, 'scale', 'invoke-ledger (inline, history)', 'jobs/s');
  check('drain with 5M historical events ≥ 0.8× the empty-ledger drain', [scaled, inline], (a, b) => a / b >= 0.8,
    (a, b) => `${fmt(a, 0)} vs ${fmt(b, 0)} jobs/s = ${fmt(a / b)}×`);
  return out;
}
