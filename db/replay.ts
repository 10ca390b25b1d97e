// Replaying the ledger: folding every invocation's events from scratch. `verifyLedger`
// compares the replay with the projections (ledger.invocations, ledger.queue,
// ledger.idempotency_keys); `rebuildProjections` rewrites the rows that differ. Both page
// through invocations, so memory stays flat, and both are safe while servers run:
//
// - a page is read in one REPEATABLE READ snapshot. Events and the projections they imply
//   commit in one transaction, so a snapshot sees an append whole or not at all;
// - a repair locks only the invocations it rewrites, with SKIP LOCKED: it never waits for
//   a row a writer holds (so it cannot be part of a deadlock with one), and whatever was
//   busy is tried again in a later round. Each page commits on its own.
//
// Timestamps are compared and written at the database's precision (microseconds): an
// event's time is read as text and kept beside the Date that the fold copies around.
import { sql, type RawBuilder } from 'kysely';
import { IDEMPOTENCY_TTL_SECONDS, toLedgerEvent, type EventRowRaw } from './invocations.ts';
import { partitionProblems } from './retention/partitions.ts';
import { deleteKeys, deleteUnexplained, LedgerTime, ProjectionRows, upsertKeyOwners, writeProjections } from './projections.ts';
import { fold, isTerminal, whyNotAtEnd, type InvocationState, type LedgerEvent } from './lifecycle.ts';
import type { Db, Executor } from './schema.ts';

const VERIFY_PAGE = 1_000;
/** small: a repair holds its row locks for one page */
const REPAIR_PAGE = 200;
const FIRST_ID = '00000000-0000-0000-0000-000000000000';
/** the default of functionConfigSchema, for versions that are missing (as the worker assumes) */
const DEFAULT_MAX_EVENT_AGE_SECONDS = 21_600;

export interface VerifyProblem {
  invocationId: string;
  problem: string;
}

// ---------------------------------------------------------------------------------
// exact time

/** ISO 8601 in UTC with six fractional digits; the fold copies event times, so they stay exact. */
function exactIso(d: Date): string {
  return d instanceof LedgerTime ? d.exact : d.toISOString().replace(/Z$/, '000Z');
}
const exactOrNull = (d: Date | null) => (d === null ? null : exactIso(d));

/** A timestamptz column as that same text ('infinity' stays itself). */
const exact = (column: string): RawBuilder<string> =>
  sql<string>`case when isfinite(${sql.ref(column)}) then to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') else ${sql.ref(column)}::text end`;

const FINITE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const micros = (iso: string): bigint => BigInt(Date.parse(`${iso.slice(0, 23)}Z`)) * 1000n + BigInt(iso.slice(23, 26));
const fromMicros = (us: bigint): string => {
  const ms = us / 1000n;
  return new Date(Number(ms)).toISOString().replace(/Z$/, `${String(us - ms * 1000n).padStart(3, '0')}Z`);
};

// ---------------------------------------------------------------------------------
// what the projections hold, and what the events say they should hold

/** A ledger.invocations row, timestamps as exact text. */
interface InvocationRow {
  id: string;
  function_name: string;
  function_version: number;
  invocation_type: string;
  status: string;
  attempts: number;
  failures_since_redrive: number;
  last_seq: number;
  last_event_type: string;
  idempotency_key: string | null;
  error_type: string | null;
  dead_letter_reason: string | null;
  accepted_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}
const INVOCATION_COLUMNS = [
  'function_name', 'function_version', 'invocation_type', 'status', 'attempts', 'failures_since_redrive', 'last_seq',
  'last_event_type', 'idempotency_key', 'error_type', 'dead_letter_reason', 'accepted_at', 'started_at', 'finished_at',
  'updated_at',
] as const satisfies readonly (keyof InvocationRow)[];

/** A ledger.queue row, timestamps as exact text. */
interface QueueRow {
  function_name: string;
  function_version: number;
  invocation_type: string;
  attempt: number;
  run_at: string;
  accepted_at: string;
  locked_by: string | null;
  lease_expires_at: string | null;
}
const QUEUE_COLUMNS = ['function_name', 'function_version', 'invocation_type', 'attempt', 'accepted_at', 'locked_by'] as const satisfies readonly (keyof QueueRow)[];

