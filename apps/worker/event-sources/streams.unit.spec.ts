// Lambda's rules for a stream batch's outcome, pinned without a database.
import { describe, expect, it } from 'vitest';
import type { ShardToPoll, StreamMapping, StreamRecord } from '../../../db/streams.ts';
import type { AttemptOutcome } from '../../runtimes/index.ts';
import { decideStreamBatch } from './streams.ts';

const now = new Date('2026-01-01T12:00:00Z');
const mapping = (o: Partial<StreamMapping> = {}): StreamMapping => ({
  id: 'm',
  streamName: 's',
  functionName: 'f',
  startingPosition: 'TRIM_HORIZON',
  startingPositionTimestamp: null,
  sourceTable: null,
  batchSize: 10,
  maximumBatchingWindowInSeconds: 0,
  maximumRetryAttempts: -1,
  maximumRecordAgeInSeconds: -1,
  bisectBatchOnFunctionError: false,
  reportBatchItemFailures: false,
  onFailure: null,
  enabled: true,
  parallelizationFactor: 1,
  tumblingWindowInSeconds: 0,
  createdAt: now,
  updatedAt: now,
  ...o,
});
const records = (from: number, to: number, ageS = 1): StreamRecord[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({
    shardId: 'shardId-000000000000',
    sequenceNumber: from + i,
    partitionKey: 'k',
    sourceLsn: null,
    data: Buffer.from('x'),
    arrivedAt: new Date(now.getTime() - ageS * 1000),
  }));
const batch = (m: StreamMapping, rs: StreamRecord[], from: number, retryAttempts = 0, retryLast: number | null = null) => ({
  records: rs,
  from,
  shard: { mapping: m, mappingId: m.id, streamName: 's', shardId: 'shardId-000000000000', lane: 0, sequenceNumber: from, retryAttempts, retryLastSequenceNumber: retryLast, functionVersion: 1, behind: true, window: null, windowClosedUntil: null } satisfies ShardToPoll,
});
const ok = (result: unknown = null): AttemptOutcome => ({ ok: true, result, durationMs: 1, log: '' });
const err: AttemptOutcome = { ok: false, error: { errorType: 'Error', errorMessage: 'boom', trace: [] }, durationMs: 1, log: '' };
const opts = { now, retryBaseMs: 100, retryMaxMs: 1000 };

