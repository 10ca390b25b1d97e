// `invoke-ledger replay start|show|list` (docs/replay.md): starts a replay run, waits for
// it, and prints its report as a table (or the whole report as JSON: the export). The
// server's workers run the replays; this command only writes the run and reads the ledger.
import { openDatabase } from '../../db/connection.ts';
import { isLedgerError } from '../../db/errors.ts';
import type { InvocationStatus } from '../../db/lifecycle.ts';
import type { ReplayPair } from '../../db/replay-report.ts';
import { isAliasTarget, listReplays, replayProgress, replayReport, startReplay, type ReplayReport, type ReplayRun } from '../../db/replay-runs.ts';
import type { Output } from './cli.ts';
import { formatTable } from './sql.ts';
import { databaseRole } from './config.ts';

interface Io {
  out: Output;
  err: Output;
}

export interface StartOptions {
  target?: string;
  from?: string;
  to?: string;
  status?: string[];
  id?: string[];
  sample?: string;
  concurrency?: string;
  wait?: boolean;
  json?: boolean;
  examples?: string;
  timeout?: string;
}

const INT = 23;
const TEXT = 25;

function date(v: string | undefined, what: string): Date | null {
  if (v === undefined) return null;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new UsageError(`${what}: not a date: ${JSON.stringify(v)} (ISO 8601, e.g. 2026-11-30T12:00:00Z)`);
  return d;
}

function int(v: string | undefined, what: string): number | null {
  if (v === undefined) return null;
  if (!/^[0-9]+$/.test(v)) throw new UsageError(`${what}: not a whole number: ${JSON.stringify(v)}`);
  return Number(v);
}

class UsageError extends Error {}