/** A ledger.idempotency_keys row with what the accepted event of the invocation it names says. */
interface KeyRow {
  function_name: string;
  key: string;
  invocation_id: string;
  /** the owner's accepted event; null when the owner has no events */
  owner_function: string | null;
  owner_key: string | null;
  owner_accepted_at: string | null;
}

function expectedInvocation(s: InvocationState): InvocationRow {
  return {
    id: s.id,
    function_name: s.functionName,
    function_version: s.functionVersion,
    invocation_type: s.invocationType,
    status: s.status,
    attempts: s.attempts,
    failures_since_redrive: s.failuresSinceRedrive,
    last_seq: s.lastSeq,
    last_event_type: s.lastType,
    idempotency_key: s.idempotencyKey,
    error_type: s.errorType,
    dead_letter_reason: s.deadLetterReason,
    accepted_at: exactIso(s.acceptedAt),
    started_at: exactOrNull(s.startedAt),
    finished_at: exactOrNull(s.finishedAt),
    updated_at: exactIso(s.updatedAt),
  };
}

/**
 * The queue row a non-terminal invocation needs. Its run_at is the replay's, except that
 * a claim pushes throttled work (over reservedConcurrency) back without an event, never
 * past the invocation's event-age deadline: any time between the two is right.
 */
function expectedQueue(s: InvocationState, maxEventAgeSeconds: number) {
  const running = s.status === 'running';
  const due = micros(exactIso(s.runAt ?? s.updatedAt));
  // the claim's deadline, computed as it does: from the millisecond Date of acceptedAt
  const deadline = BigInt(s.acceptedAt.getTime() + maxEventAgeSeconds * 1000 + 1) * 1000n;
  return {
    row: {
      function_name: s.functionName,
      function_version: s.functionVersion,
      invocation_type: s.invocationType,
      attempt: s.attempts,
      accepted_at: exactIso(s.acceptedAt),
      locked_by: running ? s.workerId : null,
    } satisfies Pick<QueueRow, (typeof QUEUE_COLUMNS)[number]>,
    running,
    due,
    runAtFrom: running ? due : due < deadline ? due : deadline,
    runAtTo: running ? due : due > deadline ? due : deadline,
  };
}

/** One invocation as inspected: its problems and what a repair needs. */
interface Inspected {
  id: string;
  /** problems in the events themselves: nothing can repair them */
  ledger: string[];
  /** projection rows that differ from the events: a rebuild repairs them */
  projection: string[];
  /** the replay; undefined when the events cannot be folded */
  state?: InvocationState;
  invocation?: InvocationRow;
  queue?: QueueRow;
  maxEventAgeSeconds: number;
}

const show = (v: unknown) => (v === null || v === undefined ? 'null' : String(v));

function checkInvocation(x: Inspected, s: InvocationState): void {
  const want = expectedInvocation(s);
  const row = x.invocation;
  if (!row) {
    x.projection.push('has events but no projection row');
  } else {
    for (const k of INVOCATION_COLUMNS) {
      if (row[k] !== want[k]) x.projection.push(`projection ${k} = ${show(row[k])}, replay = ${show(want[k])}`);
    }
  }
  checkQueue(x, s);
}

/** Every non-terminal invocation holds a queue row, and it is runnable (due at a finite time, async) or leased. */
function checkQueue(x: Inspected, s: InvocationState): void {
  const q = x.queue;
  if (isTerminal(s.status)) {
    if (q) x.projection.push(`queue row present for status ${s.status}`);
    return;
  }
  if (!q) {
    x.projection.push(`queue row missing for status ${s.status}`);
    return;
  }
  const want = expectedQueue(s, x.maxEventAgeSeconds);
  for (const k of QUEUE_COLUMNS) {
    if (q[k] !== want.row[k]) x.projection.push(`queue ${k} = ${show(q[k])}, replay = ${show(want.row[k])}`);
  }
  if (want.running) {
    if (q.lease_expires_at === null || !FINITE.test(q.lease_expires_at)) {
      x.projection.push(`running attempt ${s.attempts} has no finite lease (lease_expires_at = ${show(q.lease_expires_at)}): no reaper will ever recover it`);
    }
    if (q.run_at !== fromMicros(want.due)) x.projection.push(`queue run_at = ${q.run_at}, replay = ${fromMicros(want.due)}`);
    return;
  }
  if (s.invocationType !== 'async') x.projection.push(`a ${s.invocationType} invocation is ${s.status}: only async work is claimed, so it never runs`);
  if (q.lease_expires_at !== null) x.projection.push(`queue row of a ${s.status} invocation holds a lease until ${q.lease_expires_at}`);
  if (!FINITE.test(q.run_at)) {
    x.projection.push(`queue run_at = ${q.run_at}: the invocation is never due (replay: due at ${fromMicros(want.due)})`);
  } else {
    const at = micros(q.run_at);
    if (at < want.runAtFrom || at > want.runAtTo) {
      x.projection.push(
        `queue run_at = ${q.run_at}, replay = ${fromMicros(want.due)}` +
          (want.runAtFrom !== want.runAtTo ? ` (a throttled claim may move it up to ${fromMicros(want.runAtTo)})` : ''),
      );
    }
  }
}

