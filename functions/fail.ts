// Always throws, to watch retries, dead-lettering and onFailure destinations happen.
export const config = { maxRetries: 2 };

export class IntentionalFailure extends Error {
  override name = 'IntentionalFailure';
}

export async function handler(event: unknown, context: { attempt: number }): Promise<never> {
  const reason = typeof event === 'object' && event !== null && 'reason' in event ? String(event.reason) : 'this function always fails';
  throw new IntentionalFailure(`Attempt ${context.attempt} failed on purpose: ${reason}`);
}
