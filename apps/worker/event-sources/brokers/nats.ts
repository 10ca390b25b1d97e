// NATS JetStream through the official `nats` client: a durable pull consumer per mapping
// (`ledger-<mapping id>`) with explicit acks, its start position set once when it is made
// (Kafka's StartingPosition). One worker holds a mapping at a time and runs its batches one
// after another, and a failed batch is retried whole, in place, from its first failed
// message: records of a subject reach the function in stream order. The event is shaped
// like Lambda's Kafka event (records grouped per subject, base64 value, offset = stream
// sequence).
import { AckPolicy, connect, DeliverPolicy, millis, nanos, type ConsumerConfig, type JsMsg, type NatsConnection } from 'nats';
import type { BrokerConsumer, BrokerDelivery, BrokerDriver, Settlement } from './source.ts';
import { backoffMs } from './source.ts';

export const NATS_EVENT_SOURCE = 'ledger:nats';
const IDLE_MS = 1_000;

export const durableName = (mappingId: string) => `ledger-${mappingId}`;

function headersOf(m: JsMsg): Record<string, number[]>[] {
  if (!m.headers) return [];
  const out: Record<string, number[]>[] = [];
  for (const k of m.headers.keys()) for (const v of m.headers.values(k)) out.push({ [k]: [...Buffer.from(v, 'utf8')] });
  return out;
}