/**
 * Idempotency keys: a key row names an invocation whose accepted event carries that
 * function and key, and it is the newest such invocation (a key is taken over only after
 * it expired). A key of the last 24 hours has its row.
 */
function checkKeys(page: Inspected[], keys: KeyRow[], now: Date): void {
  const byId = new Map(page.map((x) => [x.id, x]));
  const pairOf = (fn: string, key: string) => `${fn}\u0000${key}`;
  const rows = new Map(keys.map((k) => [pairOf(k.function_name, k.key), k]));
  for (const k of keys) {
    const named = byId.get(k.invocation_id);
    if (named?.state && (named.state.functionName !== k.function_name || named.state.idempotencyKey !== k.key)) {
      named.projection.push(
        `idempotency key (${k.function_name}, ${k.key}) names this invocation, whose accepted event carries (${named.state.functionName}, ${show(named.state.idempotencyKey)})`,
      );
    }
  }
  const newest = new Map<string, Inspected>();
  for (const x of page) {
    const s = x.state;
    if (!s?.idempotencyKey) continue;
    const pair = pairOf(s.functionName, s.idempotencyKey);
    const other = newest.get(pair);
    if (!other || exactIso((other.state as InvocationState).acceptedAt) < exactIso(s.acceptedAt)) newest.set(pair, x);
  }
  for (const [pair, x] of newest) {
    const s = x.state as InvocationState;
    const row = rows.get(pair);
    const what = `idempotency key (${s.functionName}, ${s.idempotencyKey})`;
    if (!row) {
      if (s.acceptedAt.getTime() + IDEMPOTENCY_TTL_SECONDS * 1000 > now.getTime()) x.projection.push(`${what} has no row: a retry with it would run again`);
      continue;
    }
    if (row.invocation_id === s.id) continue;
    if (row.owner_function !== s.functionName || row.owner_key !== s.idempotencyKey) {
      x.projection.push(
        `${what} names invocation ${row.invocation_id}, whose accepted event ${row.owner_accepted_at === null ? 'does not exist' : `carries (${show(row.owner_function)}, ${show(row.owner_key)})`}`,
      );
    } else if ((row.owner_accepted_at as string) < exactIso(s.acceptedAt)) {
      x.projection.push(`${what} names the older invocation ${row.invocation_id}`);
    }
  }
}

/** The expected key owners of a page: pair → [function, key, invocation id, accepted at]. */
function expectedKeys(page: Inspected[], keys: KeyRow[]): Map<string, { fn: string; key: string; id: string; acceptedAt: string }> {
  const out = new Map<string, { fn: string; key: string; id: string; acceptedAt: string }>();
  const consider = (fn: string, key: string, id: string, acceptedAt: string) => {
    const pair = `${fn}\u0000${key}`;
    const cur = out.get(pair);
    if (!cur || cur.acceptedAt < acceptedAt) out.set(pair, { fn, key, id, acceptedAt });
  };
  for (const k of keys) {
    if (k.owner_function === k.function_name && k.owner_key === k.key && k.owner_accepted_at !== null) {
      consider(k.function_name, k.key, k.invocation_id, k.owner_accepted_at);
    }
  }
  for (const x of page) {
    if (x.state?.idempotencyKey) consider(x.state.functionName, x.state.idempotencyKey, x.id, exactIso(x.state.acceptedAt));
  }
  return out;
}

