// What a broker source is to the runner (runner.ts): something that hands out batches of
// deliveries, builds the function's event for them, and settles them after the ledger has
// recorded the batch's outcome. A broker is one file implementing BrokerDriver
// (rabbitmq.ts, nats.ts); a Kafka source would be a third (docs/brokers.md).
import type { ConsumableBrokerMapping } from '../../../../db/brokers.ts';

export interface BrokerDelivery {
  /** names the message in batchItemFailures; unique within its batch */
  itemIdentifier: string;
  /** identifies the message across redeliveries (a stream sequence, a message-id); null when nothing does */
  dedupKey: string | null;
  /** deliveries of this message so far, this one included */
  deliveryCount: number;
  /** where the record is listed in the event (queue::vhost, a subject) */
  group: string;
  /** the record as the function receives it */
  record: Record<string, unknown>;
  /** the record's size in the event, roughly (base64 body and metadata) */
  bytes: number;
}

/** What the runner decided for a batch whose outcome has committed. */
export interface Settlement {
  succeeded: BrokerDelivery[];
  failed: BrokerDelivery[];
  /** the batch's attempt, 1 for its first invocation */
  attempt: number;
}

export interface BrokerConsumer {
  /**
   * The next batch: up to batchSize deliveries, gathered for up to the batching window
   * once the first arrived; [] after about a second with nothing (or when closing).
   * Rejects when the connection is lost: the broker redelivers what was not acknowledged.
   */
  next(): Promise<BrokerDelivery[]>;
  /** the worker is stopping or the mapping was disabled: next() returns what it has at once */
  interrupt(): void;
  /** order-preserving sources retry a failed batch whole, from its first failed message */
  readonly ordered: boolean;
  /**
   * For a failed batch, before its outcome is recorded: true when it will not be retried
   * (its failed messages go to the dead letters or the on-failure destination).
   */
  exhausted(failed: readonly BrokerDelivery[], attempt: number): boolean;
  /**
   * After the outcome committed: acknowledge what succeeded, and return or dead-letter
   * what failed by the broker's rules. Returns what to invoke again now (ordered sources)
   * and after how long.
   */
  settle(s: Settlement): Promise<{ retry: BrokerDelivery[]; delayMs: number } | null>;
  /** keeps deliveries held while the runner waits (NATS: in progress, so they are not redelivered) */
  hold(d: readonly BrokerDelivery[]): void;
  /** deliveries that cannot be delivered at all (the ledger could not store them): dead-lettered, never invoked */
  reject(d: readonly BrokerDelivery[], reason: string): Promise<void>;
  /** the batch was not invoked (stopping): back to the broker for another consumer */
  release(d: readonly BrokerDelivery[]): Promise<void>;
  /** messages waiting in the broker for this mapping; null when unknown */
  lag(): Promise<number | null>;
  close(): Promise<void>;
}

export interface BrokerDriver {
  readonly broker: ConsumableBrokerMapping['broker'];
  open(mapping: ConsumableBrokerMapping, url: string, o: { ackWaitMs: number }): Promise<BrokerConsumer>;
  /** the function's event for a batch */
  event(mapping: ConsumableBrokerMapping, deliveries: readonly BrokerDelivery[]): unknown;
}

/** Exponential backoff from 1 s to 30 s: reconnects and ordered retries. */
export const backoffMs = (attempt: number): number => Math.min(30_000, 1_000 * 2 ** Math.max(0, attempt - 1));
