// Reads from a streaming replica (DATABASE_READ_URL) that are never older than the caller's
// own writes: before a read, the primary's WAL flush position is taken (one tiny round trip,
// no table touched) and the replica is used once it has replayed that far. Every commit
// acknowledged before the read began is then visible on the replica, the caller's included.
// If the replica does not get there within `maxWaitMs` (lag, a paused or broken replica),
// the read goes to the primary: slower, never stale (docs/scale.md).
import { sql } from 'kysely';
import type { Db } from './schema.ts';

export type ReadSource = 'replica' | 'primary';

export interface ReplicaReadOptions {
  /** longest wait for the replica to replay the primary's position (default 250 ms) */
  maxWaitMs?: number;
  /** how often the replica is asked while it catches up (default 5 ms) */
  pollMs?: number;
  /** each read's source, and why the primary served it (metrics, logs) */
  onRead?: (source: ReadSource, reason: 'caught-up' | 'lagging' | 'not-a-standby' | 'replica-error' | 'primary-error') => void;
}

export class ReplicaReads {
  private readonly maxWaitMs: number;
  private readonly pollMs: number;
  /** reads served by each side, for tests and /metrics */
  readonly served: Record<ReadSource, number> = { replica: 0, primary: 0 };

  constructor(
    readonly primary: Db,
    readonly replica: Db,
    private readonly o: ReplicaReadOptions = {},
  ) {
    this.maxWaitMs = o.maxWaitMs ?? 250;
    this.pollMs = o.pollMs ?? 5;
  }

  /**
   * A database that has seen every commit acknowledged before this call: the replica once
   * it has replayed the primary's flush position, else (after maxWaitMs) the primary.
   */
  async fresh(): Promise<{ db: Db; source: ReadSource }> {
    let target: string;
    try {
      const { rows } = await sql<{ lsn: string }>`select pg_current_wal_flush_lsn()::text as lsn`.execute(this.primary);
      target = rows[0]?.lsn as string;
    } catch {
      // the primary cannot even say where it is: its own read will fail the same way, and say why
      return this.use('primary', 'primary-error');
    }
    const until = Date.now() + this.maxWaitMs;
    for (;;) {
      try {
        const { rows } = await sql<{ ok: boolean | null }>`select pg_last_wal_replay_lsn() >= ${target}::pg_lsn as ok`.execute(this.replica);
        const ok = rows[0]?.ok;
        if (ok === true) return this.use('replica', 'caught-up');
        // null: the server is not a standby (misconfigured, or promoted). Nothing says it
        // follows this primary, so its answers could be anyone's: the primary serves.
        if (ok === null || ok === undefined) return this.use('primary', 'not-a-standby');
      } catch {
        return this.use('primary', 'replica-error');
      }
      if (Date.now() >= until) return this.use('primary', 'lagging');
      await new Promise((r) => setTimeout(r, this.pollMs));
    }
  }

  private use(source: ReadSource, reason: Parameters<NonNullable<ReplicaReadOptions['onRead']>>[1]): { db: Db; source: ReadSource } {
    this.served[source] += 1;
    this.o.onRead?.(source, reason);
    return { db: source === 'replica' ? this.replica : this.primary, source };
  }
}