describe('decideStreamBatch', () => {
  it('a success moves the checkpoint past the batch', () => {
    expect(decideStreamBatch(mapping(), batch(mapping(), records(4, 9), 3), ok(), opts)).toMatchObject({ to: 9, reason: 'processed', retry: null, onFailure: null });
  });

  it('a failure keeps the checkpoint and retries the batch, counting; the retry delay doubles up to the cap', () => {
    const m = mapping();
    expect(decideStreamBatch(m, batch(m, records(4, 9), 3), err, opts)).toMatchObject({ to: 3, retry: { attempts: 1, lastSeq: null, delayMs: 100 } });
    expect(decideStreamBatch(m, batch(m, records(4, 9), 3, 2), err, opts).retry).toMatchObject({ attempts: 3, delayMs: 400 });
    expect(decideStreamBatch(m, batch(m, records(4, 9), 3, 9), err, opts).retry?.delayMs).toBe(1000);
  });

  it('bisects a failed batch without counting a retry; a single record is retried, then sent on', () => {
    const m = mapping({ bisectBatchOnFunctionError: true, maximumRetryAttempts: 1 });
    expect(decideStreamBatch(m, batch(m, records(1, 10), 0), err, opts)).toMatchObject({ to: 0, retry: { attempts: 0, lastSeq: 5 } });
    expect(decideStreamBatch(m, batch(m, records(1, 5), 0, 0, 5), err, opts)).toMatchObject({ retry: { attempts: 0, lastSeq: 3 } });
    expect(decideStreamBatch(m, batch(m, records(3, 3), 2, 0, 3), err, opts)).toMatchObject({ to: 2, retry: { attempts: 1, lastSeq: 3 } });
    const last = decideStreamBatch(m, batch(m, records(3, 3), 2, 1, 3), err, opts);
    expect(last).toMatchObject({ to: 3, reason: 'on_failure', retry: null, onFailure: { condition: 'RetryAttemptsExhausted' } });
    expect(last.onFailure?.records.map((r) => r.sequenceNumber)).toEqual([3]);
  });

  it('MaximumRecordAgeInSeconds: a failed batch whose oldest record is too old goes to the on-failure destination at once', () => {
    const m = mapping({ maximumRecordAgeInSeconds: 60 });
    expect(decideStreamBatch(m, batch(m, records(1, 4, 61), 0), err, opts)).toMatchObject({ to: 4, reason: 'on_failure', onFailure: { condition: 'RecordAgeExceeded' } });
    expect(decideStreamBatch(m, batch(m, records(1, 4, 59), 0), err, opts)).toMatchObject({ to: 0, reason: 'partial', onFailure: null });
  });

  it('ReportBatchItemFailures: to just before the lowest failed sequence number; an invalid answer fails the batch', () => {
    const m = mapping({ reportBatchItemFailures: true });
    const d = decideStreamBatch(m, batch(m, records(1, 10), 0), ok({ batchItemFailures: [{ itemIdentifier: '00000000000000000007' }, { itemIdentifier: '00000000000000000004' }] }), opts);
    expect(d).toMatchObject({ to: 3, reason: 'partial', retry: { attempts: 1, lastSeq: null }, outcome: { ok: true } });
    expect(decideStreamBatch(m, batch(m, records(1, 10), 0), ok({ batchItemFailures: [] }), opts)).toMatchObject({ to: 10, reason: 'processed' });
    const invalid = decideStreamBatch(m, batch(m, records(1, 10), 0), ok({ batchItemFailures: [{ itemIdentifier: 'nope' }] }), opts);
    expect(invalid).toMatchObject({ to: 0, outcome: { ok: false, error: { errorType: 'InvalidBatchItemFailures' } } });
  });

  describe('with a tumbling window', () => {
    const m = mapping({ tumblingWindowInSeconds: 60, maximumRetryAttempts: 1, reportBatchItemFailures: true });
    const start = new Date(now.getTime() - 120_000);
    const end = new Date(now.getTime() - 60_000);
    const win = (o: Partial<{ isFinalInvokeForWindow: boolean; isWindowTerminatedEarly: boolean }> = {}) => ({
      start,
      end,
      state: { n: 2 },
      isFinalInvokeForWindow: false,
      isWindowTerminatedEarly: false,
      ...o,
    });

    it('keeps the returned state with the checkpoint move, also with batchItemFailures; a failure keeps the stored state', () => {
      expect(decideStreamBatch(m, { ...batch(m, records(4, 5), 3), window: win() }, ok({ state: { n: 4 } }), opts)).toMatchObject({
        to: 5,
        window: { open: { start, end, state: { n: 4 }, terminatedEarly: false } },
      });
      const partial = decideStreamBatch(m, { ...batch(m, records(4, 5), 3), window: win() }, ok({ state: { n: 3 }, batchItemFailures: [{ itemIdentifier: '00000000000000000005' }] }), opts);
      expect(partial).toMatchObject({ to: 4, retry: { attempts: 1 }, window: { open: { state: { n: 3 } } } });
      expect(decideStreamBatch(m, { ...batch(m, records(4, 5), 3), window: win() }, err, opts).window).toBeUndefined();
    });

    it('a final invocation closes the window; failed, it is retried, and past its retries the window is dropped', () => {
      const final = win({ isFinalInvokeForWindow: true });
      expect(decideStreamBatch(m, { ...batch(m, [], 5), window: final }, ok(null), opts)).toMatchObject({ to: 5, reason: 'processed', window: { closed: { until: end } } });
      expect(decideStreamBatch(m, { ...batch(m, [], 5), window: final }, err, opts)).toMatchObject({ to: 5, retry: { attempts: 1 } });
      expect(decideStreamBatch(m, { ...batch(m, [], 5, 1), window: final }, err, opts)).toMatchObject({ to: 5, retry: null, windowDropped: true, window: { closed: { until: end } } });
      // an early end: the same window goes on with a fresh state
      expect(decideStreamBatch(m, { ...batch(m, [], 5), window: win({ isFinalInvokeForWindow: true, isWindowTerminatedEarly: true }) }, ok({}), opts).window).toEqual({
        open: { start, end, state: {}, terminatedEarly: false },
      });
    });
  });
});
