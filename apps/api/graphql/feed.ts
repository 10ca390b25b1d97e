// The live ledger feed of one process, fanned out to its GraphQL subscribers.
//
// One reader follows the ledger in (tx_id, position) order (db/subscriptions.ts says why
// that order is complete and resumable) and hands each event, decoded once, to every
// live subscriber whose filter matches. It reads ids first and bodies only for events
// someone wants. Woken by LISTEN ledger_events, with a poll as a safety net; while
// committed events wait behind an older open transaction it only watches the horizon,
// backing off (25 ms doubling to the poll interval) as long as the horizon does not move.
//
// A subscriber that starts from a cursor in the past catches up with reads of its own,
// one page at a time and only as fast as it consumes, then joins the live reader. A live
// subscriber's queue is bounded (events and bytes): one that falls behind is ended with
// SubscriberTooSlow carrying the cursor to resume from, and its memory is released at once.
import { decodeCursor, encodeCursor } from '../../../db/cursor.ts';
import { LedgerError } from '../../../db/errors.ts';
import type { LedgerNotifications } from '../../../db/notifications.ts';
import type { Executor } from '../../../db/schema.ts';
import {
  compareCursors,
  currentFeedCursor,
  FEED_ORIGIN,
  feedHorizon,
  readFeedEntries,
  readFeedEvents,
  type FeedCursor,
  type FeedEntry,
  type FeedEvent,
  type FeedFilter,
} from '../../../db/subscriptions.ts';
import { EVENTS_CHANNEL } from '../../../db/writer.ts';

export type { FeedCursor, FeedEvent, FeedFilter } from '../../../db/subscriptions.ts';

const FEED_CURSOR_SHAPE = [/^\d{1,20}$/, /^\d{1,20}$/] as const;

/** The wire form of a cursor (the SSE `id:` and the `after` argument): db/cursor.ts's, of (tx_id, position). */
export const formatCursor = (c: FeedCursor): string => encodeCursor([c.txId, c.position]);

/** A cursor as the events' cursor field and SSE ids give it; anything else is InvalidParameter. */
export function parseCursor(text: string): FeedCursor {
  const [txId, position] = decodeCursor(text.trim(), FEED_CURSOR_SHAPE, 'feed cursor') as [string, string];
  return { txId, position };
}

export const cursorOf = (e: FeedEvent): FeedCursor => ({ txId: e.txId, position: e.position });

export interface LedgerFeedOptions {
  db: Executor;
  /** the process's LISTEN connection; without it the feed polls */
  notifications?: LedgerNotifications;
  /** poll interval while nothing wakes the feed (and the longest backoff) */
  pollIntervalMs?: number;
  /** first re-check of a horizon held back by an open transaction; doubles while it does not move */
  heldBackRetryMs?: number;
  /** entries per read */
  batchSize?: number;
  /** bodies per read, by their size on disk */
  bodyBytesPerRead?: number;
  /** events a live subscriber may have waiting before it is ended as too slow */
  maxQueuedEvents?: number;
  /** bytes (of event data, as stored) a live subscriber may have waiting */
  maxQueuedBytes?: number;
  onError?: (e: unknown) => void;
}

export interface SubscribeOptions {
  /** deliver only events after this position (a cursor from an earlier subscription) */
  after?: FeedCursor | null;
  signal?: AbortSignal;
  /** called once when the subscriber is ended for falling behind */
  onDropped?: () => void;
}

/** What the feed's own work costs: for tests and metrics. */
export interface FeedStats {
  horizonChecks: number;
  entryReads: number;
  bodyReads: number;
  bodiesRead: number;
  dropped: number;
}

export class LedgerFeed {
  private readonly live = new Set<Subscription>();
  private readonly all = new Set<Subscription>();
  private cursor: FeedCursor | null = null;
  private starting: Promise<void> | null = null;
  private unlisten: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading = false;
  private readAgain = false;
  private running = false;
  private closed = false;
  /** the horizon that held events back at the last read, and the current backoff */
  private stuck: { horizon: string; delayMs: number } | null = null;
  readonly stats: FeedStats = { horizonChecks: 0, entryReads: 0, bodyReads: 0, bodiesRead: 0, dropped: 0 };
  readonly o: Required<Omit<LedgerFeedOptions, 'notifications'>> & Pick<LedgerFeedOptions, 'notifications'>;

