// Replay runs (docs/replay.md): recorded invocations run again against another version
// of their function. (Not to be confused with db/replay.ts, which re-folds the ledger's
// events to verify the projections.)
//
// - startReplay resolves the target, selects the originals and writes the run and its
//   items in one statement;
// - claimReplayItems (the worker's replay runner) accepts and starts replay invocations
//   (type `replay`, `accepted.data.replay = {replayId, of}`) within the run's concurrency,
//   recording which invocation answers which item in the same transaction;
// - replayReport reads both outcomes of every pair from the events and compares them
//   (db/replay-report.ts). Nothing is stored that could disagree with the ledger.
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { ALIAS_NAME, getAlias, pickAliasVersion, type Alias } from './control-plane.ts';
import { LedgerError } from './errors.ts';
import { requireFunction, type FunctionVersion, type FunctionVersionCache } from './functions.ts';
import { acceptInvocations, eventsOf, UUID, type AcceptRequest } from './invocations.ts';
import { STATUSES, type InvocationState, type InvocationStatus, type LedgerEvent } from './lifecycle.ts';
import { comparePair, summarise, type ReplayOutcome, type ReplayPair, type ReplaySummary } from './replay-report.ts';
import type { Db, Executor } from './schema.ts';

export const LATEST = '$LATEST';
/** originals in one run; sample or narrow the selection beyond it */
export const MAX_REPLAY_ITEMS = 10_000;
export const DEFAULT_REPLAY_CONCURRENCY = 2;
export const MAX_REPLAY_CONCURRENCY = 64;
/** what is replayed by default: invocations that ended with a result or an error */
export const DEFAULT_REPLAY_STATUSES: readonly InvocationStatus[] = ['succeeded', 'failed', 'dead_lettered'];
const REPLAYABLE = new Set<InvocationStatus>(DEFAULT_REPLAY_STATUSES);
/** the first key of the run's advisory lock (the second is hashtext of its id) */
const REPLAY_LOCK_CLASS = 0x5265706c; // 'Repl'

export interface ReplaySelection {
  functionName: string;
  /** accepted at or after */
  from?: Date | null;
  /** accepted before */
  to?: Date | null;
  /** default: succeeded, failed, dead_lettered */
  statuses?: readonly InvocationStatus[] | null;
  /** exactly these invocations (each must match the rest of the selection) */
  ids?: readonly string[] | null;
  /** a uniform random sample of this many; without it every match, oldest first */
  sample?: number | null;
}

export interface StartReplayRequest {
  selection: ReplaySelection;
  /** `$LATEST`, a version number, or an alias of the function (routed per replay, docs/replay.md) */
  target?: string | null;
  /** replay invocations of this run running at once, across every worker (default 2) */
  concurrency?: number | null;
  createdBy?: string | null;
}

export interface ReplayRun {
  id: string;
  functionName: string;
  target: string;
  targetVersion: number;
  selection: Record<string, unknown>;
  concurrency: number;
  total: number;
  createdBy: string | null;
  createdAt: Date;
}

export interface ReplayProgress {
  total: number;
  /** replay invocations accepted so far */
  started: number;
  /** replay invocations that have ended */
  finished: number;
  done: boolean;
}

/** An alias name, as opposed to `$LATEST` or a version number. */
export const isAliasTarget = (target: string): boolean => target !== LATEST && !/^\d+$/.test(target);

export interface ReplayTarget {
  /** `$LATEST` and a number: the version every replay runs; an alias: the version it names now */
  fn: FunctionVersion;
  /** the alias, whose weights route each replay (claimReplayItems) */
  alias: Alias | null;
}

/**
 * The one place a replay target becomes a function version when a run starts: `$LATEST`
 * (the latest version now, fixed for the whole run), a version number, or an alias (its
 * own version is recorded as the run's targetVersion; each replay is routed through the
 * alias when it is accepted, see replayVersion).
 */
export async function resolveReplayTarget(db: Executor, functionName: string, target: string): Promise<ReplayTarget> {
  if (target === LATEST) return { fn: await requireFunction(db, functionName), alias: null };
  if (/^[1-9][0-9]{0,8}$/.test(target)) return { fn: await requireFunction(db, functionName, Number(target)), alias: null };
  if (!isAliasTarget(target) || !ALIAS_NAME.test(target)) {
    throw new LedgerError('InvalidParameter', `Replay target must be ${LATEST}, a version number or an alias name: ${JSON.stringify(target)}`);
  }
  const alias = await getAlias(db, functionName, target);
  return { fn: await requireFunction(db, functionName, alias.functionVersion), alias };
}

