// Destinations (onSuccess / onFailure): the invocation record of lambda-invoke.md, written
// to the outbox in the same transaction as the terminal event that caused it. A
// `function:<name>` destination is an async invocation accepted in that transaction too;
// a URL destination is POSTed afterwards by any worker, with retries and backoff.
import { sql } from 'kysely';
import type { FunctionVersion } from '../../db/functions.ts';
import { getFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import type { FunctionErrorData, InvocationState } from '../../db/lifecycle.ts';
import type { Db, Executor } from '../../db/schema.ts';

export const FUNCTION_ARN_PREFIX = 'arn:aws:lambda:local:000000000000:function:';

export type DestinationCondition = 'Success' | 'RetriesExhausted' | 'EventAgeExceeded' | 'ZeroReservedConcurrency';

/** An async invocation that has just reached a terminal state, with what its record needs. */
export interface FinishedInvocation {
  state: InvocationState;
  fn: FunctionVersion;
  payload: unknown;
  /** the last attempt's result (success) or error (failure), when an attempt ran */
  result?: unknown;
  error?: FunctionErrorData | null;
}

export interface InvocationRecord {
  version: '1.0';
  timestamp: string;
  requestContext: { requestId: string; functionArn: string; condition: DestinationCondition; approximateInvokeCount: number };
  requestPayload: unknown;
  responseContext: { statusCode: number; executedVersion: string; functionError?: 'Unhandled' };
  responsePayload: unknown;
}

/** Which destination a terminal state goes to, if any. */
export function destinationOf(f: FinishedInvocation): { destination: string; condition: DestinationCondition } | null {
  if (f.state.invocationType !== 'async') return null;
  if (f.state.status === 'succeeded' && f.fn.onSuccess) return { destination: f.fn.onSuccess, condition: 'Success' };
  if (f.state.status === 'dead_lettered' && f.fn.onFailure && f.state.deadLetterReason) {
    return { destination: f.fn.onFailure, condition: f.state.deadLetterReason };
  }
  return null;
}

export function hasDestinations(fn: FunctionVersion | null): boolean {
  return !!fn && (fn.onSuccess !== null || fn.onFailure !== null);
}

export function invocationRecord(f: FinishedInvocation, condition: DestinationCondition, now: Date): InvocationRecord {
  const success = condition === 'Success';
  return {
    version: '1.0',
    timestamp: now.toISOString(),
    requestContext: {
      requestId: f.state.id,
      functionArn: `${FUNCTION_ARN_PREFIX}${f.state.functionName}:${f.state.functionVersion}`,
      condition,
      approximateInvokeCount: f.state.attempts,
    },
    requestPayload: f.payload ?? null,
    responseContext: {
      statusCode: 200,
      executedVersion: String(f.state.functionVersion),
      ...(success ? {} : { functionError: 'Unhandled' as const }),
    },
    responsePayload: success ? (f.result ?? null) : (f.error ?? null),
  };
}

/**
 * The completion hook: call inside the transaction that appended the terminal events.
 * Returns how many URL deliveries were queued (so the caller can wake its deliverer).
 */
export async function enqueueDestinations(tx: Executor, finished: readonly FinishedInvocation[], now = new Date()): Promise<number> {
  const rows: { invocationId: string; count: number; condition: DestinationCondition; destination: string; record: InvocationRecord }[] = [];
  for (const f of finished) {
    const d = destinationOf(f);
    if (d) rows.push({ invocationId: f.state.id, count: f.state.attempts, ...d, record: invocationRecord(f, d.condition, now) });
  }
  if (rows.length === 0) return 0;

  // dead-lettered without an attempt in this transaction (age, throttle, lost worker): the
  // record carries the last recorded error, read from the ledger
  const unknownError = finished.filter((f) => f.error === undefined && f.state.status === 'dead_lettered' && destinationOf(f));
  if (unknownError.length > 0) {
    const errors = await lastErrors(tx, unknownError.map((f) => f.state.id));
    for (const r of rows) if (errors.has(r.invocationId) && r.record.responsePayload === null) r.record.responsePayload = errors.get(r.invocationId);
  }

  // function: destinations are accepted right here, as ordinary async invocations
  const targets = new Map<string, FunctionVersion | null>();
  for (const r of rows) {
    if (!r.destination.startsWith('function:')) continue;
    const name = r.destination.slice('function:'.length);
    if (!targets.has(name)) targets.set(name, await getFunction(tx, name));
  }
  const toAccept = rows.filter((r) => r.destination.startsWith('function:') && targets.get(r.destination.slice(9)));
  const accepted = await acceptInvocations(
    tx,
    toAccept.map((r) => ({ fn: targets.get(r.destination.slice(9)) as FunctionVersion, invocationType: 'async' as const, payload: r.record })),
  );
  const acceptedBy = new Map(toAccept.map((r, i) => [r, accepted[i]?.invocationId ?? null]));

  const status: string[] = [];
  const target: (string | null)[] = [];
  const error: (string | null)[] = [];
  let urls = 0;
  for (const r of rows) {
    if (r.destination.startsWith('function:')) {
      const id = acceptedBy.get(r) ?? null;
      status.push(id ? 'delivered' : 'failed');
      target.push(id);
      error.push(id ? null : `Function not found: ${r.destination.slice(9)}`);
    } else {
      urls++;
      status.push('pending');
      target.push(null);
      error.push(null);
    }
  }
  await sql`
    insert into ledger.destination_deliveries (invocation_id, invoke_count, condition, destination, record, status,
      attempts, target_invocation_id, last_error, delivered_at)
    select id, cnt, cond, dest, rec, st, case when st = 'pending' then 0 else 1 end, tgt, err,
           case when st = 'delivered' then now() end
    from unnest(${rows.map((r) => r.invocationId)}::uuid[], ${rows.map((r) => r.count)}::int[],
      ${rows.map((r) => r.condition)}::text[], ${rows.map((r) => r.destination)}::text[],
      ${rows.map((r) => JSON.stringify(r.record))}::jsonb[], ${status}::text[], ${target}::uuid[], ${error}::text[])
      as t(id, cnt, cond, dest, rec, st, tgt, err)
    on conflict (invocation_id, invoke_count, destination) do nothing`.execute(tx);
  return urls;
}

async function lastErrors(tx: Executor, ids: string[]): Promise<Map<string, FunctionErrorData>> {
  const { rows } = await sql<{ invocation_id: string; error: FunctionErrorData }>`
    select distinct on (invocation_id) invocation_id, data -> 'error' as error from ledger.events
    where invocation_id = any(${ids}::uuid[]) and type = 'failed' order by invocation_id, seq desc`.execute(tx);
  return new Map(rows.map((r) => [r.invocation_id, r.error]));
}

export interface DestinationDelivery {
  id: string;
  invocationId: string;
  condition: DestinationCondition;
  destination: string;
  record: InvocationRecord;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  lastError: string | null;
  lastStatusCode: number | null;
  targetInvocationId: string | null;
  nextAttemptAt: Date;
  createdAt: Date;
  deliveredAt: Date | null;
}

interface DeliveryRow {
  id: string;
  invocation_id: string;
  condition: DestinationCondition;
  destination: string;
  record: InvocationRecord;
  status: DestinationDelivery['status'];
  attempts: number;
  last_error: string | null;
  last_status_code: number | null;
  target_invocation_id: string | null;
  next_attempt_at: Date;
  created_at: Date;
  delivered_at: Date | null;
}

const toDelivery = (r: DeliveryRow): DestinationDelivery => ({
  id: r.id,
  invocationId: r.invocation_id,
  condition: r.condition,
  destination: r.destination,
  record: r.record,
  status: r.status,
  attempts: r.attempts,
  lastError: r.last_error,
  lastStatusCode: r.last_status_code,
  targetInvocationId: r.target_invocation_id,
  nextAttemptAt: r.next_attempt_at,
  createdAt: r.created_at,
  deliveredAt: r.delivered_at,
});

/** Deliveries, newest first; filter by the invocation that caused them and/or status. */
export async function listDestinationDeliveries(
  db: Executor,
  filter: { invocationId?: string; status?: DestinationDelivery['status']; limit?: number } = {},
): Promise<DestinationDelivery[]> {
  const { rows } = await sql<DeliveryRow>`
    select * from ledger.destination_deliveries
    where (${filter.invocationId ?? null}::uuid is null or invocation_id = ${filter.invocationId ?? null}::uuid)
      and (${filter.status ?? null}::text is null or status = ${filter.status ?? null}::text)
    order by id desc limit ${filter.limit ?? 100}`.execute(db);
  return rows.map(toDelivery);
}

export interface DeliveryPolicy {
  /** POST attempts before a delivery is marked failed */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  /** HTTP_ALLOWLIST: a URL it refuses is marked failed without being POSTed */
  allowUrl?: (url: string) => boolean;
}

export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = { maxAttempts: 8, baseDelayMs: 1_000, maxDelayMs: 300_000, timeoutMs: 10_000 };

/**
 * Takes due URL deliveries (SKIP LOCKED; the claim pushes next_attempt_at past the POST
 * timeout, so a worker that dies mid-POST leaves the row to be retried), POSTs each
 * record and stores the outcome. Returns how many were attempted.
 */
export async function deliverDueDestinations(db: Db, policy: DeliveryPolicy, limit = 20): Promise<number> {
  const holdSeconds = Math.ceil(policy.timeoutMs / 1000) + 30;
  const { rows } = await sql<DeliveryRow>`
    update ledger.destination_deliveries d
    set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => ${holdSeconds})
    where d.id = any(array(
      select id from ledger.destination_deliveries
      where status = 'pending' and next_attempt_at <= now()
      order by next_attempt_at limit ${limit}
      for update skip locked))
    returning d.*`.execute(db);
  await Promise.all(
    rows.map(async (r) => {
      const allowed = policy.allowUrl?.(r.destination) ?? true;
      const outcome = allowed
        ? await post(r.destination, r.record, policy.timeoutMs)
        : { ok: false, status: null, error: 'destination URL is not allowed by HTTP_ALLOWLIST' };
      const delivered = outcome.ok;
      const giveUp = !delivered && (!allowed || r.attempts >= policy.maxAttempts);
      const delayMs = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, r.attempts - 1));
      await sql`
        update ledger.destination_deliveries
        set status = ${delivered ? 'delivered' : giveUp ? 'failed' : 'pending'},
            last_error = ${outcome.error}, last_status_code = ${outcome.status},
            delivered_at = case when ${delivered} then now() end,
            next_attempt_at = now() + make_interval(secs => ${delayMs / 1000})
        where id = ${r.id}`.execute(db);
    }),
  );
  return rows.length;
}

async function post(url: string, record: unknown, timeoutMs: number): Promise<{ ok: boolean; status: number | null; error: string | null }> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'invoke-ledger-destinations' },
      body: JSON.stringify(record),
      signal: AbortSignal.timeout(timeoutMs),
      // a redirect could lead past HTTP_ALLOWLIST: a 3xx is an answer (not delivered), not a hop
      redirect: 'manual',
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok ? { ok: true, status: res.status, error: null } : { ok: false, status: res.status, error: `HTTP ${res.status}` };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return { ok: false, status: null, error: `${err.name}: ${err.cause?.code ?? err.message}` };
  }
}