// ---------------------------------------------------------------------------------
// reading a page

async function pageOfIds(db: Executor, after: string, limit: number): Promise<string[]> {
  const { rows } = await sql<{ invocation_id: string }>`
    select distinct invocation_id from ledger.events
    where invocation_id > ${after}::uuid order by invocation_id limit ${limit}`.execute(db);
  return rows.map((r) => r.invocation_id);
}

/**
 * Folds the events of `ids` and compares the projections with them. Every statement must
 * see the same commits: run it in a REPEATABLE READ transaction, or with the rows locked.
 */
async function inspect(db: Executor, ids: readonly string[]): Promise<{ page: Inspected[]; keys: KeyRow[] }> {
  const { rows: eventRows } = await sql<EventRowRaw & { occurred_exact: string }>`
    select invocation_id, seq, type, attempt, data, occurred_at, position, ${exact('occurred_at')} as occurred_exact
    from ledger.events where invocation_id = any(${ids}::uuid[]) order by invocation_id, seq`.execute(db);
  const { rows: liveRows } = await sql<{ id: string; now: Date; invocation: InvocationRow | null; queue: QueueRow | null }>`
    select x.id, now(),
      case when i.id is not null then json_build_object(
        'id', i.id, 'function_name', i.function_name, 'function_version', i.function_version,
        'invocation_type', i.invocation_type, 'status', i.status, 'attempts', i.attempts,
        'failures_since_redrive', i.failures_since_redrive, 'last_seq', i.last_seq, 'last_event_type', i.last_event_type,
        'idempotency_key', i.idempotency_key, 'error_type', i.error_type, 'dead_letter_reason', i.dead_letter_reason,
        'accepted_at', ${exact('i.accepted_at')}, 'started_at', ${exact('i.started_at')},
        'finished_at', ${exact('i.finished_at')}, 'updated_at', ${exact('i.updated_at')}) end as invocation,
      case when q.invocation_id is not null then json_build_object(
        'function_name', q.function_name, 'function_version', q.function_version, 'invocation_type', q.invocation_type,
        'attempt', q.attempt, 'run_at', ${exact('q.run_at')}, 'accepted_at', ${exact('q.accepted_at')},
        'locked_by', q.locked_by, 'lease_expires_at', ${exact('q.lease_expires_at')}) end as queue
    from unnest(${ids}::uuid[]) as x(id)
    left join ledger.invocations i on i.id = x.id
    left join ledger.queue q on q.invocation_id = x.id`.execute(db);
  const live = new Map(liveRows.map((r) => [r.id, r]));
  const now = liveRows[0]?.now ?? new Date();

  const events = new Map<string, LedgerEvent[]>(ids.map((id) => [id, []]));
  for (const r of eventRows) events.get(r.invocation_id)?.push({ ...toLedgerEvent(r), occurredAt: new LedgerTime(r.occurred_exact) });

  const page: Inspected[] = [];
  for (const [id, list] of events) {
    const row = live.get(id);
    const x: Inspected = {
      id,
      ledger: [],
      projection: [],
      maxEventAgeSeconds: DEFAULT_MAX_EVENT_AGE_SECONDS,
      ...(row?.invocation ? { invocation: row.invocation } : {}),
      ...(row?.queue ? { queue: row.queue } : {}),
    };
    page.push(x);
    try {
      x.state = fold(list);
    } catch (e) {
      x.ledger.push((e as Error).message);
      continue;
    }
    if (!x.state) continue; // no events (any more): an orphan, found by findOrphans
    for (const e of list) {
      const a = (e.data as { attempt?: number }).attempt;
      if (e.attempt !== (a ?? null)) x.ledger.push(`seq ${e.seq}: attempt column ${e.attempt} ≠ data ${a}`);
    }
    const unfinished = whyNotAtEnd(x.state);
    if (unfinished !== null) x.ledger.push(`ends unfinished: ${unfinished}`);
  }

  // run_at may move up to the event-age deadline of the invocation's function version
  const versions = [...new Set(page.flatMap((x) => (x.state ? [`${x.state.functionName}\u0000${x.state.functionVersion}`] : [])))];
  if (versions.length > 0) {
    const split = versions.map((v) => v.split('\u0000') as [string, string]);
    const { rows } = await sql<{ name: string; version: number; max_age: number | null }>`
      select v.name, v.version, (v.config ->> 'maxEventAgeSeconds')::int as max_age
      from ledger.function_versions v
      join unnest(${split.map((s) => s[0])}::text[], ${split.map((s) => Number(s[1]))}::int[]) as t(name, version)
        on v.name = t.name and v.version = t.version`.execute(db);
    const ages = new Map(rows.map((r) => [`${r.name}\u0000${r.version}`, r.max_age ?? DEFAULT_MAX_EVENT_AGE_SECONDS]));
    for (const x of page) {
      if (!x.state) continue;
      const fnAge = ages.get(`${x.state.functionName}\u0000${x.state.functionVersion}`) ?? DEFAULT_MAX_EVENT_AGE_SECONDS;
      // an invocation's own limit (a schedule tick's RetryPolicy) is the claim's deadline, as in db/retry-policy.ts
      const first = events.get(x.id)?.[0];
      x.maxEventAgeSeconds = first?.type === 'accepted' && first.data.retryPolicy ? first.data.retryPolicy.maxEventAgeSeconds : fnAge;
    }
  }

  const keyed = page.flatMap((x) => (x.state?.idempotencyKey ? [x.state] : []));
  const { rows: keys } = await sql<KeyRow>`
    select k.function_name, k.key, k.invocation_id, e.data ->> 'functionName' as owner_function,
      e.data ->> 'idempotencyKey' as owner_key, ${exact('e.occurred_at')} as owner_accepted_at
    from ledger.idempotency_keys k
    left join ledger.events e on e.invocation_id = k.invocation_id and e.seq = 1
    where k.invocation_id = any(${ids}::uuid[])
       or (k.function_name, k.key) in (
         select * from unnest(${keyed.map((s) => s.functionName)}::text[], ${keyed.map((s) => s.idempotencyKey)}::text[]))`.execute(db);

  for (const x of page) if (x.state) checkInvocation(x, x.state);
  checkKeys(page, keys, now);
  return { page, keys };
}