/**
 * The version one replay of a run runs, decided when it is accepted. Through an alias it
 * is what Lambda would run for a live invocation through that alias at that moment: the
 * alias as it is now, its additional version drawn with its weight for each replay. An
 * alias deleted since the run started leaves the version it named then (targetVersion).
 */
export function replayVersion(run: { targetVersion: number }, alias: Alias | null, random: number): number {
  return alias ? pickAliasVersion(alias, random) : run.targetVersion;
}

function invalid(message: string): LedgerError {
  return new LedgerError('InvalidParameter', message);
}

function checkSelection(s: ReplaySelection): void {
  if (s.from && s.to && s.from.getTime() >= s.to.getTime()) throw invalid('Replay selection: from must be before to');
  for (const st of s.statuses ?? []) {
    if (!STATUSES.includes(st)) throw invalid(`Replay selection: unknown status ${JSON.stringify(st)}`);
    if (!REPLAYABLE.has(st)) throw invalid(`Replay selection: ${st} invocations have no outcome to compare; choose among ${DEFAULT_REPLAY_STATUSES.join(', ')}`);
  }
  if (s.statuses && s.statuses.length === 0) throw invalid('Replay selection: statuses is empty');
  for (const id of s.ids ?? []) if (!UUID.test(id)) throw invalid(`Replay selection: not an invocation id: ${JSON.stringify(id)}`);
  if (s.ids && s.ids.length > MAX_REPLAY_ITEMS) throw invalid(`Replay selection: at most ${MAX_REPLAY_ITEMS} ids`);
  if (s.sample != null && (!Number.isInteger(s.sample) || s.sample < 1 || s.sample > MAX_REPLAY_ITEMS)) {
    throw invalid(`Replay selection: sample must be an integer from 1 to ${MAX_REPLAY_ITEMS}`);
  }
}

/**
 * Starts a run: the target is resolved once, the originals are selected (recorded,
 * finished invocations of the function that are not themselves replays) and the run and
 * its items are written in one statement. Nothing runs here: the workers' replay runners
 * pick the run up. Refused (nothing written) when the selection is empty, too large, or
 * names ids it does not match.
 */
