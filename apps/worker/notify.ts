// Wake-ups from the process's one LISTEN connection (db/notifications.ts), debounced:
// the first notification wakes at once (pickup latency), the rest of a burst inside the
// window becomes one trailing wake-up. A reconnect wakes too: something may have been
// missed while the connection was down.
import type { LedgerNotifications } from '../../db/notifications.ts';

/** Calls `onHint` for notifications on `channel`; returns the unsubscribe. */
export function wakeOn(notifications: LedgerNotifications, channel: string, onHint: () => void, debounceMs = 5): () => void {
  let closed = false;
  let debounce: NodeJS.Timeout | null = null;
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
    }, debounceMs);
  };
  const off = notifications.on(channel, hint);
  return () => {
    closed = true;
    if (debounce) clearTimeout(debounce);
    off();
  };
}