async function withHandle(url: string, io: Io, fn: (db: ReturnType<typeof openDatabase>['db']) => Promise<number>): Promise<number> {
  const handle = openDatabase(url, { role: databaseRole(), max: 2, applicationName: 'invoke-ledger replay' });
  try {
    return await fn(handle.db);
  } catch (e) {
    if (e instanceof UsageError || isLedgerError(e)) {
      io.err.write(`replay: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    await handle.close();
  }
}

export function replayStartCommand(url: string, functionName: string, o: StartOptions, io: Io): Promise<number> {
  return withHandle(url, io, async (db) => {
    const run = await startReplay(db, {
      selection: {
        functionName,
        from: date(o.from, '--from'),
        to: date(o.to, '--to'),
        statuses: o.status ? (o.status.flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()) as InvocationStatus[]) : null,
        ids: o.id ? o.id.flatMap((s) => s.split(',')).map((s) => s.trim()) : null,
        sample: int(o.sample, '--sample'),
      },
      target: o.target ?? null,
      concurrency: int(o.concurrency, '--concurrency'),
      createdBy: `cli:${process.env.USER ?? 'unknown'}`,
    });
    if (!o.wait) {
      io.out.write(o.json ? `${JSON.stringify(run, null, 2)}\n` : `${describeRun(run)}\nstarted: the workers run it; see it with: invoke-ledger replay show ${run.id}\n`);
      return 0;
    }
    if (!o.json) io.out.write(`${describeRun(run)}\n`);
    const until = Date.now() + (int(o.timeout, '--timeout') ?? 600) * 1000;
    for (;;) {
      const p = (await replayProgress(db, [run.id])).get(run.id);
      if (p?.done) break;
      if (Date.now() > until) {
        io.err.write(`replay: not finished after --timeout (${p?.finished ?? 0}/${run.total}); is a worker running (invoke-ledger start, REPLAY_CONCURRENCY > 0)?\n`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return printReport(db, run.id, o, io);
  });
}

export function replayShowCommand(url: string, id: string, o: { json?: boolean; examples?: string }, io: Io): Promise<number> {
  return withHandle(url, io, (db) => printReport(db, id, o, io));
}

export function replayListCommand(url: string, o: { function?: string; json?: boolean }, io: Io): Promise<number> {
  return withHandle(url, io, async (db) => {
    const runs = await listReplays(db, { functionName: o.function ?? null, first: 50 });
    const progress = await replayProgress(db, runs.map((r) => r.id));
    if (o.json) {
      io.out.write(`${JSON.stringify(runs.map((r) => ({ ...r, progress: progress.get(r.id) })), null, 2)}\n`);
      return 0;
    }
    io.out.write(
      formatTable({
        columns: ['id', 'function', 'target', 'version', 'finished', 'total', 'created_at'],
        columnTypes: [TEXT, TEXT, TEXT, INT, INT, INT, TEXT],
        rows: runs.map((r) => [r.id, r.functionName, r.target, r.targetVersion, progress.get(r.id)?.finished ?? 0, r.total, r.createdAt]),
      }),
    );
    return 0;
  });
}

const targetOf = (run: ReplayRun) =>
  isAliasTarget(run.target) ? `alias ${run.target} (version ${run.targetVersion} when it started)` : `version ${run.targetVersion}${run.target === String(run.targetVersion) ? '' : ` (${run.target})`}`;

function describeRun(run: ReplayRun): string {
  return `replay ${run.id}: ${run.total} recorded invocation(s) of ${run.functionName} against ${targetOf(run)}, ${run.concurrency} at a time`;
}

async function printReport(db: ReturnType<typeof openDatabase>['db'], id: string, o: { json?: boolean; examples?: string }, io: Io): Promise<number> {
  const report = await replayReport(db, id, { examples: int(o.examples, '--examples') ?? 3, withPairs: o.json === true });
  io.out.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return 0;
}

const clip = (s: string, n = 70) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const show = (v: unknown) => (v === undefined ? '' : JSON.stringify(v));

/** What differs in one pair, in one line. */
export function differenceOf(p: ReplayPair): string {
  switch (p.kind) {
    case 'changed':
      return p.diff.map((d) => (d.op === 'CREATE' ? `+${d.path} ${show(d.after)}` : d.op === 'REMOVE' ? `-${d.path} ${show(d.before)}` : `${d.path} ${show(d.before)} → ${show(d.after)}`)).join('; ');
    case 'error_now':
      return `now ${p.after?.errorType}: ${p.after?.errorMessage}`;
    case 'error_before':
      return `before ${p.before.errorType}: ${p.before.errorMessage}`;
    case 'same_error':
    case 'changed_error':
      return `${p.before.errorType} → ${p.after?.errorType}: ${p.after?.errorMessage}`;
    case 'pending':
      return p.after ? `replay ${p.after.status}` : 'not started';
    case 'same':
      return '';
  }
}

const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);

export function formatReport(r: ReplayReport): string {
  const rows: unknown[][] = [];
  for (const k of r.byKind) {
    rows.push([k.kind, k.count, null, null, null]);
    for (const p of k.examples) {
      if (k.kind === 'same') continue;
      rows.push([null, null, p.ordinal, clip(JSON.stringify(p.payload) ?? 'null', 40), clip(differenceOf(p), 100)]);
    }
  }
  const head = `replay ${r.replay.id}: ${r.replay.functionName} against ${targetOf(r.replay)}, ${r.finished}/${r.total} finished\n`;
  const table = formatTable({ columns: ['kind', 'count', '#', 'input', 'difference'], columnTypes: [TEXT, INT, INT, TEXT, TEXT], rows });
  const d = r.durations;
  const durations =
    `durations (median of ${d.pairs} pairs): ${ms(d.beforeMedianMs)} before, ${ms(d.afterMedianMs)} now` +
    (d.medianRatio === null || !d.beforeMedianMs ? '' : `, after/before ×${d.medianRatio}`) +
    (d.slowest[0] && (d.slowest[0].durationChangeMs ?? 0) > 0 ? `; slowest #${d.slowest[0].ordinal} +${d.slowest[0].durationChangeMs} ms` : '') +
    '\n';
  // through a weighted alias the replays ran several versions: what each version did
  const versions =
    r.byVersion.length > 1 || isAliasTarget(r.replay.target)
      ? r.byVersion.map((v) => `version ${v.version}: ${v.count} replay(s), ${v.byKind.map((k) => `${k.count} ${k.kind}`).join(', ')}\n`).join('')
      : '';
  return head + table + versions + durations;
}