  constructor(options: LedgerFeedOptions) {
    this.o = {
      pollIntervalMs: 1_000,
      heldBackRetryMs: 25,
      batchSize: 500,
      bodyBytesPerRead: 8 << 20,
      maxQueuedEvents: 1_000,
      maxQueuedBytes: 16 << 20,
      onError: () => {},
      ...options,
    };
  }

  get subscriberCount(): number {
    return this.all.size;
  }

  /** Whether the shared reader is up and knows where it stands. */
  get isRunning(): boolean {
    return this.running && this.cursor !== null;
  }

  /** Where the shared reader stands (null while stopped). */
  get position(): FeedCursor | null {
    return this.cursor;
  }

  /**
   * Events matching the filter in feed order, after `after` when given, else from now;
   * with an invocationId and no `after`, that invocation's earlier events come first.
   * Ending the iteration (return(), a consumer's `break`, the signal) unsubscribes; the
   * last one out stops the reader. A subscriber that falls too far behind gets a
   * SubscriberTooSlow error (details.resumeAfter: the cursor to subscribe after again).
   */
  subscribe(filter: FeedFilter, options: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new LedgerError('ServiceUnavailable', 'the server is shutting down; subscribe again elsewhere');
    const start = options.after ?? (filter.invocationId ? FEED_ORIGIN : null);
    const sub = new Subscription(this, filter, start, options);
    this.all.add(sub);
    // catching up runs beside the consumer (it waits for the consumer to make room)
    this.start()
      .then(() => sub.begin())
      .catch((e: unknown) => sub.fail(e instanceof Error ? e : new Error(String(e))));
    return sub;
  }

  /** @internal a subscription ends */
  remove(sub: Subscription): void {
    this.all.delete(sub);
    this.live.delete(sub);
    if (this.all.size === 0) void this.stop();
  }

  /** @internal a subscription that caught up joins the live fan-out */
  join(sub: Subscription): void {
    this.live.add(sub);
  }

  /** @internal a subscriber was ended for falling behind */
  countDrop(): void {
    this.stats.dropped++;
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
      this.unlisten = this.o.notifications?.on(EVENTS_CHANNEL, () => this.wake()) ?? null;
      // anything committed before LISTEN took effect is read now, not at the next tick
      void this.poll();
    })().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  /** A notification: read, unless events are held back and the timer watches the horizon. */
  private wake(): void {
    if (this.stuck) return;
    void this.poll();
  }

  /** Stops reading once nobody listens; a new subscriber starts it again from "now". */
  async stop(): Promise<void> {
    if (this.all.size > 0) return;
    await this.starting?.catch(() => {});
    if (this.all.size > 0) return;
    this.running = false;
    this.cursor = null;
    this.stuck = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.unlisten?.();
    this.unlisten = null;
  }

  /**
   * Ends every subscription and the feed (process shutdown): each stream completes at
   * once, and one whose client does not read even that is disconnected after `graceMs`.
   * Queued events are dropped: each client resumes after the last event it received.
   */
  async close(graceMs = 2_000): Promise<void> {
    this.closed = true;
    const subs = [...this.all];
    for (const s of subs) s.end(true);
    await this.stop();
    // streams complete as soon as their clients read; cut the ones that do not
    const deadline = Date.now() + graceMs;
    while (subs.some((s) => s.detach) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const s of subs) s.detach?.();
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll();
    }, ms);
    this.timer.unref?.();
  }

  /** Reads and fans out until caught up with the horizon; concurrent wake-ups fold into one more read. */
  private async poll(): Promise<void> {
    if (!this.running) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    let heldBack: string | null = null;
    try {
      do {
        this.readAgain = false;
        for (;;) {
          const cursor = this.cursor;
          if (!cursor || !this.running) return;
          this.stats.horizonChecks++;
          const h = await feedHorizon(this.o.db, cursor);
          if (this.cursor !== cursor) return; // stopped (and maybe restarted) meanwhile
          heldBack = h.heldBack ? h.horizon : null;
          if (!h.ready) break;
          this.stats.entryReads++;
          const entries = await readFeedEntries(this.o.db, cursor, { horizon: h.horizon }, this.o.batchSize);
          if (this.cursor !== cursor) return;
          if (entries.length === 0) break;
          await this.fanOut(cursor, entries);
        }
      } while (this.readAgain && !heldBack);
    } catch (e) {
      this.o.onError(e);
    } finally {
      this.reading = false;
      if (heldBack !== null) {
        // back off while the horizon stays where it was; start over when it moves
        const delayMs = this.stuck?.horizon === heldBack ? Math.min(this.o.pollIntervalMs, this.stuck.delayMs * 2) : this.o.heldBackRetryMs;
        this.stuck = { horizon: heldBack, delayMs };
        this.schedule(delayMs);
      } else {
        this.stuck = null;
        this.schedule(this.o.pollIntervalMs);
      }
    }
  }

  /** Bodies for what someone wants, then every entry in order: the cursor moves past all of them. */
  private async fanOut(from: FeedCursor, entries: FeedEntry[]): Promise<void> {
    const subs = [...this.live];
    const wanted = entries.filter((e) => subs.some((s) => s.wants(e)));
    const bodies = new Map<string, FeedEvent>();
    for (const chunk of byBytes(wanted, this.o.bodyBytesPerRead)) {
      this.stats.bodyReads++;
      for (const e of await readFeedEvents(this.o.db, chunk)) bodies.set(e.position, e);
      if (this.cursor !== from) return;
    }
    this.stats.bodiesRead += bodies.size;
    // synchronous from here: at every await point, all live subscribers have everything up to the cursor
    for (const entry of entries) {
      this.cursor = { txId: entry.txId, position: entry.position };
      const e = bodies.get(entry.position);
      if (!e) continue;
      for (const s of this.live) s.offer(e);
    }
  }
}

