// The onFailure destination of `fail`: receives Lambda's invocation record of an async
// invocation that ran out of retries (docs/worker.md, "Destinations") and logs what failed.
// Its own invocation is in the ledger like any other; what it returned:
//   npx invoke-ledger sql "select e.data -> 'result' as notice from audit.invocation_events e join audit.invocations i on i.id = e.invocation_id where i.function_name = 'on-failure' and e.type = 'succeeded' order by e.occurred_at desc limit 1"
interface InvocationRecord {
  requestContext?: { requestId?: string; functionArn?: string; condition?: string; approximateInvokeCount?: number };
  requestPayload?: unknown;
  responsePayload?: { errorType?: string; errorMessage?: string } | null;
}

export interface FailureNotice {
  failedInvocation: string | null;
  condition: string | null;
  attempts: number | null;
  errorType: string | null;
  errorMessage: string | null;
}

export async function handler(record: InvocationRecord, context: { log: (...args: unknown[]) => void }): Promise<FailureNotice> {
  const notice: FailureNotice = {
    failedInvocation: record.requestContext?.requestId ?? null,
    condition: record.requestContext?.condition ?? null,
    attempts: record.requestContext?.approximateInvokeCount ?? null,
    errorType: record.responsePayload?.errorType ?? null,
    errorMessage: record.responsePayload?.errorMessage ?? null,
  };
  context.log('invocation failed for good', notice);
  return notice;
}
