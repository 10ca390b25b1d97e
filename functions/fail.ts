// Always throws. Invoked asynchronously it shows the whole failure path in a few seconds:
// the first attempt, 2 retries about 0.5 s and 1 s later (retryBaseDelayMs * 2^(n-1), with
// jitter), then `dead_lettered`, then the onFailure destination `on-failure` (on-failure.ts)
// runs with Lambda's invocation record. Invoked synchronously it fails once and answers
// with the error, as Lambda does: no retries, no destination.
//
//   curl -s -H "Authorization: Bearer $TOKEN" -H 'Prefer: respond-async' localhost:3000/invoke/fail -d '{"reason":"demo"}'
export const config = { maxRetries: 2, retryBaseDelayMs: 500, retryMaxDelayMs: 2_000, onFailure: 'function:on-failure' };

export class IntentionalFailure extends Error {
  override name = 'IntentionalFailure';
}

export async function handler(event: unknown, context: { attempt: number; log: (...args: unknown[]) => void }): Promise<never> {
  const reason = typeof event === 'object' && event !== null && 'reason' in event ? String(event.reason) : 'this function always fails';
  // what X-Amz-Log-Type: Tail returns (base64) and the attempt's log keeps
  context.log(`attempt ${context.attempt}: failing on purpose (${reason})`);
  throw new IntentionalFailure(`Attempt ${context.attempt} failed on purpose: ${reason}`);
}
