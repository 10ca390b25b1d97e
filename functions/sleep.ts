// Waits event.ms (default 100) and stops early when the attempt is aborted, as a
// well-behaved handler should: context.signal fires at the deadline.
import { setTimeout as delay } from 'node:timers/promises';

interface SleepEvent {
  ms?: number;
}

export async function handler(event: SleepEvent | null, context: { signal: AbortSignal }): Promise<{ slept: number }> {
  const ms = typeof event?.ms === 'number' && event.ms >= 0 ? event.ms : 100;
  const started = Date.now();
  await delay(ms, undefined, { signal: context.signal });
  return { slept: Date.now() - started };
}
