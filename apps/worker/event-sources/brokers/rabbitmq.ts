// RabbitMQ through amqplib (the maintained AMQP 0-9-1 client): one connection and channel
// per mapping, manual acknowledgement, prefetch = batchSize, so the broker hands out one
// batch at a time and redelivers whatever was not acknowledged when the connection goes.
// The event is Lambda's Amazon MQ for RabbitMQ shape (`rmqMessagesByQueue`).
import { createHash } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import type { BrokerConsumer, BrokerDelivery, BrokerDriver, Settlement } from './source.ts';

export const RABBITMQ_EVENT_SOURCE = 'ledger:rmq';
const IDLE_MS = 1_000;

interface Pending {
  msg: ConsumeMessage;
  delivery: BrokerDelivery;
}

/** basicProperties as Lambda writes them: camelCase, only what the message carries. */
function basicProperties(m: ConsumeMessage): Record<string, unknown> {
  const p = m.properties;
  const out: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (v !== undefined && v !== null) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v;
  };
  put('contentType', p.contentType);
  put('contentEncoding', p.contentEncoding);
  put('headers', p.headers && Object.keys(p.headers).length > 0 ? headersJson(p.headers) : undefined);
  put('deliveryMode', p.deliveryMode);
  put('priority', p.priority);
  put('correlationId', p.correlationId);
  put('replyTo', p.replyTo);
  put('expiration', p.expiration);
  put('messageId', p.messageId);
  put('timestamp', p.timestamp);
  put('type', p.type);
  put('userId', p.userId);
  put('appId', p.appId);
  put('clusterId', p.clusterId);
  out.bodySize = m.content.length;
  return out;
}

/** AMQP table values as JSON: byte arrays as base64, the rest as amqplib decodes them. */
function headersJson(h: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(h, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('base64') : typeof v === 'bigint' ? String(v) : v))) as Record<string, unknown>;
}