/** Rows no event explains. Each is one statement, a snapshot of its own. */
async function findOrphans(db: Executor, limit = 100): Promise<{ invocations: string[]; queue: string[]; keys: { fn: string; key: string; id: string }[] }> {
  const { rows: invocations } = await sql<{ id: string }>`
    select id from ledger.invocations i
    where not exists (select 1 from ledger.events e where e.invocation_id = i.id and e.seq = 1) limit ${limit}`.execute(db);
  const { rows: queue } = await sql<{ id: string }>`
    select invocation_id as id from ledger.queue q
    where not exists (select 1 from ledger.invocations i where i.id = q.invocation_id) limit ${limit}`.execute(db);
  const { rows: keys } = await sql<{ fn: string; key: string; id: string }>`
    select function_name as fn, key, invocation_id as id from ledger.idempotency_keys k
    where not exists (select 1 from ledger.events e where e.invocation_id = k.invocation_id and e.seq = 1) limit ${limit}`.execute(db);
  return { invocations: invocations.map((r) => r.id), queue: queue.map((r) => r.id), keys };
}

const snapshot = <T>(db: Db, fn: (tx: Executor) => Promise<T>): Promise<T> =>
  db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(fn);

// ---------------------------------------------------------------------------------
// verify

/**
 * Checks every invocation: seq contiguous from 1, `accepted` first, every transition
 * allowed by the lifecycle, attempt numbers consistent; every projection column that the
 * events determine equal to the replay at full precision; every non-terminal invocation
 * runnable (a queue row due at a finite time that a claim will pick) or leased; every
 * idempotency key naming the invocation that took it; and no row that no event explains.
 * Read-only, and correct while servers write: each page is one snapshot.
 */
