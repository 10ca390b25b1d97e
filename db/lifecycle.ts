// The lifecycle rules of an invocation (ledger.md §3): which event may follow which,
// and the state that folding an event stream yields. Pure: no I/O, no imports, so the
// API, the worker, the writer, the verifier and the property tests share one truth.

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

export const INVOCATION_TYPES = ['sync', 'async', 'poll'] as const;
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

export const DEAD_LETTER_REASONS = ['RetriesExhausted', 'EventAgeExceeded', 'ZeroReservedConcurrency'] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export interface FunctionErrorData {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

/** Event data by type, exactly as stored in `ledger.events.data`. */
export interface EventDataByType {
  accepted: {
    functionName: string;
    functionVersion: number;
    invocationType: InvocationType;
    payload: unknown;
    idempotencyKey: string | null;
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

export class LifecycleViolation extends Error {
  readonly code = 'LifecycleViolation';
  constructor(
    readonly invocationId: string,
    readonly from: EventType | null,
    readonly to: EventType,
    reason: string,
  ) {
    super(`invocation ${invocationId}: ${to} may not follow ${from ?? 'nothing'}: ${reason}`);
    this.name = 'LifecycleViolation';
  }
}

/**
 * Why `event` may not follow `state`, or null when it may. The single statement of the
 * state machine in ledger.md §3.
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
      if (state.pendingAfterFailure === 'dead_lettered') return null;
      if (state.invocationType !== 'async') return 'only async invocations are dead-lettered';
      if (s !== 'queued' && s !== 'retry_scheduled') return `cannot dead-letter from ${s}`;
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