export async function startReplay(db: Db, req: StartReplayRequest): Promise<ReplayRun> {
  const s = req.selection;
  checkSelection(s);
  const target = req.target ?? LATEST;
  const concurrency = req.concurrency ?? DEFAULT_REPLAY_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_REPLAY_CONCURRENCY) {
    throw invalid(`Replay concurrency must be an integer from 1 to ${MAX_REPLAY_CONCURRENCY}`);
  }
  const { fn } = await resolveReplayTarget(db, s.functionName, target);
  const statuses = [...(s.statuses ?? DEFAULT_REPLAY_STATUSES)];
  const ids = s.ids ? [...new Set(s.ids.map((i) => i.toLowerCase()))] : null;
  const limit = s.sample ?? MAX_REPLAY_ITEMS + 1;
  const selection = {
    ...(s.from ? { from: s.from.toISOString() } : {}),
    ...(s.to ? { to: s.to.toISOString() } : {}),
    statuses,
    ...(ids ? { ids } : {}),
    ...(s.sample != null ? { sample: s.sample } : {}),
  };
  const id = uuidv7();
  // one snapshot for the count and the insert: a redrive in between cannot make `total` a lie
  return db.transaction().setIsolationLevel('repeatable read').execute(async (tx) => {
    // counted first so a refused selection writes nothing
    const { rows: counted } = await sql<{ n: number }>`
      select count(*)::int as n from (
        select 1 from ledger.invocations i
        where i.function_name = ${s.functionName} and i.invocation_type <> 'replay' and i.status = any(${statuses}::text[])
          and (${s.from ?? null}::timestamptz is null or i.accepted_at >= ${s.from ?? null}::timestamptz)
          and (${s.to ?? null}::timestamptz is null or i.accepted_at < ${s.to ?? null}::timestamptz)
          and (${ids}::uuid[] is null or i.id = any(${ids}::uuid[]))
        limit ${limit}) m`.execute(tx);
    const n = counted[0]?.n ?? 0;
    if (n === 0) throw invalid(`Nothing to replay: no recorded ${statuses.join('/')} invocation of ${s.functionName} matches the selection`);
    if (ids && s.sample == null && n < ids.length) {
      throw invalid(`Replay selection: ${ids.length - n} of the ids are not recorded ${statuses.join('/')} invocations of ${s.functionName} in the selection (replays cannot be replayed)`);
    }
    if (n > MAX_REPLAY_ITEMS) throw invalid(`Replay selection matches more than ${MAX_REPLAY_ITEMS} invocations: narrow it or give a sample size`);
    const { rows } = await sql<{ created_at: Date }>`
      with run as (
        insert into ledger.replays (id, function_name, target, target_version, selection, concurrency, total, created_by)
        values (${id}::uuid, ${s.functionName}, ${target}, ${fn.version}, ${JSON.stringify(selection)}::jsonb, ${concurrency}, ${n}, ${req.createdBy ?? null})
        returning created_at
      ), picked as (
        select i.id, i.accepted_at from ledger.invocations i
        where i.function_name = ${s.functionName} and i.invocation_type <> 'replay' and i.status = any(${statuses}::text[])
          and (${s.from ?? null}::timestamptz is null or i.accepted_at >= ${s.from ?? null}::timestamptz)
          and (${s.to ?? null}::timestamptz is null or i.accepted_at < ${s.to ?? null}::timestamptz)
          and (${ids}::uuid[] is null or i.id = any(${ids}::uuid[]))
        order by case when ${s.sample != null} then random() end, i.accepted_at, i.id
        limit ${n}
      ), items as (
        insert into ledger.replay_items (replay_id, ordinal, original_id)
        select ${id}::uuid, row_number() over (order by accepted_at, id), id from picked
      )
      select created_at from run`.execute(tx);
    return {
      id,
      functionName: s.functionName,
      target,
      targetVersion: fn.version,
      selection,
      concurrency,
      total: n,
      createdBy: req.createdBy ?? null,
      createdAt: (rows[0] as { created_at: Date }).created_at,
    };
  });
}

interface RunRow {
  id: string;
  function_name: string;
  target: string;
  target_version: number;
  selection: Record<string, unknown>;
  concurrency: number;
  total: number;
  created_by: string | null;
  created_at: Date;
}

const toRun = (r: RunRow): ReplayRun => ({
  id: r.id,
  functionName: r.function_name,
  target: r.target,
  targetVersion: r.target_version,
  selection: r.selection,
  concurrency: r.concurrency,
  total: r.total,
  createdBy: r.created_by,
  createdAt: r.created_at,
});

export async function getReplay(db: Executor, id: string): Promise<ReplayRun | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<RunRow>`select * from ledger.replays where id = ${id}::uuid`.execute(db);
  return rows[0] ? toRun(rows[0]) : null;
}

export async function requireReplay(db: Executor, id: string): Promise<ReplayRun> {
  const run = await getReplay(db, id);
  if (!run) throw new LedgerError('ReplayNotFound', `Replay not found: ${id}`);
  return run;
}

/** Newest first. */
export async function listReplays(db: Executor, o: { functionName?: string | null; first?: number | null } = {}): Promise<ReplayRun[]> {
  const { rows } = await sql<RunRow>`
    select * from ledger.replays where ${o.functionName ?? null}::text is null or function_name = ${o.functionName ?? null}
    order by created_at desc, id desc limit ${Math.min(100, Math.max(1, o.first ?? 20))}`.execute(db);
  return rows.map(toRun);
}

export async function replayProgress(db: Executor, ids: readonly string[]): Promise<Map<string, ReplayProgress>> {
  const { rows } = await sql<{ replay_id: string; total: number; started: number; finished: number }>`
    select r.id as replay_id, r.total,
      count(it.invocation_id)::int as started,
      count(*) filter (where n.status in ('succeeded', 'failed'))::int as finished
    from ledger.replays r
    left join ledger.replay_items it on it.replay_id = r.id
    left join ledger.invocations n on n.id = it.invocation_id
    where r.id = any(${ids}::uuid[]) group by r.id, r.total`.execute(db);
  return new Map(rows.map((r) => [r.replay_id, { total: r.total, started: r.started, finished: r.finished, done: r.finished >= r.total }]));
}