export async function verifyLedger(db: Db, o: { pageSize?: number } = {}): Promise<VerifyProblem[]> {
  const problems: VerifyProblem[] = [];
  for (let after = FIRST_ID; ; ) {
    const page = await snapshot(db, async (tx) => {
      const ids = await pageOfIds(tx, after, o.pageSize ?? VERIFY_PAGE);
      return ids.length === 0 ? null : (await inspect(tx, ids)).page;
    });
    if (!page) break;
    after = (page[page.length - 1] as Inspected).id;
    for (const x of page) for (const problem of [...x.ledger, ...x.projection]) problems.push({ invocationId: x.id, problem });
  }
  const orphans = await findOrphans(db);
  for (const id of orphans.invocations) problems.push({ invocationId: id, problem: 'projection row without events' });
  for (const id of orphans.queue) problems.push({ invocationId: id, problem: 'queue row without a projection row' });
  for (const k of orphans.keys) problems.push({ invocationId: k.id, problem: `idempotency key (${k.fn}, ${k.key}) names an invocation that has no events` });
  // months archived and dropped are accounted for by ledger.archive_log; any other gap is loss
  for (const problem of await partitionProblems(db)) problems.push({ invocationId: 'ledger.events', problem });
  return problems;
}

// ---------------------------------------------------------------------------------
// rebuild

export interface RebuildResult {
  /** invocations replayed */
  invocations: number;
  /** invocations whose projection rows were rewritten */
  repaired: number;
  /** rows removed that no event explains */
  removed: number;
  /** problems in the events themselves, which no rebuild can repair */
  problems: VerifyProblem[];
}

export interface RebuildOptions {
  /** lease given to a running attempt whose queue row had none (default 5 min) */
  leaseMs?: number;
  pageSize?: number;
  /** rounds for invocations that stayed busy (row-locked by a writer) before giving up */
  maxRounds?: number;
}

/**
 * Recomputes ledger.invocations, ledger.queue and ledger.idempotency_keys from the events
 * alone: every row that differs from the replay is rewritten, every row that no event
 * explains removed. Safe while servers run (see the top of this file). Leases are
 * operational, not events: a running attempt keeps a lease it holds, and one without gets
 * a fresh lease, after which a dead worker's attempt is recovered as usual.
 */
export async function rebuildProjections(db: Db, o: RebuildOptions = {}): Promise<RebuildResult> {
  const leaseMs = o.leaseMs ?? 5 * 60_000;
  const result: RebuildResult = { invocations: 0, repaired: 0, removed: 0, problems: [] };
  let busy: string[] = [];
  for (let after = FIRST_ID; ; ) {
    const page = await snapshot(db, async (tx) => {
      const ids = await pageOfIds(tx, after, o.pageSize ?? REPAIR_PAGE);
      return ids.length === 0 ? null : (await inspect(tx, ids)).page;
    });
    if (!page) break;
    after = (page[page.length - 1] as Inspected).id;
    result.invocations += page.filter((x) => x.state).length;
    for (const x of page) for (const problem of x.ledger) result.problems.push({ invocationId: x.id, problem });
    const stale = page.filter((x) => x.state && x.projection.length > 0).map((x) => x.id);
    if (stale.length > 0) {
      const r = await repairInvocations(db, stale, leaseMs);
      result.repaired += r.repaired;
      busy.push(...r.busy);
    }
  }
  for (let round = 1; busy.length > 0; round++) {
    if (round > (o.maxRounds ?? 50)) throw new Error(`rebuild: ${busy.length} invocation(s) stayed busy; run it again (first: ${busy[0]})`);
    await new Promise((r) => setTimeout(r, Math.min(1_000, 20 * 2 ** round)));
    const r = await repairInvocations(db, busy, leaseMs);
    result.repaired += r.repaired;
    busy = r.busy;
  }
  result.removed = await removeOrphans(db);
  return result;
}

const RETRYABLE = new Set(['40P01', '40001', '55P03']); // deadlock, serialization, lock_not_available

/**
 * Rewrites the projection rows of `ids` that differ from their events, in one transaction.
 * Rows a writer holds are skipped (SKIP LOCKED) and returned as busy, never waited for.
 */
