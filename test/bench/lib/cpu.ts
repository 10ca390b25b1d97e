// Where the machine's CPU went during a measurement: per-process CPU time read from
// /proc before and after, grouped as the product's process, PostgreSQL (every server
// and backend process), this process (the load generator) and everything else. On a
// 2-core machine the three share the cores, so "CPU per request" of each side says what
// bounds a throughput number better than the number itself. Linux only; elsewhere the
// reading is null.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { withClient } from './pg.ts';

export interface CpuSplit {
  /** wall-clock seconds of the window */
  seconds: number;
  /** CPU seconds per group */
  product: number;
  postgres: number;
  loadGenerator: number;
  other: number;
  /** the whole machine's busy share over the window, 0..1 */
  busy: number;
}

let ticksPerSecond: number | undefined;
function hz(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Sample {
  at: number;
  /** pid → [comm, cpu ticks] */
  procs: Map<number, [string, number]>;
  /** whole machine: [busy ticks, total ticks] */
  machine: [number, number];
}

/** A process's name and CPU ticks so far (user + system), from /proc/<pid>/stat; null once it is gone. */
function procStat(pid: number | string): [string, number] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is parenthesised and may itself contain spaces or parentheses
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return [comm, Number(fields[11]) + Number(fields[12])];
  } catch {
    return null;
  }
}

function sample(): Sample | null {
  if (os.platform() !== 'linux') return null;
  const procs = new Map<number, [string, number]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry); // null: the process ended between readdir and read
    if (stat) procs.set(Number(entry), stat);
  }
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const total = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return { at: performance.now(), procs, machine: [total - idle, total] };
}

/**
 * Starts a window; the returned function ends it and splits the CPU time spent in
 * between. `productPid` is the product's process, which must still be running at the
 * end (a process that has exited by then is not counted).
 */
export function cpuWindow(): (productPid?: number) => CpuSplit | null {
  const before = sample();
  return (productPid) => {
    const after = sample();
    if (!before || !after) return null;
    const split = { product: 0, postgres: 0, loadGenerator: 0, other: 0 };
    for (const [pid, [comm, ticks]] of after.procs) {
      const spent = (ticks - (before.procs.get(pid)?.[1] ?? 0)) / hz();
      if (spent <= 0) continue;
      if (pid === productPid) split.product += spent;
      else if (pid === process.pid) split.loadGenerator += spent;
      else if (comm === 'postgres') split.postgres += spent;
      else split.other += spent;
    }
    const busy = (after.machine[0] - before.machine[0]) / Math.max(1, after.machine[1] - before.machine[1]);
    return { seconds: (after.at - before.at) / 1000, ...split, busy };
  };
}

/** What a drain cost the server and the draining process, per job. */
export interface DrainCost {
  /** WAL written by the whole server during the window, bytes per job */
  walBytesPerJob: number;
  /** CPU of every PostgreSQL process, µs per job */
  postgresUsPerJob: number | null;
  /** CPU of the draining process (its startup included), µs per job */
  workerUsPerJob: number | null;
  /** the same without what the process spent before it answered /healthz (loading its modules, connecting), µs per job */
  workerSteadyUsPerJob?: number | null;
}

/** CPU seconds a process has spent so far (Linux), null elsewhere or once it is gone. */
export function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined || os.platform() !== 'linux') return null;
  const stat = procStat(pid);
  return stat === null ? null : stat[1] / hz();
}

/** A window over a drain: WAL position and CPU before, and per-job costs after. */
export async function drainCostWindow(
  url: string,
): Promise<(jobs: number, workerPid: number | undefined, workerStartupSeconds?: number | null) => Promise<DrainCost>> {
  const walPosition = async () => withClient(url, async (c) => (await c.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn')).rows[0]?.lsn ?? '0/0');
  const walBefore = await walPosition();
  const cpu = cpuWindow();
  return async (jobs, workerPid, workerStartupSeconds = null) => {
    const split = cpu(workerPid);
    const walAfter = await walPosition();
    const walBytes = await withClient(url, async (c) => Number((await c.query<{ b: string }>('select pg_wal_lsn_diff($1, $2)::text as b', [walAfter, walBefore])).rows[0]?.b ?? 0));
    const per = (s: number | undefined) => (split && s !== undefined ? Math.round((s / jobs) * 1e6) : null);
    return {
      walBytesPerJob: Math.round(walBytes / jobs),
      postgresUsPerJob: per(split?.postgres),
      workerUsPerJob: per(split?.product),
      workerSteadyUsPerJob: split && workerStartupSeconds !== null ? per(split.product - workerStartupSeconds) : null,
    };
  };
}

export function describeDrainCost(c: DrainCost): string {
  const us = (v: number | null) => (v === null ? 'n/a' : `${v} µs`);
  return `per job: WAL ${c.walBytesPerJob.toLocaleString('en-US')} B, PostgreSQL CPU ${us(c.postgresUsPerJob)}, worker process CPU ${us(c.workerUsPerJob)} (startup included${
    c.workerSteadyUsPerJob == null ? '' : `; ${us(c.workerSteadyUsPerJob)} once it answered /healthz`
  })`;
}

/**
 * "CPU per request: API 61 µs, PostgreSQL 95 µs, load generator 40 µs, other 2 µs;
 * machine 97% busy". Without a product label the product runs inside the load
 * generator (the peers' in-process callers), and that share is named `generatorLabel`.
 */
export function describeCpu(split: CpuSplit | null, requests: number, productLabel: string | null, generatorLabel = 'load generator'): string {
  if (!split || requests <= 0) return 'CPU split unavailable (not Linux)';
  const us = (s: number) => `${Math.round((s / requests) * 1e6)} µs`;
  const parts = [
    ...(productLabel === null ? [] : [`${productLabel} ${us(split.product)}`]),
    `PostgreSQL ${us(split.postgres)}`,
    `${generatorLabel} ${us(split.loadGenerator)}`,
    `other ${us(split.other)}`,
  ];
  return `CPU per request: ${parts.join(', ')}; machine ${Math.round(split.busy * 100)}% busy`;
}