// ---------------------------------------------------------------------------------
// running

export interface ClaimedReplay {
  /** the replay invocation, running (accepted and started in the claiming transaction) */
  state: InvocationState;
  fn: FunctionVersion;
  payload: unknown;
  replay: { replayId: string; originalInvocationId: string; originalVersion: number };
}

/**
 * Accepts and starts up to `limit` replay invocations for this worker, oldest run first,
 * each run within its own concurrency across every worker: a run's advisory lock is held
 * while its running replays are counted and the next items taken, so two workers cannot
 * both take its last slot. The item gets its invocation id in the same transaction.
 * Replay invocations carry no idempotency key and never count against the function's
 * reservedConcurrency (db/concurrency.ts).
 */
export async function claimReplayItems(
  db: Db,
  o: { workerId: string; limit: number; versions: FunctionVersionCache; leaseGraceMs: number; random?: () => number },
): Promise<ClaimedReplay[]> {
  if (o.limit <= 0) return [];
  const random = o.random ?? Math.random;
  const { rows: runs } = await sql<{ id: string; function_name: string; target: string; target_version: number; concurrency: number }>`
    select r.id, r.function_name, r.target, r.target_version, r.concurrency from ledger.replays r
    where exists (select 1 from ledger.replay_items it where it.replay_id = r.id and it.invocation_id is null limit 1)
    order by r.created_at, r.id limit 20`.execute(db);
  const out: ClaimedReplay[] = [];
  for (const run of runs) {
    if (out.length >= o.limit) break;
    const targetFn = await o.versions.get(run.function_name, run.target_version);
    if (!targetFn) continue; // versions are never deleted; a run cannot name a missing one
    const claimed = await db.transaction().execute(async (tx) => {
      const { rows: locked } = await sql<{ ok: boolean }>`
        select pg_try_advisory_xact_lock(${REPLAY_LOCK_CLASS}, hashtext(${run.id})) as ok`.execute(tx);
      if (!locked[0]?.ok) return [];
      // from the few replay rows of the queue (partial index queue_replays), not the run's items
      const { rows: busy } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.queue q
        join ledger.replay_items it on it.invocation_id = q.invocation_id
        where q.invocation_type = 'replay' and it.replay_id = ${run.id}::uuid`.execute(tx);
      const take = Math.min(o.limit - out.length, run.concurrency - (busy[0]?.n ?? 0));
      if (take <= 0) return [];
      const { rows: items } = await sql<{ ordinal: number; original_id: string; original_version: number; payload: unknown }>`
        select it.ordinal, it.original_id, (e.data ->> 'functionVersion')::int as original_version, e.data -> 'payload' as payload
        from ledger.replay_items it
        join ledger.events e on e.invocation_id = it.original_id and e.seq = 1
        where it.replay_id = ${run.id}::uuid and it.invocation_id is null
        order by it.ordinal limit ${take}`.execute(tx);
      if (items.length === 0) return [];
      // through an alias, each replay is routed as it is accepted (docs/replay.md#targets)
      const alias = isAliasTarget(run.target) ? await getAlias(tx, run.function_name, run.target).catch(aliasGone) : null;
      const fns: FunctionVersion[] = [];
      for (const _ of items) {
        const version = replayVersion({ targetVersion: run.target_version }, alias, random());
        fns.push(version === targetFn.version ? targetFn : ((await o.versions.get(run.function_name, version)) ?? targetFn));
      }
      const requests: AcceptRequest[] = items.map((it, i) => ({
        fn: fns[i] as FunctionVersion,
        invocationType: 'replay',
        payload: it.payload,
        idempotencyKey: null,
        startedBy: o.workerId,
        leaseMs: (fns[i] as FunctionVersion).timeoutMs + o.leaseGraceMs,
        replay: { replayId: run.id, of: it.original_id },
        ...(alias ? { alias: run.target } : {}),
      }));
      const accepted = await acceptInvocations(tx, requests);
      const { rows: linked } = await sql<{ ordinal: number }>`
        update ledger.replay_items it set invocation_id = x.invocation_id
        from unnest(${items.map((i) => i.ordinal)}::int[], ${accepted.map((a) => a.invocationId)}::uuid[]) as x(ordinal, invocation_id)
        where it.replay_id = ${run.id}::uuid and it.ordinal = x.ordinal and it.invocation_id is null
        returning it.ordinal`.execute(tx);
      // the advisory lock makes this impossible; if it ever happens, write nothing
      if (linked.length !== items.length) throw new Error(`replay ${run.id}: items were taken by another claimer`);
      return items.map((it, i) => ({
        state: (accepted[i] as { state: InvocationState }).state,
        fn: fns[i] as FunctionVersion,
        payload: it.payload,
        replay: { replayId: run.id, originalInvocationId: it.original_id, originalVersion: it.original_version },
      }));
    });
    out.push(...claimed);
  }
  return out;
}

/** An alias deleted (or its function) since the run started: its replays run the run's targetVersion. */
function aliasGone(e: unknown): null {
  if (e instanceof LedgerError && e.code === 'FunctionNotFound') return null;
  throw e;
}

// ---------------------------------------------------------------------------------
// report

export interface ReplayReport extends ReplaySummary {
  replay: ReplayRun;
  /** every pair, in the order of the originals (only in the full export) */
  pairs?: ReplayPair[];
}

/** What the events of one invocation say it ended with. */
export function outcomeOf(id: string, events: readonly LedgerEvent[]): ReplayOutcome {
  let version = 0;
  let alias: string | null = null;
  let status = 'queued';
  let ok: boolean | null = null;
  let result: unknown = null;
  let errorType: string | null = null;
  let errorMessage: string | null = null;
  let durationMs: number | null = null;
  for (const e of events) {
    if (e.type === 'accepted') {
      version = e.data.functionVersion;
      alias = e.data.alias ?? null;
    }
    else if (e.type === 'started') status = 'running';
    else if (e.type === 'succeeded') {
      ({ status, ok, result, errorType, errorMessage, durationMs } = { status: 'succeeded', ok: true, result: e.data.result, errorType: null, errorMessage: null, durationMs: e.data.durationMs });
    } else if (e.type === 'failed') {
      ({ status, ok, result, errorType, errorMessage, durationMs } = { status: 'failed', ok: false, result: null, errorType: e.data.error.errorType, errorMessage: e.data.error.errorMessage, durationMs: e.data.durationMs });
      // an async failure that will be retried is not the end
      if (e.data.willRetry) ok = null;
    } else if (e.type === 'dead_lettered') {
      status = 'dead_lettered';
      ok = false;
      errorType ??= e.data.reason;
    } else if (e.type === 'redriven' || e.type === 'retried') {
      status = e.type === 'retried' ? 'retry_scheduled' : 'queued';
      ok = null;
    } else if (e.type === 'cancelled') status = 'cancelled';
  }
  return { invocationId: id, version, alias, status, ok, result, errorType, errorMessage, durationMs };
}

const REPORT_PAGE = 500;

/**
 * Compares every original with its replay, reading both from the events (pages of 500
 * items), and summarises by kind with the worst `examples` of each. `withPairs` adds
 * every pair (the JSON export).
 */
export async function replayReport(db: Executor, id: string, o: { examples?: number; withPairs?: boolean } = {}): Promise<ReplayReport> {
  const run = await requireReplay(db, id);
  const pairs: ReplayPair[] = [];
  for (let from = 0; ; from += REPORT_PAGE) {
    const { rows: items } = await sql<{ ordinal: number; original_id: string; invocation_id: string | null }>`
      select ordinal, original_id, invocation_id from ledger.replay_items
      where replay_id = ${run.id}::uuid and ordinal > ${from} order by ordinal limit ${REPORT_PAGE}`.execute(db);
    if (items.length === 0) break;
    const ids = items.flatMap((i) => (i.invocation_id ? [i.original_id, i.invocation_id] : [i.original_id]));
    const events = await eventsOf(db, ids);
    for (const it of items) {
      const originalEvents = events.get(it.original_id) ?? [];
      const first = originalEvents[0];
      const payload = first?.type === 'accepted' ? first.data.payload : null;
      const before = outcomeOf(it.original_id, originalEvents);
      const after = it.invocation_id ? outcomeOf(it.invocation_id, events.get(it.invocation_id) ?? []) : null;
      pairs.push(comparePair(it.ordinal, payload, before, after));
    }
    if (items.length < REPORT_PAGE) break;
  }
  return { replay: run, ...summarise(pairs, o.examples ?? 5), ...(o.withPairs ? { pairs } : {}) };
}