async function repairInvocations(db: Db, ids: readonly string[], leaseMs: number): Promise<{ repaired: number; busy: string[] }> {
  try {
    return await db.transaction().execute(async (tx) => {
      // the only waits left are inserts racing a writer's uncommitted insert of the same
      // row; give up quickly rather than hold our locks, and try again later
      await sql`set local lock_timeout = '500ms'`.execute(tx);
      const { rows: lockedRows } = await sql<{ id: string }>`
        select id from ledger.invocations where id = any(${ids}::uuid[]) order by id for update skip locked`.execute(tx);
      const { rows: existing } = await sql<{ id: string }>`select id from ledger.invocations where id = any(${ids}::uuid[])`.execute(tx);
      const locked = new Set(lockedRows.map((r) => r.id));
      const present = new Set(existing.map((r) => r.id));
      const busy = new Set(ids.filter((id) => present.has(id) && !locked.has(id)));
      let mine = ids.filter((id) => !busy.has(id));
      const { rows: queueLocked } = await sql<{ id: string }>`
        select invocation_id as id from ledger.queue where invocation_id = any(${mine}::uuid[]) for update skip locked`.execute(tx);
      const { rows: queueExisting } = await sql<{ id: string }>`
        select invocation_id as id from ledger.queue where invocation_id = any(${mine}::uuid[])`.execute(tx);
      const qLocked = new Set(queueLocked.map((r) => r.id));
      for (const r of queueExisting) if (!qLocked.has(r.id)) busy.add(r.id);
      mine = mine.filter((id) => !busy.has(id));
      if (mine.length === 0) return { repaired: 0, busy: [...busy] };

      // now nothing can append to `mine` until we commit: read and compare again
      const { page, keys } = await inspect(tx, mine);
      const todo = page.filter((x) => x.state && x.projection.length > 0);
      if (todo.length === 0) return { repaired: 0, busy: [...busy] };
      await writeProjections(tx, projectionRows(todo, leaseMs));
      await writeKeys(tx, todo, keys);
      return { repaired: todo.length, busy: [...busy] };
    });
  } catch (e) {
    if (RETRYABLE.has(String((e as { code?: string }).code))) return { repaired: 0, busy: [...ids] };
    throw e;
  }
}

/**
 * The rows the events imply, through the writer's projection code (db/projections.ts),
 * keeping what is operational and still sound: a throttled due time, a lease the worker
 * renews. A running attempt without a lease gets `leaseMs`.
 */
function projectionRows(todo: Inspected[], leaseMs: number): ProjectionRows {
  const rows = new ProjectionRows();
  for (const x of todo) {
    const s = x.state as InvocationState;
    rows.invocation(s);
    if (isTerminal(s.status)) {
      rows.dequeue(x.id);
      continue;
    }
    const want = expectedQueue(s, x.maxEventAgeSeconds);
    const q = x.queue;
    const keepRunAt = !want.running && q && FINITE.test(q.run_at) && micros(q.run_at) >= want.runAtFrom && micros(q.run_at) <= want.runAtTo;
    const keepLease = want.running && q && q.locked_by === want.row.locked_by && q.lease_expires_at !== null && FINITE.test(q.lease_expires_at);
    rows.queue(s, { leaseMs, runAt: keepRunAt ? q.run_at : fromMicros(want.due), leaseUntil: keepLease ? q.lease_expires_at : null });
  }
  return rows;
}

async function writeKeys(tx: Executor, todo: Inspected[], keys: KeyRow[]): Promise<void> {
  const ids = new Set(todo.map((x) => x.id));
  // rows naming one of ours that its accepted event does not explain
  const wrong = keys.filter((k) => {
    const s = ids.has(k.invocation_id) ? todo.find((x) => x.id === k.invocation_id)?.state : undefined;
    return s && (s.functionName !== k.function_name || s.idempotencyKey !== k.key);
  });
  await deleteKeys(tx, wrong);
  const owners = [...expectedKeys(todo, keys).values()].filter((o) => ids.has(o.id));
  // Key rows are not locked: replace only the row that was read (a wrong one is gone already), never one written since.
  const seen = new Map(keys.filter((k) => !wrong.includes(k)).map((k) => [`${k.function_name}\u0000${k.key}`, k.invocation_id]));
  await upsertKeyOwners(tx, owners, owners.flatMap((o) => seen.get(`${o.fn}\u0000${o.key}`) ?? []), IDEMPOTENCY_TTL_SECONDS);
}

/** Removes rows that no event explains; returns how many. Each delete re-checks its rows. */
async function removeOrphans(db: Db): Promise<number> {
  let removed = 0;
  for (;;) {
    const o = await findOrphans(db, 1_000);
    if (o.invocations.length + o.queue.length + o.keys.length === 0) return removed;
    const n = await deleteUnexplained(db, o);
    if (n === 0) return removed; // what is left was explained meanwhile
    removed += n;
  }
}
