// Destinations (onSuccess / onFailure): the invocation record of docs/worker.md#destinations, written
// to the outbox in the same transaction as the terminal event that caused it. A
// `function:<name>` destination is an async invocation accepted in that transaction too;
// a URL destination is POSTed afterwards by any worker, with retries and backoff.
import {
  chainDepths,
  claimDueDeliveries,
  insertDeliveries,
  lastErrors,
  listDeliveries,
  recordDeliveryOutcome,
  type DeliveryStatus,
  type DestinationDeliveryRow,
} from '../../db/destinations.ts';
import type { FunctionVersion } from '../../db/functions.ts';
import { getFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { DEFAULT_MAX_CHAIN_DEPTH, type FunctionErrorData, type InvocationState } from '../../db/lifecycle.ts';
import { ASYNC_PAYLOAD_LIMIT } from '../../db/limits.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { contextFrom, failSpan, inSpan, outgoingTraceHeaders, SpanKind, tracingOn } from '../telemetry/tracing.ts';

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

/** What a stream batch that used its retries sends to its mapping's on-failure destination: where its records are, not the records (docs/streams.md). */
export interface StreamBatchInfo {
  shardId: string;
  startSequenceNumber: string;
  endSequenceNumber: string;
  approximateArrivalOfFirstRecord: string;
  approximateArrivalOfLastRecord: string;
  batchSize: number;
  streamArn: string;
}

/** Lambda's on-failure record of a stream batch: KinesisBatchInfo, or DDBStreamBatchInfo for a change stream. */
export type StreamFailureRecord = {
  version: '1.0';
  timestamp: string;
  requestContext: { requestId: string; functionArn: string; condition: 'RetryAttemptsExhausted' | 'RecordAgeExceeded'; approximateInvokeCount: number };
  responseContext: { statusCode: number; executedVersion: string; functionError?: 'Unhandled' };
} & ({ KinesisBatchInfo: StreamBatchInfo } | { DDBStreamBatchInfo: StreamBatchInfo });

export interface InvocationRecord {
  version: '1.0';
  timestamp: string;
  requestContext: { requestId: string; functionArn: string; condition: DestinationCondition; approximateInvokeCount: number };
  requestPayload: unknown;
  responseContext: { statusCode: number; executedVersion: string; functionError?: 'Unhandled' };
  responsePayload: unknown;
}

/** Which destination a terminal state goes to, if any. A stopped loop goes nowhere (it would go on). */
export function destinationOf(f: FinishedInvocation): { destination: string; condition: DestinationCondition } | null {
  if (f.state.invocationType !== 'async') return null;
  if (f.state.status === 'succeeded' && f.fn.onSuccess) return { destination: f.fn.onSuccess, condition: 'Success' };
  const reason = f.state.deadLetterReason;
  if (f.state.status === 'dead_lettered' && f.fn.onFailure && reason && reason !== 'RecursiveInvocationLoop') {
    return { destination: f.fn.onFailure, condition: reason };
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

export interface EnqueueOptions {
  /** a chain stops at this depth (docs/worker.md); 0 turns the guard off */
  maxChainDepth?: number;
  now?: Date;
}

/** A record on its way to a destination: an async invocation's, or a stream batch's (docs/streams.md). */
export interface Planned {
  invocationId: string;
  count: number;
  condition: DestinationCondition;
  destination: string;
  record: InvocationRecord | StreamFailureRecord;
  status: DeliveryStatus;
  targetInvocationId: string | null;
  lastError: string | null;
}

/**
 * The completion hook: call inside the transaction that appended the terminal events.
 * Returns how many URL deliveries were queued (so the caller can wake its deliverer).
 * A record over the async payload limit goes nowhere (its row says why, payloads left
 * out); a function target one hop deeper than its cause is accepted with that depth, and
 * at the chain limit is accepted already stopped (dead-lettered, RecursiveInvocationLoop).
 */
export async function enqueueDestinations(tx: Executor, finished: readonly FinishedInvocation[], o: EnqueueOptions = {}): Promise<number> {
  const now = o.now ?? new Date();
  const maxChainDepth = o.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
  const rows: Planned[] = [];
  for (const f of finished) {
    const d = destinationOf(f);
    if (d) {
      rows.push({ invocationId: f.state.id, count: f.state.attempts, ...d, record: invocationRecord(f, d.condition, now), status: 'pending', targetInvocationId: null, lastError: null });
    }
  }
  if (rows.length === 0) return 0;

  // dead-lettered without an attempt in this transaction (age, throttle, lost worker): the
  // record carries the last recorded error, read from the ledger
  const unknownError = finished.filter((f) => f.error === undefined && f.state.status === 'dead_lettered' && destinationOf(f));
  if (unknownError.length > 0) {
    const errors = await lastErrors(tx, unknownError.map((f) => f.state.id));
    for (const r of rows) {
      const record = r.record as InvocationRecord;
      if (errors.has(r.invocationId) && record.responsePayload === null) record.responsePayload = errors.get(r.invocationId);
    }
  }
  return enqueueRecords(tx, rows, maxChainDepth);
}

/**
 * Writes records to their destinations' outbox: a `function:` target is accepted right
 * here as an async invocation one hop deeper than the invocation that caused it; a URL is
 * POSTed later by any worker. Returns how many URL deliveries were queued.
 */
export async function enqueueRecords(tx: Executor, rows: Planned[], maxChainDepth: number): Promise<number> {

  // the async payload limit holds for records too: an echo loop doubles its record each hop
  for (const r of rows) {
    const bytes = Buffer.byteLength(JSON.stringify(r.record), 'utf8');
    if (bytes <= ASYNC_PAYLOAD_LIMIT) continue;
    r.status = 'failed';
    r.lastError = `PayloadTooLarge: the invocation record is ${bytes} bytes; the async payload limit is ${ASYNC_PAYLOAD_LIMIT} (payloads left out of this row)`;
    if ('requestPayload' in r.record) r.record = { ...r.record, requestPayload: null, responsePayload: null };
  }

  // function: destinations are accepted right here, as ordinary async invocations one hop deeper
  const toFunctions = rows.filter((r) => r.status === 'pending' && r.destination.startsWith('function:'));
  const targets = new Map<string, FunctionVersion | null>();
  for (const r of toFunctions) {
    const name = r.destination.slice('function:'.length);
    if (!targets.has(name)) targets.set(name, await getFunction(tx, name));
  }
  const toAccept = toFunctions.filter((r) => targets.get(r.destination.slice(9)));
  const origins = toAccept.length > 0 ? await chainDepths(tx, toAccept.map((r) => r.invocationId)) : new Map<string, { depth: number; trace?: { traceparent: string } }>();
  const accepted = await acceptInvocations(
    tx,
    toAccept.map((r) => ({
      fn: targets.get(r.destination.slice(9)) as FunctionVersion,
      invocationType: 'async' as const,
      payload: r.record,
      chainDepth: (origins.get(r.invocationId)?.depth ?? 0) + 1,
      maxChainDepth,
      // the target joins the trace of the invocation that caused it
      ...(origins.get(r.invocationId)?.trace ? { trace: origins.get(r.invocationId)?.trace } : {}),
    })),
  );
  toAccept.forEach((r, i) => {
    const a = accepted[i];
    r.targetInvocationId = a?.invocationId ?? null;
    if (a?.state?.deadLetterReason === 'RecursiveInvocationLoop') {
      r.status = 'failed';
      r.lastError = `RecursiveInvocationLoop: the chain reached ${maxChainDepth} invocations; the target was accepted and stopped without running`;
    } else r.status = 'delivered';
  });
  for (const r of toFunctions) {
    if (r.status !== 'pending') continue;
    r.status = 'failed';
    r.lastError = `Function not found: ${r.destination.slice(9)}`;
  }

  await insertDeliveries(
    tx,
    rows.map((r) => ({
      invocationId: r.invocationId,
      invokeCount: r.count,
      condition: r.condition,
      destination: r.destination,
      record: r.record,
      status: r.status,
      targetInvocationId: r.targetInvocationId,
      lastError: r.lastError,
    })),
  );
  return rows.filter((r) => r.status === 'pending').length;
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

const toDelivery = (r: DestinationDeliveryRow): DestinationDelivery => ({
  id: r.id,
  invocationId: r.invocation_id,
  condition: r.condition as DestinationCondition,
  destination: r.destination,
  record: r.record as InvocationRecord,
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
  return (await listDeliveries(db, filter)).map(toDelivery);
}

export interface DeliveryPolicy {
  /** POST attempts before a delivery is marked failed */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** one POST, answer included; the response body is never read */
  timeoutMs: number;
  /** POSTs in flight from one worker, over all targets */
  maxConcurrency: number;
  /** POSTs in flight from one worker to one target (scheme://host:port) */
  perTargetConcurrency: number;
  /** after a failure a target rests base · 2^(n-1), up to max, before its next delivery is tried */
  targetBackoffBaseMs: number;
  targetBackoffMaxMs: number;
  /** HTTP_ALLOWLIST: a URL it refuses is marked failed without being POSTed */
  allowUrl?: (url: string) => boolean;
}

export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = {
  maxAttempts: 8,
  baseDelayMs: 1_000,
  maxDelayMs: 300_000,
  timeoutMs: 10_000,
  maxConcurrency: 32,
  perTargetConcurrency: 4,
  targetBackoffBaseMs: 1_000,
  targetBackoffMaxMs: 60_000,
};

type Claimed = DestinationDeliveryRow & { target: string; traceparent?: string | null; tracestate?: string | null };

/**
 * POSTs due URL deliveries, isolated per target: each target has its own in-flight cap
 * and its own backoff after failures, so a target that hangs or fails holds at most its
 * own few slots and never delays the others. Every POST has a timeout; the response
 * body is discarded unread (a 1.5 GB answer costs nothing). A claimed row is hidden from
 * other workers for the timeout + 30 s, so a worker dying mid-POST leaves it to them.
 */
export class DestinationDeliverer {
  private readonly inFlight = new Map<string, number>();
  private readonly resting = new Map<string, { failures: number; until: number }>();
  private readonly running = new Set<Promise<void>>();
  private readonly aborts = new Set<AbortController>();
  private claiming: Promise<void> | null = null;
  private claimAgain = false;
  private stopping = false;

  constructor(
    private readonly db: Db,
    private readonly policy: DeliveryPolicy,
    private readonly hooks: { onAttempted?: (n: number) => void; onError?: (e: unknown) => void } = {},
  ) {}

  /** POSTs in flight now */
  get active(): number {
    return this.running.size;
  }

  /** Claims what may go out now and starts it; call on a timer and after enqueues. */
  pump(): void {
    if (this.stopping) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    const free = this.policy.maxConcurrency - this.running.size;
    if (free <= 0) return;
    this.claimAgain = false;
    const now = Date.now();
    const room = new Map<string, number>();
    for (const [target, n] of this.inFlight) room.set(target, Math.max(0, this.policy.perTargetConcurrency - n));
    for (const [target, r] of this.resting) if (r.until > now) room.set(target, 0);
    this.claiming = claimDueDeliveries(this.db, {
      limit: free,
      perTarget: this.policy.perTargetConcurrency,
      room,
      holdSeconds: Math.ceil(this.policy.timeoutMs / 1000) + 30,
      withTraceContext: tracingOn(),
    })
      .then((rows) => {
        if (rows.length > 0) this.hooks.onAttempted?.(rows.length);
        for (const r of rows) this.start(r);
        if (rows.length >= free) this.claimAgain = true;
      })
      .catch((e: unknown) => this.hooks.onError?.(e))
      .finally(() => {
        this.claiming = null;
        if (this.claimAgain && !this.stopping) this.pump();
      });
  }

  private start(r: Claimed): void {
    this.inFlight.set(r.target, (this.inFlight.get(r.target) ?? 0) + 1);
    const abort = new AbortController();
    // claimed while stopping: recorded as abandoned without a request
    if (this.stopping) abort.abort(new Error('the worker is stopping'));
    this.aborts.add(abort);
    const p: Promise<void> = this.deliverOne(r, abort.signal)
      .catch((e: unknown) => this.hooks.onError?.(e))
      .finally(() => {
        this.aborts.delete(abort);
        const n = (this.inFlight.get(r.target) ?? 1) - 1;
        if (n > 0) this.inFlight.set(r.target, n);
        else this.inFlight.delete(r.target);
        this.running.delete(p);
        this.pump();
      });
    this.running.add(p);
  }

  private async deliverOne(r: Claimed, stop: AbortSignal): Promise<void> {
    const allowed = this.policy.allowUrl?.(r.destination) ?? true;
    // a CLIENT span in the trace of the invocation that caused it; the POST carries its traceparent
    const parent = r.traceparent ? { traceparent: r.traceparent, ...(r.tracestate ? { tracestate: r.tracestate } : {}) } : undefined;
    const outcome = allowed
      ? await inSpan(
          'POST destination',
          { kind: SpanKind.CLIENT, parent: contextFrom(parent), attributes: tracingOn() ? { 'faas.invocation_id': r.invocation_id, 'http.request.method': 'POST', 'server.address': r.target } : {} },
          async (span) => {
            const o = await post(r.destination, r.record, this.policy.timeoutMs, stop);
            if (span && o.status !== null) span.setAttribute('http.response.status_code', o.status);
            if (!o.ok) failSpan(span, o.status === null ? 'Error' : String(o.status), o.error ?? 'not delivered');
            return o;
          },
        )
      : { ok: false, status: null, error: 'destination URL is not allowed by HTTP_ALLOWLIST' };
    if (outcome.ok) this.resting.delete(r.target);
    else if (allowed && !stop.aborted) {
      // the target rests: its other deliveries wait, the other targets' do not
      const failures = (this.resting.get(r.target)?.failures ?? 0) + 1;
      const delay = Math.min(this.policy.targetBackoffMaxMs, this.policy.targetBackoffBaseMs * 2 ** (failures - 1));
      this.resting.set(r.target, { failures, until: Date.now() + delay / 2 + (delay / 2) * Math.random() });
    }
    const giveUp = !outcome.ok && (!allowed || r.attempts >= this.policy.maxAttempts);
    await recordDeliveryOutcome(this.db, {
      id: r.id,
      status: outcome.ok ? 'delivered' : giveUp ? 'failed' : 'pending',
      error: outcome.error,
      statusCode: outcome.status,
      retryInMs: Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** Math.max(0, r.attempts - 1)),
    });
  }

  /** Stops claiming; POSTs in flight are abandoned, recorded as such, and tried again later. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const a of this.aborts) a.abort(new Error('the worker is stopping'));
    await this.claiming;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}

async function post(
  url: string,
  record: unknown,
  timeoutMs: number,
  stop: AbortSignal,
): Promise<{ ok: boolean; status: number | null; error: string | null }> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'invoke-ledger-destinations', ...outgoingTraceHeaders() },
      body: JSON.stringify(record),
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]),
      // a redirect could lead past HTTP_ALLOWLIST: a 3xx is an answer (not delivered), not a hop
      redirect: 'manual',
    });
    // the status is the answer; the body is never read (cancelling it drops the connection)
    await res.body?.cancel().catch(() => {});
    return res.ok ? { ok: true, status: res.status, error: null } : { ok: false, status: res.status, error: `HTTP ${res.status}` };
  } catch (e) {
    if (stop.aborted) return { ok: false, status: null, error: 'abandoned: the worker stopped during the POST' };
    const err = e as Error & { cause?: { code?: string } };
    return { ok: false, status: null, error: `${err.name}: ${err.cause?.code ?? err.message}` };
  }
}
