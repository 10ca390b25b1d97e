// The ledger event feed: one per process, fanned out to any number of subscribers.
//
// Order and completeness come from the transaction ids, not from `position`: identity
// values are handed out before commit, so a reader following `position` alone would skip
// a row whose transaction commits after a later one's. The feed reads events ordered by
// (tx_id, position) and only those whose tx_id is below the xmin of its own snapshot:
// every transaction older than xmin has committed or aborted for good, so nothing behind
// the cursor can still appear. LISTEN `ledger_events` (the writer notifies on every
// append) only says "read again"; a timer covers lost connections and held-back rows.
import { sql } from 'kysely';
import type pg from 'pg';
import { toLedgerEvent, UUID, type EventRowRaw } from './invocations.ts';
import type { LedgerEvent } from './lifecycle.ts';
import type { Executor } from './schema.ts';
import { EVENTS_CHANNEL } from './writer.ts';

/** Where the feed stands: the last delivered (tx_id, position), both as text. */
export interface FeedCursor {
  txId: string;
  position: string;
}

export interface FeedEvent extends Omit<LedgerEvent, 'position'> {
  position: string;
  functionName: string;
  txId: string;
}

export interface FeedFilter {
  invocationId?: string | null;
  functionName?: string | null;
}

export interface LedgerFeedOptions {
  db: Executor;
  /** opens a dedicated connection for LISTEN; without it the feed polls */
  listen?: () => Promise<pg.Client>;
  /** poll interval while LISTEN is unavailable (and a safety net when it is) */
  pollIntervalMs?: number;
  /** re-read delay when committed rows wait behind an older open transaction */
  heldBackRetryMs?: number;
  /** rows per read */
  batchSize?: number;
  /** events a slow subscriber may have queued before it is ended */
  maxQueued?: number;
  onError?: (e: unknown) => void;
}

interface Subscriber {
  filter: FeedFilter;
  deliver(e: FeedEvent): void;
}

interface FeedRow extends EventRowRaw {
  tx_id: string;
  function_name: string;
  held_back: boolean;
}

const toFeedEvent = (r: Omit<FeedRow, 'held_back'>): FeedEvent =>
  ({ ...toLedgerEvent(r), txId: r.tx_id, functionName: r.function_name }) as FeedEvent;

const matches = (f: FeedFilter, e: FeedEvent) =>
  (!f.invocationId || f.invocationId === e.invocationId) && (!f.functionName || f.functionName === e.functionName);

/** Reads the events after `cursor`, marking those not yet safe to deliver. */
export async function readEventsAfter(db: Executor, cursor: FeedCursor, limit: number): Promise<FeedRow[]> {
  const { rows } = await sql<FeedRow>`
    select e.position, e.invocation_id, e.seq, e.type, e.attempt, e.data, e.occurred_at, e.tx_id::text as tx_id,
           i.function_name, e.tx_id >= pg_snapshot_xmin(pg_current_snapshot()) as held_back
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id
    where (e.tx_id, e.position) > (${cursor.txId}::xid8, ${cursor.position}::bigint)
    order by e.tx_id, e.position
    limit ${limit}`.execute(db);
  return rows;
}

