// What a batch invocation's outcome means for its messages (AWS's ReportBatchItemFailures
// rules). Pure: the poller applies the decision, the unit tests pin it.
import type { Outcome } from '../../../db/attempts.ts';
import type { AttemptOutcome } from '../../runtimes/index.ts';

export const INVALID_BATCH_RESPONSE = 'InvalidBatchItemFailures';

export interface BatchDecision {
  /** message ids to delete */
  succeeded: string[];
  /** message ids that return to the queue */
  failed: string[];
  /** what the ledger records for the poll invocation */
  outcome: Outcome;
}

/**
 * The ids a `{"batchItemFailures": [{"itemIdentifier": …}]}` response names, or why the
 * response fails the whole batch. No response, an empty or null list: all succeeded.
 * Anything that is not such an object, an item without a string itemIdentifier, or an
 * identifier that is not in the batch: the whole batch failed.
 */
export function parseBatchItemFailures(result: unknown, batchIds: readonly string[]): { failed: string[] } | { invalid: string } {
  if (result === null || result === undefined) return { failed: [] };
  if (typeof result !== 'object' || Array.isArray(result)) return { invalid: 'the response is not an object' };
  const list = (result as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === null || list === undefined) return { failed: [] };
  if (!Array.isArray(list)) return { invalid: 'batchItemFailures is not a list' };
  const known = new Set(batchIds);
  const failed = new Set<string>();
  for (const item of list) {
    const id = item !== null && typeof item === 'object' ? (item as { itemIdentifier?: unknown }).itemIdentifier : undefined;
    if (typeof id !== 'string' || id === '') return { invalid: 'an item of batchItemFailures has no itemIdentifier' };
    if (!known.has(id)) return { invalid: `itemIdentifier ${JSON.stringify(id.slice(0, 100))} is not a message of this batch` };
    failed.add(id);
  }
  return { failed: [...failed] };
}

/**
 * Without reportBatchItemFailures a batch succeeds or fails as a whole. With it, a
 * successful invocation may name the messages that failed; an invalid response fails
 * the batch and the poll invocation (errorType InvalidBatchItemFailures).
 */
export function decideBatch(batchIds: readonly string[], reportBatchItemFailures: boolean, run: AttemptOutcome): BatchDecision {
  const all = [...batchIds];
  if (!run.ok) return { succeeded: [], failed: all, outcome: run };
  if (!reportBatchItemFailures) return { succeeded: all, failed: [], outcome: run };
  const parsed = parseBatchItemFailures(run.result, batchIds);
  if ('invalid' in parsed) {
    const response = JSON.stringify(run.result) ?? String(run.result);
    return {
      succeeded: [],
      failed: all,
      outcome: {
        ok: false,
        error: {
          errorType: INVALID_BATCH_RESPONSE,
          errorMessage: `Invalid batch response, the whole batch returns to the queue: ${parsed.invalid}. Response: ${response.slice(0, 1024)}`,
          trace: [],
        },
        durationMs: run.durationMs,
        log: run.log,
      },
    };
  }
  const failed = new Set(parsed.failed);
  return { succeeded: all.filter((id) => !failed.has(id)), failed: parsed.failed, outcome: run };
}
