// The ledger's notifications: one LISTEN connection per process, shared by everything
// that waits for the database (the worker's claim loop on `ledger_work`, the event-source
// poller on `ledger_messages`, the GraphQL feed and idempotent waiters on `ledger_events`).
// A channel is LISTENed only while someone handles it, so an API process with no
// subscriber receives none of the per-commit traffic. A notification is only a hint:
// every consumer also polls, so a lost connection costs latency, never correctness. It
// reconnects with backoff and then tells every handler that it may have missed something.
import type pg from 'pg';
import { connectClient } from './connection.ts';

/** `payload` is the notification's text, or null after a reconnect ("look again"). */
export type NotificationHandler = (payload: string | null) => void;

export interface LedgerNotifications {
  /** Calls `handler` for each notification on `channel`; returns the unsubscribe. */
  on(channel: string, handler: NotificationHandler): () => void;
  /** Whether the LISTEN connection is up right now. */
  readonly connected: boolean;
  close(): Promise<void>;
}

export interface NotificationOptions {
  /** a failed connect, and when the next try is */
  onError?: (e: unknown, retryInMs: number) => void;
  maxBackoffMs?: number;
  /** opens the connection (default: a plain client for the URL; LISTEN needs no privileges) */
  connect?: () => Promise<pg.Client>;
}

const CHANNEL = /^[a-z_][a-z0-9_]*$/;

export function listenToLedger(databaseUrl: string, o: NotificationOptions = {}): LedgerNotifications {
  const handlers = new Map<string, Set<NotificationHandler>>();
  const listening = new Set<string>();
  let client: pg.Client | null = null;
  let connecting = false;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  let backoff = 100;

  const deliver = (channel: string, payload: string | null) => {
    for (const h of [...(handlers.get(channel) ?? [])]) {
      try {
        h(payload);
      } catch {
        // a handler's bug must not stop the others
      }
    }
  };

  // one statement at a time on the connection: pg deprecates queueing a query behind a
  // running one (pg 9 removes it), and LISTEN then UNLISTEN must reach the server in order
  let pending: Promise<unknown> = Promise.resolve();
  const send = (c: pg.Client, sql: string): Promise<unknown> => {
    const sent = pending.then(() => c.query(sql));
    pending = sent.catch(() => {});
    return sent;
  };

  /** LISTEN / UNLISTEN to match the channels that have handlers. */
  const sync = (c: pg.Client) => {
    for (const ch of handlers.keys()) {
      if (listening.has(ch)) continue;
      listening.add(ch);
      send(c, `listen "${ch}"`).catch(() => listening.delete(ch));
    }
    for (const ch of [...listening]) {
      if (handlers.has(ch)) continue;
      listening.delete(ch);
      send(c, `unlisten "${ch}"`).catch(() => {});
    }
  };

  const schedule = () => {
    if (closed || retry || handlers.size === 0) return;
    const wait = backoff;
    retry = setTimeout(() => {
      retry = null;
      void connect();
    }, wait);
    retry.unref?.();
    backoff = Math.min(o.maxBackoffMs ?? 10_000, backoff * 2);
  };

  const connect = async () => {
    if (closed || client || connecting) return;
    connecting = true;
    let c: pg.Client | null = null;
    try {
      c = await (o.connect ?? (() => connectClient(databaseUrl)))();
      const conn = c;
      conn.on('notification', (n) => deliver(n.channel, n.payload ?? ''));
      const lost = () => {
        if (client !== conn) return;
        client = null;
        listening.clear();
        void conn.end().catch(() => {});
        schedule();
      };
      conn.on('error', lost);
      conn.on('end', lost);
      // LISTEN before anyone is told to look again, so nothing falls between the two
      listening.clear();
      const wanted = [...handlers.keys()];
      for (const ch of wanted) {
        await conn.query(`listen "${ch}"`);
        listening.add(ch);
      }
      if (closed || handlers.size === 0) {
        await conn.end().catch(() => {});
        return;
      }
      client = conn;
      pending = Promise.resolve();
      backoff = 100;
      sync(conn); // channels added while connecting
      for (const ch of wanted) deliver(ch, null);
    } catch (e) {
      await c?.end().catch(() => {});
      o.onError?.(e, backoff);
      schedule();
    } finally {
      connecting = false;
    }
  };

  return {
    on(channel, handler) {
      if (!CHANNEL.test(channel)) throw new Error(`not a channel name: ${channel}`);
      let set = handlers.get(channel);
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(handler);
      if (client) sync(client);
      else if (!retry) void connect();
      return () => {
        const s = handlers.get(channel);
        if (!s?.delete(handler) || s.size > 0) return;
        handlers.delete(channel);
        if (handlers.size > 0) {
          if (client) sync(client);
          return;
        }
        // nobody waits: no connection held, no reconnects (the next handler opens it again)
        if (retry) clearTimeout(retry);
        retry = null;
        const c = client;
        client = null;
        listening.clear();
        void c?.end().catch(() => {});
      };
    },
    get connected() {
      return client !== null;
    },
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      retry = null;
      handlers.clear();
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    },
  };
}