/** The feed starts at "now": everything from transactions still open or yet to come. */
export async function currentFeedCursor(db: Executor): Promise<FeedCursor> {
  const { rows } = await sql<{ xmin: string }>`select pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(db);
  return { txId: (rows[0] as { xmin: string }).xmin, position: '0' };
}

/** One invocation's events at or before the cursor: its history when a subscriber joins. */
export async function eventsUpTo(db: Executor, invocationId: string, cursor: FeedCursor): Promise<FeedEvent[]> {
  if (!UUID.test(invocationId)) return [];
  const { rows } = await sql<Omit<FeedRow, 'held_back'>>`
    select e.position, e.invocation_id, e.seq, e.type, e.attempt, e.data, e.occurred_at, e.tx_id::text as tx_id,
           i.function_name
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id
    where e.invocation_id = ${invocationId}::uuid
      and (e.tx_id, e.position) <= (${cursor.txId}::xid8, ${cursor.position}::bigint)
    order by e.seq`.execute(db);
  return rows.map(toFeedEvent);
}

export class LedgerFeed {
  private readonly subscribers = new Set<Subscriber>();
  private cursor: FeedCursor | null = null;
  private starting: Promise<void> | null = null;
  private listener: pg.Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading = false;
  private readAgain = false;
  private running = false;
  private readonly o: Required<Omit<LedgerFeedOptions, 'listen'>> & Pick<LedgerFeedOptions, 'listen'>;

  constructor(options: LedgerFeedOptions) {
    this.o = {
      pollIntervalMs: 1_000,
      heldBackRetryMs: 25,
      batchSize: 500,
      maxQueued: 10_000,
      onError: () => {},
      ...options,
    };
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Whether the shared reader is up and knows where it starts. */
  get isRunning(): boolean {
    return this.running && this.cursor !== null;
  }

  /**
   * Events matching the filter from now on, in (tx_id, position) order; with an
   * invocationId, that invocation's earlier events come first. Ending the iteration
   * (return(), or a consumer's `break`) unsubscribes; the last one out stops the feed.
   */
  subscribe(filter: FeedFilter, signal?: AbortSignal): AsyncIterableIterator<FeedEvent> {
    const queue: FeedEvent[] = [];
    let wake: (() => void) | null = null;
    let done = false;
    let failure: Error | null = null;
    let history: Promise<void> | null = null;
    let buffered: FeedEvent[] | null = filter.invocationId ? [] : null;
    // one invocation's seq only grows: it drops what both the history read and the feed saw
    let lastSeq = 0;
    const push = (e: FeedEvent) => {
      if (filter.invocationId) {
        if (e.seq <= lastSeq) return;
        lastSeq = e.seq;
      }
      if (queue.length >= this.o.maxQueued) {
        failure = new Error(`subscriber fell ${this.o.maxQueued} events behind; subscribe again`);
        close();
        return;
      }
      queue.push(e);
      wake?.();
    };
    const sub: Subscriber = {
      filter,
      deliver: (e) => {
        if (!matches(filter, e)) return;
        if (buffered) buffered.push(e);
        else push(e);
      },
    };
    const close = () => {
      if (done) return;
      done = true;
      this.subscribers.delete(sub);
      signal?.removeEventListener('abort', close);
      wake?.();
      if (this.subscribers.size === 0) void this.stop();
    };
    signal?.addEventListener('abort', close);
    this.subscribers.add(sub);
    const ready = this.start().then(() => {
      if (!filter.invocationId) return;
      // history is read up to the feed's cursor; what the feed delivered meanwhile waits in
      // `buffered` and is deduplicated by seq, so nothing is missed or repeated
      const at = this.cursor as FeedCursor;
      history = eventsUpTo(this.o.db, filter.invocationId, at).then((past) => {
        for (const e of past) push(e);
        for (const e of buffered ?? []) push(e);
        buffered = null;
      });
      return history;
    });
    ready.catch((e: unknown) => {
      failure = e instanceof Error ? e : new Error(String(e));
      close();
    });

    const iterator: AsyncIterableIterator<FeedEvent> = {
      next: async () => {
        await ready.catch(() => {});
        for (;;) {
          const e = queue.shift();
          if (e) return { value: e, done: false };
          if (failure) {
            const f = failure;
            failure = null;
            throw f;
          }
          if (done) return { value: undefined, done: true };
          await new Promise<void>((r) => (wake = r));
          wake = null;
        }
      },
      return: async () => {
        close();
        queue.length = 0;
        return { value: undefined, done: true };
      },
      throw: async (e: unknown) => {
        close();
        throw e;
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  private start(): Promise<void> {
    if (this.running && this.cursor) return Promise.resolve();
    this.starting ??= (async () => {
      this.running = true;
      try {
        this.cursor = await currentFeedCursor(this.o.db);
      } catch (e) {
        this.running = false;
        throw e;
      }
      await this.connectListener();
      // anything committed before LISTEN took effect is read now, not at the next tick
      void this.poll();
    })().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async connectListener(): Promise<void> {
    if (!this.o.listen || this.listener) return;
    try {
      const client = await this.o.listen();
      if (!this.running) {
        await client.end().catch(() => {});
        return;
      }
      client.on('notification', (n) => {
        if (n.channel === EVENTS_CHANNEL) void this.poll();
      });
      const lost = () => {
        if (this.listener !== client) return;
        this.listener = null;
        void client.end().catch(() => {});
      };
      client.on('error', lost);
      client.on('end', lost);
      await client.query(`listen ${EVENTS_CHANNEL}`);
      this.listener = client;
    } catch (e) {
      // polling carries on; the next timer tick tries to listen again
      this.o.onError(e);
    }
  }

  /** Stops reading once nobody listens; a new subscriber starts it again from "now". */
  async stop(): Promise<void> {
    if (this.subscribers.size > 0) return;
    await this.starting?.catch(() => {});
    if (this.subscribers.size > 0) return;
    this.running = false;
    this.cursor = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const l = this.listener;
    this.listener = null;
    if (l) await l.end().catch(() => {});
  }

  /** Ends every subscription and the feed (process shutdown). */
  async close(): Promise<void> {
    for (const s of [...this.subscribers]) this.subscribers.delete(s);
    await this.stop();
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.listener) void this.connectListener();
      void this.poll();
    }, ms);
    this.timer.unref?.();
  }

  /** Reads and fans out until caught up; concurrent wake-ups fold into one more read. */
  private async poll(): Promise<void> {
    if (!this.running) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    let heldBack = false;
    try {
      do {
        this.readAgain = false;
        for (;;) {
          const cursor = this.cursor;
          if (!cursor || !this.running) return;
          const rows = await readEventsAfter(this.o.db, cursor, this.o.batchSize);
          if (this.cursor !== cursor) return; // stopped (and maybe restarted) meanwhile
          let delivered = 0;
          heldBack = false;
          for (const r of rows) {
            if (r.held_back) {
              heldBack = true;
              break;
            }
            const e = toFeedEvent(r);
            this.cursor = { txId: r.tx_id, position: r.position };
            delivered++;
            for (const s of this.subscribers) s.deliver(e);
          }
          if (heldBack || rows.length < this.o.batchSize || delivered === 0) break;
        }
      } while (this.readAgain);
    } catch (e) {
      this.o.onError(e);
    } finally {
      this.reading = false;
      this.schedule(heldBack ? this.o.heldBackRetryMs : this.o.pollIntervalMs);
    }
  }
}
