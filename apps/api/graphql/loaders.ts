// Per-request batching: every `events` (and payload/result/error, which come from the
// events) asked for while one level of the query resolves becomes one `= any($1)` read.
import { eventsOf } from '../../../db/invocations.ts';
import type { LedgerEvent } from '../../../db/lifecycle.ts';
import type { Executor } from '../../../db/schema.ts';

/** Runs after the promise jobs of the current tick, like DataLoader's default scheduler. */
const afterPromiseJobs = (fn: () => void) => void Promise.resolve().then(() => process.nextTick(fn));

export class EventsLoader {
  private readonly cache = new Map<string, Promise<LedgerEvent[]>>();
  private pending: { id: string; resolve: (e: LedgerEvent[]) => void; reject: (e: unknown) => void }[] = [];

  constructor(private readonly db: Executor) {}

  load(invocationId: string): Promise<LedgerEvent[]> {
    let hit = this.cache.get(invocationId);
    if (!hit) {
      hit = new Promise<LedgerEvent[]>((resolve, reject) => {
        if (this.pending.length === 0) afterPromiseJobs(() => void this.dispatch());
        this.pending.push({ id: invocationId, resolve, reject });
      });
      this.cache.set(invocationId, hit);
    }
    return hit;
  }

  /** Seeds the cache with events already read (mutations return fresh views). */
  prime(invocationId: string, events: LedgerEvent[]): void {
    this.cache.set(invocationId, Promise.resolve(events));
  }

  private async dispatch(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      const byId = await eventsOf(this.db, batch.map((b) => b.id));
      for (const b of batch) b.resolve(byId.get(b.id) ?? []);
    } catch (e) {
      for (const b of batch) {
        this.cache.delete(b.id);
        b.reject(e);
      }
    }
  }
}
