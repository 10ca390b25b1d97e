// LISTEN ledger_events: a hint that work may be due, debounced. Polling stays the
// fallback, so a lost connection only costs latency; it reconnects with backoff.
import type pg from 'pg';
import type { Logger } from 'pino';
import { connectClient } from '../../db/connection.ts';
import { EVENTS_CHANNEL } from '../../db/writer.ts';

export interface Listener {
  close(): Promise<void>;
}

export function listenForEvents(
  databaseUrl: string,
  onHint: () => void,
  o: { logger: Logger; debounceMs?: number; maxBackoffMs?: number; channel?: string },
): Listener {
  let client: pg.Client | null = null;
  let closed = false;
  let debounce: NodeJS.Timeout | null = null;
  let retry: NodeJS.Timeout | null = null;
  let backoff = 100;

  // Leading edge: the first notification wakes the worker at once (pickup latency);
  // the rest of a burst inside the window becomes one trailing wake-up.
  let pending = false;
  const hint = () => {
    if (closed) return;
    if (debounce) {
      pending = true;
      return;
    }
    onHint();
    debounce = setTimeout(function trailing() {
      debounce = null;
      if (pending && !closed) {
        pending = false;
        onHint();
      }
    }, o.debounceMs ?? 5);
  };

  const connect = async () => {
    retry = null;
    if (closed) return;
    let c: pg.Client | null = null;
    try {
      // LISTEN needs no privileges: the login role is fine
      c = await connectClient(databaseUrl);
      c.on('notification', hint);
      const lost = () => {
        if (client !== c) return;
        client = null;
        schedule();
      };
      c.on('error', lost);
      c.on('end', lost);
      await c.query(`listen ${o.channel ?? EVENTS_CHANNEL}`);
      if (closed) {
        await c.end().catch(() => {});
        return;
      }
      client = c;
      backoff = 100;
      hint(); // something may have happened while we were away
    } catch (e) {
      await c?.end().catch(() => {});
      o.logger.warn({ err: (e as Error).message, retryInMs: backoff }, 'LISTEN connection failed; polling meanwhile');
      schedule();
    }
  };
  const schedule = () => {
    if (closed || retry) return;
    retry = setTimeout(() => void connect(), backoff);
    backoff = Math.min(o.maxBackoffMs ?? 10_000, backoff * 2);
  };

  void connect();
  return {
    async close() {
      closed = true;
      if (debounce) clearTimeout(debounce);
      if (retry) clearTimeout(retry);
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    },
  };
}