function* byBytes(entries: FeedEntry[], maxBytes: number): Generator<FeedEntry[]> {
  let chunk: FeedEntry[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (chunk.length > 0 && bytes + e.bytes > maxBytes) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(e);
    bytes += e.bytes;
  }
  if (chunk.length > 0) yield chunk;
}

const CATCH_UP_PAGE = 200;

/** One subscriber: its cursor, its bounded queue, and the async iterator GraphQL reads. */
export class Subscription implements AsyncIterableIterator<FeedEvent> {
  /** where it starts, then how far it caught up (live, it follows the reader) */
  private cursor: FeedCursor | null;
  /** it starts after the reader's position: skip what the reader offers up to its cursor */
  private ahead = false;
  /** the last event the consumer took: where a dropped subscriber resumes */
  private taken: FeedCursor | null;
  private readonly queue: FeedEvent[] = [];
  private queuedBytes = 0;
  /** the consumer waits for an event; the catch-up loop waits for room */
  private wakeConsumer: (() => void) | null = null;
  private wakeRoom: (() => void) | null = null;
  private done = false;
  private failure: Error | null = null;
  /** set by a transport while its client is connected: cuts the connection */
  detach: (() => void) | null = null;

  constructor(
    private readonly feed: LedgerFeed,
    private readonly filter: FeedFilter,
    start: FeedCursor | null,
    private readonly options: SubscribeOptions,
  ) {
    this.cursor = start;
    this.taken = start;
    options.signal?.addEventListener('abort', this.onAbort);
    if (options.signal?.aborted) queueMicrotask(this.onAbort);
  }

  private readonly onAbort = () => this.end(true);

  wants(e: FeedEntry | FeedEvent): boolean {
    const f = this.filter;
    return (!f.invocationId || f.invocationId === e.invocationId) && (!f.functionName || f.functionName === e.functionName);
  }

  /** After the feed started: join live at once, or catch up first. */
  async begin(): Promise<void> {
    if (this.done) return;
    if (this.cursor === null) {
      // from now: the reader's current position
      this.cursor = this.feed.position;
      this.taken = this.cursor;
      this.feed.join(this);
      return;
    }
    await this.catchUp();
  }

  /** Pages of its own until it reaches the reader, at the pace it consumes. */
  private async catchUp(): Promise<void> {
    const db = this.feed.o.db;
    for (;;) {
      if (this.done) return;
      const target = this.feed.position;
      if (target === null) throw new LedgerError('ServiceUnavailable', 'the feed stopped');
      const at = this.cursor as FeedCursor;
      if (compareCursors(at, target) >= 0) {
        // no await between this check and joining: the reader has delivered everything up to `target`
        this.ahead = compareCursors(at, target) > 0;
        this.feed.join(this);
        return;
      }
      // wait for room: a catching-up subscriber never overflows, it only lags
      while (!this.done && this.queue.length >= CATCH_UP_PAGE) await new Promise<void>((r) => (this.wakeRoom = r));
      this.wakeRoom = null;
      if (this.done) return;
      const entries = await readFeedEntries(db, at, { upTo: target }, CATCH_UP_PAGE, this.filter);
      for (const chunk of byBytes(entries, this.feed.o.bodyBytesPerRead)) {
        for (const e of await readFeedEvents(db, chunk)) if (!this.done) this.push(e);
      }
      const last = entries.at(-1);
      this.cursor = entries.length < CATCH_UP_PAGE || !last ? target : { txId: last.txId, position: last.position };
    }
  }

