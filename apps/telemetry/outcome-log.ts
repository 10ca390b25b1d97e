// The server's own line per recorded attempt outcome (info): enough to follow one
// invocation through the log and into its trace (docs/observability.md).
import type { Logger } from 'pino';
import type { InvocationMetrics, InvocationKind } from './metrics.ts';

export interface RecordedOutcome {
  invocationId: string;
  functionName: string;
  functionVersion: number;
  type: InvocationKind;
  attempt: number;
  /** what the ledger now says: succeeded, failed, retry_scheduled, dead_lettered */
  status: string;
  durationMs: number;
  errorType?: string;
  deadLetterReason?: string | null;
  traceId?: string;
}

/** Counts the outcome and logs its line. */
export function reportOutcome(logger: Logger, metrics: InvocationMetrics | null, o: RecordedOutcome): void {
  const outcome = o.status === 'retry_scheduled' ? 'retried' : o.status;
  if (metrics) {
    metrics.invocations.inc({ function: o.functionName, version: String(o.functionVersion), type: o.type, outcome });
    metrics.duration.observe({ function: o.functionName, type: o.type, outcome }, o.durationMs / 1000);
    if (o.status === 'dead_lettered') metrics.deadLetters.inc({ function: o.functionName, reason: o.deadLetterReason ?? 'unknown' });
  }
  if (!logger.isLevelEnabled('info')) return;
  logger.info(
    {
      invocationId: o.invocationId,
      function: o.functionName,
      version: o.functionVersion,
      type: o.type,
      attempt: o.attempt,
      outcome,
      durationMs: o.durationMs,
      ...(o.errorType ? { errorType: o.errorType } : {}),
      ...(o.deadLetterReason ? { reason: o.deadLetterReason } : {}),
      ...(o.traceId ? { traceId: o.traceId } : {}),
    },
    'invocation outcome',
  );
}