export const natsDriver: BrokerDriver = {
  broker: 'nats',

  async open(mapping, url, o) {
    const u = new URL(url);
    const nc: NatsConnection = await connect({
      servers: `${u.protocol === 'tls:' ? 'tls://' : ''}${u.host}`,
      ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}),
      // the runner reconnects with its own backoff and a fresh consumer: what was in flight is redelivered
      reconnect: false,
      timeout: 10_000,
    });
    const stream = mapping.stream as string;
    const name = durableName(mapping.id);
    let consumer;
    try {
      const jsm = await nc.jetstreamManager();
      const settings: Partial<ConsumerConfig> = {
        ack_wait: nanos(o.ackWaitMs),
        // one batch outstanding: a newer message is not handed out while an older one is retried
        max_ack_pending: mapping.batchSize,
        ...(mapping.subjectFilter ? { filter_subject: mapping.subjectFilter } : {}),
      };
      const existing = await jsm.consumers.info(stream, name).catch((e: Error & { code?: string }) => {
        if (/consumer not found/i.test(e.message)) return null;
        throw e;
      });
      if (existing) await jsm.consumers.update(stream, name, settings);
      else {
        const position =
          mapping.startingPosition === 'LATEST'
            ? { deliver_policy: DeliverPolicy.New }
            : mapping.startingPosition === 'AT_TIMESTAMP'
              ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: (mapping.startingPositionTimestamp as Date).toISOString() }
              : { deliver_policy: DeliverPolicy.All };
        await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit, ...position, ...settings });
      }
      consumer = await nc.jetstream().consumers.get(stream, name);
    } catch (e) {
      await nc.close().catch(() => {});
      throw e;
    }
    const byId = new Map<string, JsMsg>();
    const msgOf = (d: BrokerDelivery) => byId.get(d.itemIdentifier) as JsMsg;
    const lostError = () => new Error('the NATS connection closed');
    // a connection that closes ends whatever waits on it: a pull, a flush, an info request
    // (without this a wait could outlive the connection, and with it the worker's shutdown)
    // (each wait registers and unregisters itself: racing one long-lived promise would keep
    // a reaction per message until the connection closed)
    const waiting = new Set<(e: Error) => void>();
    void nc.closed().then(() => {
      for (const fail of waiting) fail(lostError());
      waiting.clear();
    });
    const whileOpen = <T>(p: Promise<T>): Promise<T> => {
      if (nc.isClosed()) {
        p.catch(() => {}); // whatever it ends with, nobody waits for it now
        return Promise.reject(lostError());
      }
      return new Promise<T>((resolve, reject) => {
        waiting.add(reject);
        p.then(
          (v) => {
            waiting.delete(reject);
            resolve(v);
          },
          (e: unknown) => {
            waiting.delete(reject);
            reject(e);
          },
        );
      });
    };

    let interrupted = false;
    /** one pull request: up to what the batch still lacks, for at most a second */
    const pull = async (out: BrokerDelivery[], started: number): Promise<void> => {
      if (nc.isClosed()) throw lostError();
      let max = mapping.batchSize - out.length;
      // a window shorter than the pull asks only for what is pending, so a short batch is not held back
      if (mapping.maxBatchingWindowMs - (Date.now() - started) < IDLE_MS) {
        const pending = (await whileOpen(consumer.info())).num_pending;
        if (pending > 0) max = Math.min(max, pending);
      }
      const iter = (await whileOpen(consumer.fetch({ max_messages: max, expires: IDLE_MS })))[Symbol.asyncIterator]();
      for (;;) {
        const step = await whileOpen(iter.next());
        if (step.done) break;
        const m = step.value;
        const id = String(m.seq);
        byId.set(id, m);
        const value = Buffer.from(m.data).toString('base64');
        out.push({
          itemIdentifier: id,
          dedupKey: `seq:${m.seq}`,
          deliveryCount: m.info.deliveryCount,
          group: m.subject,
          record: {
            stream,
            subject: m.subject,
            topic: m.subject,
            partition: 0,
            offset: m.seq,
            timestamp: Math.floor(millis(m.info.timestampNanos)),
            timestampType: 'CREATE_TIME',
            value,
            headers: headersOf(m),
            itemIdentifier: id,
          },
          bytes: value.length + 300,
        });
      }
      if (nc.isClosed()) {
        for (const d of out) byId.delete(d.itemIdentifier);
        throw lostError();
      }
    };

    const c: BrokerConsumer = {
      ordered: true,
      interrupt() {
        interrupted = true;
      },
      async next() {
        const out: BrokerDelivery[] = [];
        const started = Date.now();
        // pulls of at most a second (JetStream's shortest), gathered until the batch is full
        // or the window has passed: an interrupt is seen within a second however long the window
        while (!interrupted && out.length < mapping.batchSize) {
          if (out.length > 0 && Date.now() - started >= mapping.maxBatchingWindowMs) break;
          await pull(out, started);
          if (out.length === 0 && Date.now() - started >= IDLE_MS) break;
        }
        return out;
      },
      exhausted(failed, attempt) {
        if (mapping.maxRetryAttempts === null || mapping.maxRetryAttempts < 0) return false;
        // a worker that died mid-retry: the broker's delivery count carries on
        const tries = Math.max(attempt, ...failed.map((d) => d.deliveryCount));
        return tries > mapping.maxRetryAttempts;
      },
      async settle(s: Settlement) {
        if (nc.isClosed()) throw lostError();
        for (const d of s.succeeded) {
          msgOf(d).ack();
          byId.delete(d.itemIdentifier);
        }
        if (s.failed.length === 0) {
          await whileOpen(nc.flush());
          return null;
        }
        if (c.exhausted(s.failed, s.attempt)) {
          // recorded, and sent to the on-failure queue when there is one: the stream moves on
          for (const d of s.failed) {
            // no reason: servers before 2.10 ignore a +TERM that carries one
            msgOf(d).term();
            byId.delete(d.itemIdentifier);
          }
          await whileOpen(nc.flush());
          return null;
        }
        await whileOpen(nc.flush());
        return { retry: s.failed, delayMs: backoffMs(s.attempt) };
      },
      hold(ds) {
        if (!nc.isClosed()) for (const d of ds) msgOf(d)?.working();
      },
      async reject(ds) {
        if (nc.isClosed()) throw lostError();
        for (const d of ds) {
          msgOf(d).term();
          byId.delete(d.itemIdentifier);
        }
        await whileOpen(nc.flush());
      },
      async release(ds) {
        if (nc.isClosed()) return;
        for (const d of ds) {
          msgOf(d)?.nak();
          byId.delete(d.itemIdentifier);
        }
        await whileOpen(nc.flush()).catch(() => {});
      },
      async lag() {
        if (nc.isClosed()) return null;
        return (await whileOpen(consumer.info())).num_pending;
      },
      async close() {
        for (const m of byId.values()) m.nak();
        byId.clear();
        if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
      },
    };
    return c;
  },

  event(mapping, deliveries) {
    const records: Record<string, unknown[]> = {};
    for (const d of deliveries) (records[d.group] ??= []).push(d.record);
    return { eventSource: NATS_EVENT_SOURCE, eventSourceArn: `ledger:nats:${mapping.endpoint}/${mapping.stream}`, records };
  },
};
