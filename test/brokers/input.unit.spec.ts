// What a broker mapping accepts, and what people see of its URL: pure, no broker, no database.
import { describe, expect, it } from 'vitest';
import { redact } from '../../apps/worker/event-sources/brokers/runner.ts';
import { brokerMappingInputSchema, endpointOf, openConnectionUrl } from '../../db/brokers.ts';

describe('broker mapping input', () => {
  it('fills Lambda-like defaults and refuses what cannot work', () => {
    const rabbit = brokerMappingInputSchema.parse({ broker: 'rabbitmq', url: 'amqp://u:p@h:5672', queue: 'q', functionName: 'f' });
    expect(rabbit).toMatchObject({ virtualHost: '/', batchSize: 100, maxBatchingWindowMs: 500, maxDeliveryCount: 5, reportBatchItemFailures: false, enabled: true });
    const nats = brokerMappingInputSchema.parse({ broker: 'nats', url: 'nats://h:4222', stream: 'S', functionName: 'f' });
    expect(nats).toMatchObject({ startingPosition: 'TRIM_HORIZON', maxRetryAttempts: -1, onFailureQueue: null });
    const bad = (input: object) => brokerMappingInputSchema.safeParse(input).success;
    expect(bad({ broker: 'rabbitmq', url: 'nats://h', queue: 'q', functionName: 'f' })).toBe(false);
    expect(bad({ broker: 'rabbitmq', url: 'amqp://h', queue: 'nul\u0000', functionName: 'f' })).toBe(false);
    expect(bad({ broker: 'nats', url: 'nats://h', stream: 'S', functionName: 'f', startingPosition: 'AT_TIMESTAMP' })).toBe(false);
    expect(bad({ broker: 'nats', url: 'nats://h', stream: 'S', functionName: 'f', startingPosition: 'AT_TIMESTAMP', startingPositionTimestamp: '2026-01-01T00:00:00Z' })).toBe(true);
    expect(bad({ broker: 'kafka', url: 'kafka://h', functionName: 'f' })).toBe(false);
  });

  it('shows the endpoint without credentials, and takes credentials out of error text', () => {
    expect(endpointOf('amqps://user:secret@mq.example.com:5671/vhost?heartbeat=5')).toBe('amqps://mq.example.com:5671');
    expect(redact('connect ECONNREFUSED amqp://guest:guest@127.0.0.1:5672/%2F')).toBe('connect ECONNREFUSED amqp://***@127.0.0.1:5672/%2F');
  });

  it('opens a plain URL as stored, and a sealed one only with its key', () => {
    const plain = { id: 'm', connectionFormat: 'plain' as const, connectionSealed: Buffer.from('amqp://h') };
    expect(openConnectionUrl(plain, null)).toBe('amqp://h');
    expect(() => openConnectionUrl({ ...plain, connectionFormat: 'aes-256-gcm' }, null)).toThrow(/LEDGER_SECRET_KEY is not set/);
  });
});