export const rabbitmqDriver: BrokerDriver = {
  broker: 'rabbitmq',

  async open(mapping, url) {
    const target = new URL(url);
    // the vhost is the URL's path; the mapping's virtualHost wins
    target.pathname = `/${encodeURIComponent(mapping.virtualHost ?? '/')}`;
    const conn: ChannelModel = await connect(target.toString(), { timeout: 10_000 });
    let lost: Error | null = null;
    const waiters = new Set<() => void>();
    const wake = () => {
      for (const w of waiters) w();
    };
    conn.on('error', (e: Error) => (lost ??= e));
    conn.on('close', (e?: Error) => {
      lost ??= e ?? new Error('the RabbitMQ connection closed');
      wake();
    });
    let ch: Channel;
    try {
      ch = await conn.createChannel();
      ch.on('error', (e: Error) => (lost ??= e));
      ch.on('close', () => {
        lost ??= new Error('the RabbitMQ channel closed');
        wake();
      });
      await ch.checkQueue(mapping.queue as string);
      await ch.prefetch(mapping.batchSize);
    } catch (e) {
      await conn.close().catch(() => {});
      throw e;
    }
    const queue = mapping.queue as string;
    const group = `${queue}::${mapping.virtualHost ?? '/'}`;
    const buffer: Pending[] = [];
    const byTag = new Map<string, ConsumeMessage>();
    // classic queues carry no delivery count: kept here, by message-id or body hash (lost on restart)
    const counts = new Map<string, number>();
    let seq = 0;
    let closing = false;
    const countKey = (m: ConsumeMessage) => m.properties.messageId ?? createHash('sha256').update(m.content).digest('base64');

    const consumer = await ch.consume(queue, (msg) => {
      if (!msg) {
        lost ??= new Error(`the consumer of queue ${queue} was cancelled by the broker`);
        wake();
        return;
      }
      const quorumCount = msg.properties.headers?.['x-delivery-count'];
      const key = countKey(msg);
      const kept = msg.fields.redelivered ? (counts.get(key) ?? 1) + 1 : 1;
      counts.set(key, kept);
      const deliveryCount = typeof quorumCount === 'number' ? quorumCount + 1 : kept;
      const record = { basicProperties: basicProperties(msg), redelivered: msg.fields.redelivered, data: msg.content.toString('base64') };
      const itemIdentifier = `${++seq}`;
      byTag.set(itemIdentifier, msg);
      buffer.push({
        msg,
        delivery: {
          itemIdentifier,
          dedupKey: msg.properties.messageId ? `message-id:${msg.properties.messageId}` : null,
          deliveryCount,
          group,
          record: { ...record, itemIdentifier },
          bytes: Math.ceil((msg.content.length * 4) / 3) + 400,
        },
      });
      wake();
    }, { noAck: false });

    const msgOf = (d: BrokerDelivery) => byTag.get(d.itemIdentifier) as ConsumeMessage;
    const forget = (d: BrokerDelivery, dropCount: boolean) => {
      const m = msgOf(d);
      byTag.delete(d.itemIdentifier);
      if (dropCount && m) counts.delete(countKey(m));
    };

    const c: BrokerConsumer = {
      ordered: false,
      interrupt() {
        closing = true;
        wake();
      },
      async next() {
        const started = Date.now();
        let firstAt: number | null = null;
        for (;;) {
          if (lost) throw lost;
          if (closing) return buffer.splice(0).map((p) => p.delivery);
          if (buffer.length > 0 && firstAt === null) firstAt = Date.now();
          const full = buffer.length >= mapping.batchSize;
          const windowOver = firstAt !== null && Date.now() - firstAt >= mapping.maxBatchingWindowMs;
          if (full || windowOver) return buffer.splice(0, mapping.batchSize).map((p) => p.delivery);
          if (firstAt === null && Date.now() - started >= IDLE_MS) return [];
          const waitMs = firstAt === null ? IDLE_MS - (Date.now() - started) : mapping.maxBatchingWindowMs - (Date.now() - firstAt);
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              waiters.delete(done);
              resolve();
            };
            const timer = setTimeout(done, Math.max(0, waitMs));
            waiters.add(done);
          });
        }
      },
      exhausted(failed) {
        return failed.every((d) => d.deliveryCount >= (mapping.maxDeliveryCount ?? 5));
      },
      async settle(s: Settlement) {
        if (lost) throw lost;
        for (const d of s.succeeded) {
          ch.ack(msgOf(d));
          forget(d, true);
        }
        for (const d of s.failed) {
          // a quorum queue's own x-delivery-limit dead-letters on its side; classic queues count here
          const dead = d.deliveryCount >= (mapping.maxDeliveryCount ?? 5);
          ch.nack(msgOf(d), false, !dead);
          forget(d, dead);
        }
        return null;
      },
      hold() {},
      async reject(ds) {
        if (lost) throw lost;
        for (const d of ds) {
          ch.nack(msgOf(d), false, false);
          forget(d, true);
        }
      },
      async release(ds) {
        if (lost) return;
        for (const d of ds) {
          ch.nack(msgOf(d), false, true);
          forget(d, false);
        }
      },
      async lag() {
        if (lost) return null;
        const q = await ch.checkQueue(queue);
        return q.messageCount;
      },
      async close() {
        closing = true;
        wake();
        if (!lost) {
          await ch.cancel(consumer.consumerTag).catch(() => {});
          // what was delivered and not yet handed out goes back at once
          for (const p of buffer.splice(0)) ch.nack(p.msg, false, true);
        }
        await conn.close().catch(() => {});
      },
    };
    return c;
  },

  event(mapping, deliveries) {
    const byQueue: Record<string, unknown[]> = {};
    for (const d of deliveries) (byQueue[d.group] ??= []).push(d.record);
    return {
      eventSource: RABBITMQ_EVENT_SOURCE,
      eventSourceArn: `ledger:rmq:${mapping.endpoint}/${mapping.virtualHost ?? '/'}/${mapping.queue}`,
      rmqMessagesByQueue: byQueue,
    };
  },
};
