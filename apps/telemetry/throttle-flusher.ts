// Adds this process's throttles (ledger_throttles_total) to the shared counts in the
// database every `intervalMs`, so the console and SQL see the throttles of all processes
// (docs/observability.md#throttles). Reads the counter itself: the code that throttles
// only counts. A flush that fails keeps its counts for the next one.
import type { Logger } from 'pino';
import type { Counter, Registry } from 'prom-client';
import { addThrottleCounts, type ThrottleCount } from '../../db/throttles.ts';
import type { Executor } from '../../db/schema.ts';

export interface ThrottleFlusher {
  start(): void;
  /** adds what was counted since the last flush; resolves when written */
  flush(): Promise<void>;
  /** stops the timer after a last flush */
  stop(): Promise<void>;
}

const KEY = '\u0000';

export function createThrottleFlusher(o: { db: Executor; registry: Registry; logger: Logger; intervalMs?: number }): ThrottleFlusher {
  const intervalMs = o.intervalMs ?? 10_000;
  /** what has been written per label set, by the counter's own value */
  const written = new Map<string, number>();
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();

  const once = async (): Promise<void> => {
    const counter = o.registry.getSingleMetric('ledger_throttles_total') as Counter<'function' | 'type' | 'reason'> | undefined;
    if (!counter) return;
    const { values } = await counter.get();
    const now = new Date();
    const pending: { key: string; value: number; count: ThrottleCount }[] = [];
    for (const v of values) {
      const { function: functionName, type, reason } = v.labels as { function?: string; type?: string; reason?: string };
      if (!functionName || (type !== 'sync' && type !== 'async') || !reason) continue;
      const key = [functionName, type, reason].join(KEY);
      const delta = v.value - (written.get(key) ?? 0);
      if (delta > 0) pending.push({ key, value: v.value, count: { minute: now, functionName, invocationType: type, reason, count: delta } });
    }
    if (pending.length === 0) return;
    await addThrottleCounts(o.db, pending.map((p) => p.count));
    for (const p of pending) written.set(p.key, p.value);
  };
  const flush = (): Promise<void> => {
    const r = running.then(once);
    running = r.catch((err: unknown) => o.logger.warn({ err }, 'throttle counts could not be written; kept for the next flush'));
    return r;
  };
  const schedule = () => {
    timer = setTimeout(() => {
      void flush()
        .catch(() => undefined)
        .finally(() => {
          if (timer) schedule();
        });
    }, intervalMs);
    timer.unref();
  };
  return {
    start: () => {
      if (!timer) schedule();
    },
    flush,
    stop: async () => {
      if (timer) clearTimeout(timer);
      timer = null;
      await flush().catch(() => undefined);
    },
  };
}