  /** From the live reader, in feed order. */
  offer(e: FeedEvent): void {
    if (this.done || !this.wants(e)) return;
    if (this.ahead) {
      if (compareCursors(cursorOf(e), this.cursor as FeedCursor) <= 0) return;
      this.ahead = false;
    }
    if (this.queue.length >= this.feed.o.maxQueuedEvents || this.queuedBytes + e.bytes > this.feed.o.maxQueuedBytes) {
      this.drop();
      return;
    }
    // a live subscriber's position is the reader's: no cursor of its own to keep (this
    // runs once per event per subscriber)
    this.push(e);
  }

  private push(e: FeedEvent): void {
    this.queue.push(e);
    this.queuedBytes += e.bytes;
    this.wakeConsumer?.();
  }

  private drop(): void {
    const resume = this.taken ? formatCursor(this.taken) : null;
    this.feed.countDrop();
    this.clear();
    this.fail(
      new LedgerError(
        'SubscriberTooSlow',
        `this subscriber fell more than ${this.feed.o.maxQueuedEvents} events (or ${this.feed.o.maxQueuedBytes} bytes) behind the ledger and was ended; ` +
          `subscribe again with after: ${JSON.stringify(resume)} (or the SSE Last-Event-ID) to resume where it stopped`,
        { resumeAfter: resume },
      ),
    );
    this.options.onDropped?.();
  }

  private clear(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  /** Ends the subscription with an error the consumer sees after what it already has. */
  fail(e: Error): void {
    if (this.done) return;
    this.failure = e;
    this.finish();
  }

  /** Ends the subscription: the consumer gets what is queued (unless `discard`), then the end. */
  end(discard = false): void {
    if (discard) this.clear();
    if (this.done) return;
    this.finish();
  }

  private finish(): void {
    this.done = true;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.feed.remove(this);
    this.wakeConsumer?.();
    this.wakeRoom?.();
  }

  /** Events ready now, up to `max` of them and about `maxBytes`, without waiting (a writer that batches them). */
  takeReady(max: number, maxBytes = Number.POSITIVE_INFINITY): FeedEvent[] {
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < max && (n === 0 || bytes < maxBytes)) {
      bytes += (this.queue[n] as FeedEvent).bytes;
      n++;
    }
    const out = this.queue.splice(0, n);
    this.queuedBytes -= bytes;
    const last = out.at(-1);
    if (last) this.taken = cursorOf(last);
    if (this.queue.length < CATCH_UP_PAGE) this.wakeRoom?.();
    return out;
  }

  /** Whether an event or the end is there to take now. */
  hasReady(): boolean {
    return this.queue.length > 0 || this.done;
  }

  /** With nothing queued: null while the subscription is open, else how it ended (the error is handed out once). */
  ending(): { error: Error | null } | null {
    if (this.queue.length > 0 || !this.done) return null;
    const error = this.failure;
    this.failure = null;
    return { error };
  }

  /** Resolves once an event is queued or the subscription ended. */
  async ready(): Promise<void> {
    if (this.queue.length > 0 || this.done) return;
    await new Promise<void>((r) => (this.wakeConsumer = r));
    this.wakeConsumer = null;
  }

  async next(): Promise<IteratorResult<FeedEvent>> {
    for (;;) {
      const e = this.queue.shift();
      if (e) {
        this.queuedBytes -= e.bytes;
        this.taken = cursorOf(e);
        if (this.queue.length < CATCH_UP_PAGE) this.wakeRoom?.();
        return { value: e, done: false };
      }
      if (this.failure) {
        const f = this.failure;
        this.failure = null;
        throw f;
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise<void>((r) => (this.wakeConsumer = r));
      this.wakeConsumer = null;
    }
  }

  async return(): Promise<IteratorResult<FeedEvent>> {
    this.end(true);
    return { value: undefined, done: true };
  }

  async throw(e: unknown): Promise<IteratorResult<FeedEvent>> {
    this.end(true);
    throw e;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<FeedEvent> {
    return this;
  }
}
