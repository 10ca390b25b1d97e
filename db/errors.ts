// Typed errors with stable codes. The edges (HTTP, GraphQL) map codes to statuses in
// one table each; nothing else inspects messages.

export type LedgerErrorCode =
  | 'FunctionNotFound'
  | 'FunctionExists'
  | 'InvalidFunctionConfig'
  | 'InvalidParameter'
  | 'InvalidRequestContent'
  | 'PayloadTooLarge'
  | 'InvocationNotFound'
  | 'SequenceConflict'
  | 'LifecycleViolation'
  | 'TooManyRequests'
  | 'ServiceUnavailable'
  | 'SubscriberTooSlow'
  | 'InvocationInProgress'
  | 'RecursiveInvocation'
  | 'Unauthorized'
  | 'Forbidden'
  | 'QueueNotFound'
  | 'QueueExists'
  | 'EventSourceMappingNotFound'
  | 'EventSourceMappingExists'
  // tamper evidence (docs/tamper-evidence.md)
  | 'EventNotFound'
  | 'TreeHeadNotFound'
  | 'NotYetSealed'
  // code packages (docs/code.md)
  | 'InvalidCodePackage'
  | 'CodePackageTooLarge'
  | 'CodeStorageExceeded'
  | 'CodePackageNotFound'
  | 'CodePackageCorrupt'
  // the control-plane ledger (docs/changes.md): a change made against a stale revision
  | 'RevisionConflict'
  // schedules (docs/schedules.md)
  | 'ScheduleNotFound'
  | 'ScheduleExists'
  // replay runs (docs/replay.md)
  | 'ReplayNotFound'
  // streams (docs/streams.md)
  | 'StreamNotFound'
  | 'StreamExists';

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = code;
  }
}

export class SequenceConflict extends LedgerError {
  constructor(
    readonly invocationId: string,
    readonly expectedSeq: number,
    readonly actualSeq: number | null,
  ) {
    super(
      'SequenceConflict',
      `invocation ${invocationId}: expected last seq ${expectedSeq}, found ${actualSeq ?? 'a concurrent append'}`,
      { invocationId, expectedSeq, actualSeq },
    );
  }
}

export const isLedgerError = (e: unknown): e is LedgerError => e instanceof LedgerError;

/** pg error codes that mean "the database is not there right now". */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300']);
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

export function isDatabaseUnavailable(e: unknown): boolean {
  if (!e || typeof e !== 'object') return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_NODE_CODES.has(code))) return true;
  const msg = String((e as { message?: unknown }).message ?? '');
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|the database system is (starting up|shutting down)/i.test(
    msg,
  );
}

/**
 * SQLSTATEs of a transaction PostgreSQL rolled back because of a concurrent one (deadlock,
 * serialization failure, a lock not granted in time): nothing was written, and the same
 * request may simply be sent again.
 */
const CONFLICT_SQLSTATES = new Set(['40P01', '40001', '55P03']);

export function isTransientConflict(e: unknown): boolean {
  if (!e || typeof e !== 'object') return false;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && CONFLICT_SQLSTATES.has(code);
}
