// The lifecycle rules of an invocation (docs/event-model.md): which event may follow which,
// and the state that folding an event stream yields. Pure: no I/O, and no import but the
// error type (db/errors.ts, itself pure), so the API, the worker, the writer, the verifier
// and the property tests share one truth.
import { LedgerError } from './errors.ts';

export const EVENT_TYPES = [
  'accepted',
  'started',
  'failed',
  'retried',
  'succeeded',
  'dead_lettered',
  'cancelled',
  'redriven',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * `replay` (docs/replay.md): a recorded payload run again against another version. The
 * rules treat it as they treat `sync`, because only `async` is special below: one
 * attempt, never retried, never dead-lettered, and no destinations.
 */
export const INVOCATION_TYPES = ['sync', 'async', 'poll', 'replay'] as const;
export type InvocationType = (typeof INVOCATION_TYPES)[number];

export const STATUSES = [
  'queued',
  'running',
  'retry_scheduled',
  'succeeded',
  'failed',
  'dead_lettered',
  'cancelled',
] as const;
export type InvocationStatus = (typeof STATUSES)[number];

export const DEAD_LETTER_REASONS = ['RetriesExhausted', 'EventAgeExceeded', 'ZeroReservedConcurrency', 'RecursiveInvocationLoop'] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

/**
 * Recursive loops (docs/worker.md): an invocation caused by another (a destination, an
 * invoke made from inside a handler, a poll batch of messages a handler sent) is one
 * deeper in its chain than its cause; one accepted from outside has depth 0. As Lambda
 * does, a chain runs at most this many invocations: the one reached after that many hops
 * is stopped when it is accepted (async: `dead_lettered {reason: RecursiveInvocationLoop}`
 * in the same append, without an attempt).
 */
export const DEFAULT_MAX_CHAIN_DEPTH = 16;

/** Whether an invocation at `chainDepth` is stopped; `maxChainDepth` 0 turns the guard off. */
export function isLoopStopped(chainDepth: number, maxChainDepth: number): boolean {
  return maxChainDepth > 0 && chainDepth >= maxChainDepth;
}

export interface FunctionErrorData {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

/** Retry limits an async invocation carries itself, replacing its function version's. */
export interface InvocationRetryPolicy {
  /** retries after the first attempt (a schedule's MaximumRetryAttempts, 0–185) */
  maxRetries: number;
  /** no attempt starts this long after the invocation was accepted (MaximumEventAgeInSeconds, 60–86400) */
  maxEventAgeSeconds: number;
}

/** A schedule tick's Target.Input and the context its attributes are replaced with, attempt by attempt. */
export interface ScheduleInputRecord {
  /** Target.Input as the schedule had it when the tick fired */
  template: string;
  scheduleArn: string;
  /** formatted as <aws.scheduler.scheduled-time> */
  scheduledTime: string;
  executionId: string;
}

/** What a stream batch's `accepted` names: where its records are. Sequence numbers as Lambda's strings. */
export interface StreamBatchSource {
  mappingId: string;
  streamName: string;
  shardId: string;
  firstSequenceNumber: string;
  lastSequenceNumber: string;
  /** a change stream's batch (docs/streams.md): the source table and the commit LSNs of its first and last change */
  source?: { table: string; firstLsn: string; lastLsn: string };
  /** the tumbling window the batch carries (docs/streams.md, "Tumbling windows"); its final invocation has no records */
  window?: { start: string; end: string; isFinalInvokeForWindow: boolean; isWindowTerminatedEarly: boolean };
}

/** Event data by type, exactly as stored in `ledger.events.data`. */
export interface EventDataByType {
  accepted: {
    functionName: string;
    functionVersion: number;
    invocationType: InvocationType;
    payload: unknown;
    idempotencyKey: string | null;
    /** invocations before this one in its chain (absent: 0, accepted from outside) */
    chainDepth?: number;
    /** W3C trace context of the span that accepted it, when tracing was on (docs/observability.md) */
    traceparent?: string;
    tracestate?: string;
    /** the alias invoked (`name:live`); functionVersion is the version it picked */
    alias?: string;
    /** the version the caller named (`name:3`); absent when invoked unqualified (`$LATEST`) or through an alias */
    qualifier?: string;
    /** a replay invocation: its run and the original invocation whose payload it runs */
    replay?: { replayId: string; of: string };
    /** its own retry limits, in place of its function version's (a schedule tick's RetryPolicy; db/retry-policy.ts) */
    retryPolicy?: InvocationRetryPolicy;
    /** a schedule tick: what every attempt's event is rendered from (`payload` is attempt 1's; docs/schedules.md) */
    scheduleInput?: ScheduleInputRecord;
    /** a stream batch (docs/streams.md): the mapping, stream, shard and sequence range it delivers */
    stream?: StreamBatchSource;
  };
  started: { attempt: number; workerId: string };
  failed: { attempt: number; error: FunctionErrorData; willRetry: boolean; durationMs: number };
  retried: { attempt: number; runAt: string; delayMs: number };
  succeeded: { attempt: number; result: unknown; durationMs: number };
  dead_lettered: { reason: DeadLetterReason };
  cancelled: { reason: string };
  redriven: { by: string };
}

export type NewEvent = {
  [T in EventType]: { type: T; data: EventDataByType[T] };
}[EventType];

/** An event as read back from the ledger. */
export type LedgerEvent = NewEvent & {
  invocationId: string;
  seq: number;
  attempt: number | null;
  occurredAt: Date;
  position?: string;
};

/** The projected state of one invocation: what `ledger.invocations` holds. */
export interface InvocationState {
  id: string;
  functionName: string;
  functionVersion: number;
  invocationType: InvocationType;
  status: InvocationStatus;
  /** attempts started so far, over the whole life of the invocation */
  attempts: number;
  /** failed attempts since the last accept or redrive: the retry budget spent */
  failuresSinceRedrive: number;
  lastSeq: number;
  lastType: EventType;
  /** after a `failed` of an async invocation the next event is already decided */
  pendingAfterFailure: 'retried' | 'dead_lettered' | null;
  idempotencyKey: string | null;
  errorType: string | null;
  deadLetterReason: DeadLetterReason | null;
  acceptedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
  /** when the next attempt is due (queued, retry_scheduled) */
  runAt: Date | null;
  /** worker holding the running attempt */
  workerId: string | null;
}

export const TERMINAL_STATUSES: ReadonlySet<InvocationStatus> = new Set([
  'succeeded',
  'failed',
  'dead_lettered',
  'cancelled',
]);

export function isTerminal(status: InvocationStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/** A LedgerError like every other, so each edge maps it through its one table (409 over HTTP). */
export class LifecycleViolation extends LedgerError {
  constructor(
    readonly invocationId: string,
    readonly from: EventType | null,
    readonly to: EventType,
    reason: string,
  ) {
    super('LifecycleViolation', `invocation ${invocationId}: ${to} may not follow ${from ?? 'nothing'}: ${reason}`, { invocationId, from, to, reason });
  }
}

/**
 * Why `event` may not follow `state`, or null when it may. The single statement of the
 * state machine in docs/event-model.md.
 */
export function whyNot(state: InvocationState | undefined, event: NewEvent): string | null {
  if (!state) return event.type === 'accepted' ? null : 'the first event must be accepted';
  if (event.type === 'accepted') return 'an invocation is accepted once';
  // a failed async attempt carries its decision: only that decision may follow it
  if (state.pendingAfterFailure !== null && event.type !== state.pendingAfterFailure) {
    return `a failed async attempt is followed by ${state.pendingAfterFailure}, not ${event.type}`;
  }
  const s = state.status;
  switch (event.type) {
    case 'started':
      if (s !== 'queued' && s !== 'retry_scheduled') return `cannot start from ${s}`;
      if (event.data.attempt !== state.attempts + 1) return `attempt must be ${state.attempts + 1}`;
      return null;
    case 'succeeded':
    case 'failed':
      if (s !== 'running') return `no attempt is running (status ${s})`;
      if (event.data.attempt !== state.attempts) return `attempt ${state.attempts} is running, not ${event.data.attempt}`;
      if (event.type === 'failed' && event.data.willRetry && state.invocationType !== 'async')
        return 'only async invocations are retried';
      return null;
    case 'retried':
      if (state.pendingAfterFailure !== 'retried') return 'only a failed attempt that will retry is retried';
      if (event.data.attempt !== state.attempts + 1) return `the next attempt is ${state.attempts + 1}`;
      return null;
    case 'dead_lettered':
      // a failed attempt is dead-lettered for what its failure decided: retries spent or too old
      if (state.pendingAfterFailure === 'dead_lettered') {
        return event.data.reason === 'RetriesExhausted' || event.data.reason === 'EventAgeExceeded' ? null : `a failed attempt is not dead-lettered as ${event.data.reason}`;
      }
      if (state.invocationType !== 'async') return 'only async invocations are dead-lettered';
      if (s !== 'queued' && s !== 'retry_scheduled') return `cannot dead-letter from ${s}`;
      if (event.data.reason === 'RecursiveInvocationLoop' && state.lastType !== 'accepted') return 'a loop is stopped when the invocation is accepted';
      return event.data.reason === 'RetriesExhausted' ? 'RetriesExhausted needs a failed final attempt' : null;
    case 'cancelled':
      if (s !== 'queued' && s !== 'retry_scheduled') return `only queued or retry-scheduled invocations can be cancelled (status ${s})`;
      return null;
    case 'redriven':
      if (s !== 'dead_lettered') return `only dead letters are redriven (status ${s})`;
      return null;
  }
}

/**
 * Why a stream, or one append to it, may not end at `state`, or null when it may. A failed
 * async attempt carries its decision, and the decision (retried or dead_lettered) is
 * written with it.
 */
export function whyNotAtEnd(state: InvocationState): string | null {
  return state.pendingAfterFailure === null ? null : `a failed async attempt must be followed by ${state.pendingAfterFailure} in the same append`;
}

/** Folds one event into the state; throws LifecycleViolation when it may not follow. */
export function apply(
  state: InvocationState | undefined,
  event: NewEvent,
  invocationId: string,
  at: Date,
): InvocationState {
  const reason = whyNot(state, event);
  if (reason !== null) throw new LifecycleViolation(invocationId, state?.lastType ?? null, event.type, reason);
  if (event.type === 'accepted') {
    return {
      id: invocationId,
      functionName: event.data.functionName,
      functionVersion: event.data.functionVersion,
      invocationType: event.data.invocationType,
      status: 'queued',
      attempts: 0,
      failuresSinceRedrive: 0,
      lastSeq: 1,
      lastType: 'accepted',
      pendingAfterFailure: null,
      idempotencyKey: event.data.idempotencyKey,
      errorType: null,
      deadLetterReason: null,
      acceptedAt: at,
      startedAt: null,
      finishedAt: null,
      updatedAt: at,
      runAt: at,
      workerId: null,
    };
  }
  const prev = state as InvocationState;
  const next: InvocationState = {
    ...prev,
    lastSeq: prev.lastSeq + 1,
    lastType: event.type,
    updatedAt: at,
    pendingAfterFailure: null,
  };
  switch (event.type) {
    case 'started':
      next.status = 'running';
      next.attempts = event.data.attempt;
      next.startedAt = prev.startedAt ?? at;
      next.workerId = event.data.workerId;
      next.runAt = null;
      break;
    case 'succeeded':
      next.status = 'succeeded';
      next.errorType = null;
      next.finishedAt = at;
      next.workerId = null;
      break;
    case 'failed':
      next.errorType = event.data.error.errorType;
      next.failuresSinceRedrive = prev.failuresSinceRedrive + 1;
      next.workerId = null;
      if (prev.invocationType === 'async') {
        // the decision is part of the failure; the next event carries it out
        next.pendingAfterFailure = event.data.willRetry ? 'retried' : 'dead_lettered';
      } else {
        next.status = 'failed';
        next.finishedAt = at;
      }
      break;
    case 'retried':
      next.status = 'retry_scheduled';
      next.runAt = new Date(event.data.runAt);
      break;
    case 'dead_lettered':
      next.status = 'dead_lettered';
      next.deadLetterReason = event.data.reason;
      next.finishedAt = at;
      next.runAt = null;
      break;
    case 'cancelled':
      next.status = 'cancelled';
      next.finishedAt = at;
      next.runAt = null;
      break;
    case 'redriven':
      next.status = 'queued';
      next.failuresSinceRedrive = 0;
      next.deadLetterReason = null;
      next.finishedAt = null;
      next.runAt = at;
      break;
  }
  return next;
}

/** Folds a whole stream (as read from the ledger) into its state. */
export function fold(events: readonly LedgerEvent[]): InvocationState | undefined {
  let state: InvocationState | undefined;
  for (const e of events) {
    if (e.seq !== (state?.lastSeq ?? 0) + 1) {
      throw new LifecycleViolation(e.invocationId, state?.lastType ?? null, e.type, `seq ${e.seq} out of order`);
    }
    state = apply(state, e, e.invocationId, e.occurredAt);
  }
  return state;
}

/** The attempt column of an event: its attempt where it has one. */
export function attemptOf(event: NewEvent): number | null {
  switch (event.type) {
    case 'started':
    case 'failed':
    case 'retried':
    case 'succeeded':
      return event.data.attempt;
    default:
      return null;
  }
}

/** Whether the invocation still holds a row in the hot queue table. */
export function isQueued(state: InvocationState): boolean {
  return !isTerminal(state.status);
}

/**
 * Retry delay before attempt n+1 after n failures: base * 2^(n-1), capped, with
 * "equal jitter" (half fixed, half random) so retries spread out but never collapse to 0.
 */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number, random: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + (exp / 2) * random);
}
