// Stream event source mappings (docs/streams.md): Lambda's Kinesis semantics over the
// ledger's own streams. Each shard of a mapping is read in order from its checkpoint by
// one batch at a time. The receive (checkpoint locked, the shard held by the batch's poll
// invocation, accepted + started) commits in one transaction; the outcome and the
// checkpoint's move (or the retry of the same records) in another. A failed batch blocks
// only its shard: it is retried (bisected, if asked) before any later record of the
// shard, until MaximumRetryAttempts or MaximumRecordAgeInSeconds send its metadata to the
// on-failure destination and the shard moves on.
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { recordOutcomes, storableOutcome, type Outcome } from '../../../db/attempts.ts';
import { isDatabaseUnavailable, SequenceConflict } from '../../../db/errors.ts';
import { FunctionVersionCache, type FunctionVersion } from '../../../db/functions.ts';
import { acceptInvocations } from '../../../db/invocations.ts';
import { DEFAULT_MAX_CHAIN_DEPTH, type InvocationState } from '../../../db/lifecycle.ts';
import type { LedgerNotifications } from '../../../db/notifications.ts';
import { MAX_BATCH_BYTES } from '../../../db/queues/schemas.ts';
import type { Db } from '../../../db/schema.ts';
import {
  extendShardHolds,
  formatSequenceNumber,
  holdShard,
  listShardsToPoll,
  lockCheckpoint,
  readShard,
  settleShard,
  streamArn,
  STREAM_RECORDS_CHANNEL,
  trimExpiredRecords,
  type OpenWindow,
  type ShardToPoll,
  type StreamMapping,
  type StreamRecord,
} from '../../../db/streams.ts';
import type { AttemptOutcome, Runtimes } from '../../runtimes/index.ts';
import { enqueueRecords, FUNCTION_ARN_PREFIX, type StreamFailureRecord } from '../destinations.ts';
import { extendLeases } from '../../../db/queue-rows.ts';
import { wakeOn } from '../notify.ts';
import { decideBatch } from './batch-response.ts';
import { mappingSourceArn, MAX_WINDOW_STATE_BYTES, planWindow, stateBytes, windowEvent, windowResponse, type BatchWindow } from './windows.ts';

export const KINESIS_EVENT_SOURCE = 'aws:kinesis';
/** bytes a record adds to its base64 data in the event */
const RECORD_OVERHEAD_BYTES = 400;

/** One record as Lambda delivers a Kinesis record. */
export interface KinesisEventRecord {
  kinesis: {
    kinesisSchemaVersion: '1.0';
    partitionKey: string;
    sequenceNumber: string;
    data: string;
    approximateArrivalTimestamp: number;
  };
  eventSource: typeof KINESIS_EVENT_SOURCE;
  eventVersion: '1.0';
  eventID: string;
  eventName: 'aws:kinesis:record';
  invokeIdentityArn: string;
  awsRegion: 'local';
  eventSourceARN: string;
}

export function kinesisRecord(streamName: string, r: StreamRecord): KinesisEventRecord {
  const seq = formatSequenceNumber(r.sequenceNumber);
  return {
    kinesis: {
      kinesisSchemaVersion: '1.0',
      partitionKey: r.partitionKey,
      sequenceNumber: seq,
      data: r.data.toString('base64'),
      // seconds with milliseconds, as Lambda gives it
      approximateArrivalTimestamp: r.arrivedAt.getTime() / 1000,
    },
    eventSource: KINESIS_EVENT_SOURCE,
    eventVersion: '1.0',
    eventID: `${r.shardId}:${seq}`,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: 'arn:aws:iam::000000000000:role/invoke-ledger',
    awsRegion: 'local',
    eventSourceARN: streamArn(streamName),
  };
}

/**
 * A record as the mapping's function receives it: a change stream's records are stored
 * already shaped as DynamoDB Streams records (docs/streams.md, change streams).
 */
export function eventRecord(m: Pick<StreamMapping, 'sourceTable'>, streamName: string, r: StreamRecord): unknown {
  return m.sourceTable === null ? kinesisRecord(streamName, r) : (JSON.parse(r.data.toString('utf8')) as unknown);
}

/** The itemIdentifier of a record in batchItemFailures: its sequence number (a change record's dynamodb.SequenceNumber). */
export function itemIdentifier(m: Pick<StreamMapping, 'sourceTable'>, r: StreamRecord): string {
  if (m.sourceTable === null) return formatSequenceNumber(r.sequenceNumber);
  return (JSON.parse(r.data.toString('utf8')) as { dynamodb: { SequenceNumber: string } }).dynamodb.SequenceNumber;
}

export interface StreamBatch {
  shard: ShardToPoll;
  fn: FunctionVersion;
  state: InvocationState;
  records: StreamRecord[];
  /** the checkpoint the batch started from */
  from: number;
  /** the tumbling window it carries (docs/streams.md, "Tumbling windows"); null without */
  window: BatchWindow | null;
  /** the event the function receives */
  payload: unknown;
}

export type StreamReceive =
  | { kind: 'batch'; batch: StreamBatch }
  | { kind: 'wait'; ms: number }
  | { kind: 'idle' };

/** Holds the shard and starts the batch's poll invocation, in one transaction. */
export async function receiveStreamBatch(db: Db, shard: ShardToPoll, fn: FunctionVersion, o: { workerId: string; leaseGraceMs: number }): Promise<StreamReceive> {
  const m = shard.mapping;
  return db.transaction().execute(async (tx): Promise<StreamReceive> => {
    const cp = await lockCheckpoint(tx, m.id, shard.shardId, shard.lane);
    if (!cp) return { kind: 'idle' };
    const read = await readShard(tx, cp.streamName, cp.shardId, {
      afterSeq: cp.sequenceNumber,
      untilSeq: cp.retryLastSequenceNumber,
      limit: m.batchSize,
      lane: { lane: cp.lane, lanes: m.parallelizationFactor },
    });
    // with a tumbling window (or one still open), the batch is the window's next records or its final invocation
    const plan = m.tumblingWindowInSeconds > 0 || cp.window !== null ? planWindow(m, cp, read, cp.now) : null;
    if (plan?.kind === 'idle') return { kind: 'idle' };
    if (plan?.kind === 'wait') return { kind: 'wait', ms: plan.ms };
    const inWindow = plan === null ? read : plan.kind === 'records' ? read.slice(0, plan.count) : [];
    const window = plan === null ? null : plan.window;
    const first = inWindow[0];
    if (!first && plan?.kind !== 'final') return { kind: 'idle' };
    if (first) {
      const waited = cp.now.getTime() - first.arrivedAt.getTime();
      const windowMs = m.maximumBatchingWindowInSeconds * 1000;
      const cut = plan?.kind === 'records' && plan.cut;
      if (cp.retryAttempts === 0 && cp.retryLastSequenceNumber === null && !cut && inWindow.length < m.batchSize && waited < windowMs) {
        return { kind: 'wait', ms: windowMs - waited };
      }
    }
    // a batch stays within a sync invoke's payload limit; the rest is the next batch
    let bytes = 0;
    const records = inWindow.filter((r, i) => (bytes += Math.ceil((r.data.byteLength * 4) / 3) + r.partitionKey.length + RECORD_OVERHEAD_BYTES) <= MAX_BATCH_BYTES || i === 0);
    const last = records.at(-1);
    const leaseMs = fn.timeoutMs + o.leaseGraceMs;
    const eventRecords = records.map((r) => eventRecord(m, cp.streamName, r));
    const payload = window ? windowEvent(eventRecords, window, cp.shardId, mappingSourceArn(m, cp.streamName)) : { Records: eventRecords };
    const [accepted] = await acceptInvocations(tx, [
      {
        fn,
        invocationType: 'poll',
        payload,
        startedBy: o.workerId,
        leaseMs,
        stream: {
          mappingId: m.id,
          streamName: cp.streamName,
          shardId: cp.shardId,
          // a final invocation has no records: the range after the checkpoint, which holds none
          firstSequenceNumber: formatSequenceNumber(first?.sequenceNumber ?? cp.sequenceNumber + 1),
          lastSequenceNumber: formatSequenceNumber(last?.sequenceNumber ?? cp.sequenceNumber),
          ...(m.sourceTable !== null ? { source: { table: m.sourceTable, firstLsn: first?.sourceLsn ?? '0/0', lastLsn: last?.sourceLsn ?? '0/0' } } : {}),
          ...(window
            ? {
                window: {
                  start: window.start.toISOString(),
                  end: window.end.toISOString(),
                  isFinalInvokeForWindow: window.isFinalInvokeForWindow,
                  isWindowTerminatedEarly: window.isWindowTerminatedEarly,
                },
              }
            : {}),
        },
      },
    ]);
    const state = accepted?.state as InvocationState;
    await holdShard(tx, {
      mappingId: m.id,
      streamName: cp.streamName,
      shardId: cp.shardId,
      lane: cp.lane,
      invocationId: state.id,
      leaseMs,
      sequenceNumbers: records.map((r) => r.sequenceNumber),
      from: cp.sequenceNumber,
      window,
    });
    return {
      kind: 'batch',
      batch: {
        shard: { ...shard, retryAttempts: cp.retryAttempts, retryLastSequenceNumber: cp.retryLastSequenceNumber, sequenceNumber: cp.sequenceNumber, window: cp.window, windowClosedUntil: cp.windowClosedUntil },
        fn,
        state,
        records,
        from: cp.sequenceNumber,
        window,
        payload,
      },
    };
  });
}

/** What a batch's outcome does to its shard: pure, so the unit tests can pin it. */
export interface StreamDecision {
  outcome: Outcome;
  /** the checkpoint's new position (= from when nothing moved) */
  to: number;
  reason: 'processed' | 'partial' | 'on_failure';
  /** try again: how many failures so far, up to where (a bisected half), after how long */
  retry: { attempts: number; lastSeq: number | null; delayMs: number } | null;
  /** the records that go to the on-failure destination, and why */
  onFailure: { records: StreamRecord[]; condition: 'RetryAttemptsExhausted' | 'RecordAgeExceeded' } | null;
  /** the tumbling window after the batch: stored open with its state, or closed; absent: unchanged */
  window?: { open: OpenWindow } | { closed: { until: Date } };
  /** a final invocation used its retries: the window's state is dropped */
  windowDropped?: boolean;
}

export interface DecideOptions {
  now: Date;
  retryBaseMs: number;
  retryMaxMs: number;
}

/**
 * Lambda's rules for a stream batch: success moves the checkpoint past the batch; with
 * ReportBatchItemFailures, to just before the lowest failed sequence number. A failure
 * keeps the rest of the batch for a retry, bisected first when asked (a split does not
 * count against MaximumRetryAttempts); once the retries are used, or the oldest failed
 * record is older than MaximumRecordAgeInSeconds, the failed records go to the on-failure
 * destination and the checkpoint moves past them.
 */
export function decideStreamBatch(m: StreamMapping, batch: Pick<StreamBatch, 'records' | 'from' | 'shard'> & { window?: BatchWindow | null }, run: AttemptOutcome, o: DecideOptions): StreamDecision {
  const w = batch.window ?? null;
  if (w === null) return decideRecords(m, batch, run, o);
  const response = windowResponse(run, w);
  const attempts = batch.shard.retryAttempts;
  if (w.isFinalInvokeForWindow) {
    const outcome = storableOutcome(response.run);
    if (outcome.ok) {
      // an early end goes on with the same window and a fresh state; a window that ended is closed
      const window = w.isWindowTerminatedEarly && m.tumblingWindowInSeconds > 0
        ? { open: { start: w.start, end: w.end, state: {}, terminatedEarly: false } }
        : { closed: { until: w.end } };
      return { outcome, to: batch.from, reason: 'processed', retry: null, onFailure: null, window };
    }
    if (m.maximumRetryAttempts !== -1 && attempts >= m.maximumRetryAttempts) {
      return { outcome, to: batch.from, reason: 'on_failure', retry: null, onFailure: null, window: { closed: { until: w.end } }, windowDropped: true };
    }
    return { outcome, to: batch.from, reason: 'partial', retry: { attempts: attempts + 1, lastSeq: null, delayMs: Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** Math.min(20, attempts)) }, onFailure: null };
  }
  const d = decideRecords(m, batch, response.run, o);
  if (response.state !== null && d.outcome.ok) {
    // the state the function returned covers what it processed (with batchItemFailures too)
    return { ...d, window: { open: { start: w.start, end: w.end, state: response.state, terminatedEarly: stateBytes(response.state) > MAX_WINDOW_STATE_BYTES } } };
  }
  // the checkpoint moved past records (sent on failure) without a new state: the window stays open with its state
  if (d.to > batch.from) return { ...d, window: { open: { start: w.start, end: w.end, state: w.state, terminatedEarly: false } } };
  return d;
}

function decideRecords(m: StreamMapping, batch: Pick<StreamBatch, 'records' | 'from' | 'shard'>, run: AttemptOutcome, o: DecideOptions): StreamDecision {
  const ids = batch.records.map((r) => itemIdentifier(m, r));
  const decided = decideBatch(ids, m.reportBatchItemFailures, storableOutcome(run));
  const outcome = storableOutcome(decided.outcome);
  const last = (batch.records.at(-1) as StreamRecord).sequenceNumber;
  if (decided.failed.length === 0) return { outcome, to: last, reason: 'processed', retry: null, onFailure: null };

  // the lowest failed record: identifiers are in record order
  const failedIds = new Set(decided.failed);
  const at = ids.findIndex((id) => failedIds.has(id));
  const done = at > 0 ? (batch.records[at - 1] as StreamRecord).sequenceNumber : batch.from;
  const failed = batch.records.slice(at);
  // a function error (or an invalid batchItemFailures answer), not a reported partial failure
  const wholeBatchFailed = !outcome.ok;
  const attempts = batch.shard.retryAttempts;
  const delay = (n: number) => Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** Math.min(20, n));

  // bisect: retry the first half of what failed; a split is not a retry
  if (m.bisectBatchOnFunctionError && wholeBatchFailed && failed.length > 1) {
    const half = failed[Math.ceil(failed.length / 2) - 1] as StreamRecord;
    return { outcome, to: done, reason: 'partial', retry: { attempts, lastSeq: half.sequenceNumber, delayMs: delay(0) }, onFailure: null };
  }
  const oldest = (failed[0] as StreamRecord).arrivedAt.getTime();
  const tooOld = m.maximumRecordAgeInSeconds !== -1 && o.now.getTime() - oldest >= m.maximumRecordAgeInSeconds * 1000;
  const exhausted = m.maximumRetryAttempts !== -1 && attempts >= m.maximumRetryAttempts;
  if (tooOld || exhausted) {
    const failedLast = (failed.at(-1) as StreamRecord).sequenceNumber;
    return { outcome, to: failedLast, reason: 'on_failure', retry: null, onFailure: { records: failed, condition: tooOld ? 'RecordAgeExceeded' : 'RetryAttemptsExhausted' } };
  }
  // the same records again (a bisected half keeps its end), before anything later
  const keepEnd = batch.shard.retryLastSequenceNumber !== null ? (failed.at(-1) as StreamRecord).sequenceNumber : null;
  return { outcome, to: done, reason: 'partial', retry: { attempts: attempts + 1, lastSeq: keepEnd, delayMs: delay(attempts) }, onFailure: null };
}

function failureRecord(batch: StreamBatch, d: StreamDecision, now: Date): StreamFailureRecord {
  const m = batch.shard.mapping;
  const records = d.onFailure?.records ?? batch.records;
  const first = records[0] as StreamRecord;
  const last = records.at(-1) as StreamRecord;
  return {
    version: '1.0',
    timestamp: now.toISOString(),
    requestContext: {
      requestId: batch.state.id,
      functionArn: `${FUNCTION_ARN_PREFIX}${batch.fn.name}:${batch.fn.version}`,
      condition: d.onFailure?.condition ?? 'RetryAttemptsExhausted',
      approximateInvokeCount: batch.shard.retryAttempts + 1,
    },
    responseContext: { statusCode: 200, executedVersion: String(batch.fn.version), ...(d.outcome.ok ? {} : { functionError: 'Unhandled' as const }) },
    ...(m.sourceTable === null
      ? {
          KinesisBatchInfo: {
            shardId: batch.shard.shardId,
            startSequenceNumber: formatSequenceNumber(first.sequenceNumber),
            endSequenceNumber: formatSequenceNumber(last.sequenceNumber),
            approximateArrivalOfFirstRecord: first.arrivedAt.toISOString(),
            approximateArrivalOfLastRecord: last.arrivedAt.toISOString(),
            batchSize: records.length,
            streamArn: streamArn(batch.shard.streamName),
          },
        }
      : {
          DDBStreamBatchInfo: {
            shardId: batch.shard.shardId,
            startSequenceNumber: itemIdentifier(m, first),
            endSequenceNumber: itemIdentifier(m, last),
            approximateArrivalOfFirstRecord: first.arrivedAt.toISOString(),
            approximateArrivalOfLastRecord: last.arrivedAt.toISOString(),
            batchSize: records.length,
            streamArn: (eventRecord(m, batch.shard.streamName, first) as { eventSourceARN: string }).eventSourceARN,
          },
        }),
  };
}

/**
 * Records the poll invocation's outcome, moves the checkpoint (or schedules the retry)
 * and queues the on-failure record, in one transaction. Returns false when the batch had
 * lost its shard (its lease ran out and another batch holds it): then only the outcome is
 * recorded, if the invocation has not been ended by the lease reaper.
 */
export async function settleStreamBatch(db: Db, batch: StreamBatch, d: StreamDecision, o: { maxChainDepth: number }): Promise<{ held: boolean; urls: number }> {
  const now = new Date();
  const write = (record: boolean) =>
    db.transaction().execute(async (tx) => {
      if (record) {
        const { rejected } = await recordOutcomes(tx, [{ state: batch.state, policy: batch.fn, outcome: d.outcome }]);
        if (rejected[0]) throw rejected[0].error;
      }
      const held = await settleShard(tx, {
        invocationId: batch.state.id,
        mappingId: batch.shard.mappingId,
        shardId: batch.shard.shardId,
        lane: batch.shard.lane,
        from: batch.from,
        to: d.to,
        reason: d.reason,
        retry: d.retry,
        ...(d.window ? { window: d.window } : {}),
      });
      let urls = 0;
      const destination = batch.shard.mapping.onFailure;
      if (held && d.onFailure && destination) {
        urls = await enqueueRecords(
          tx,
          [
            {
              invocationId: batch.state.id,
              count: batch.shard.retryAttempts + 1,
              condition: d.onFailure.condition === 'RecordAgeExceeded' ? 'EventAgeExceeded' : 'RetriesExhausted',
              destination,
              record: failureRecord(batch, d, now),
              status: 'pending',
              targetInvocationId: null,
              lastError: null,
            },
          ],
          o.maxChainDepth,
        );
      }
      return { held, urls };
    });
  try {
    return await write(true);
  } catch (e) {
    // the lease reaper ended the invocation first: the function did run, settle the shard anyway
    if (!(e instanceof SequenceConflict)) throw e;
    return write(false);
  }
}

export interface StreamPollerOptions {
  db: Db;
  runtimes: Runtimes;
  logger: Logger;
  workerId: string;
  notifications?: LedgerNotifications;
  registry?: Registry;
  /** how often shards are polled when nothing wakes the poller (default 1000) */
  pollIntervalMs?: number;
  /** batches this process runs at once, over all shards (default 16) */
  maxBatchesInFlight?: number;
  /** the poll invocation's lease (and its hold on the shard) = function timeout + this (default 30000) */
  leaseGraceMs?: number;
  /** first retry of a failed batch after this, doubling up to retryMaxMs (default 1000, 30000) */
  retryBaseMs?: number;
  retryMaxMs?: number;
  maxChainDepth?: number;
  /** how often records past retention are trimmed (default 60000) */
  trimEveryMs?: number;
  /** URL deliveries were queued: wake the deliverer */
  onDestinations?: () => void;
}

export interface StreamPoller {
  start(): Promise<void>;
  /** stop receiving; wait for the batches in flight to settle */
  stop(): Promise<void>;
  readonly inFlight: number;
}

export function createStreamPoller(o: StreamPollerOptions): StreamPoller {
  const pollIntervalMs = o.pollIntervalMs ?? 1_000;
  const maxInFlight = o.maxBatchesInFlight ?? 16;
  const leaseGraceMs = o.leaseGraceMs ?? 30_000;
  const decideOptions = { retryBaseMs: o.retryBaseMs ?? 1_000, retryMaxMs: o.retryMaxMs ?? 30_000 };
  const trimEveryMs = o.trimEveryMs ?? 60_000;
  const log = o.logger.child({ component: 'streams' });
  const versions = new FunctionVersionCache(o.db);
  const metrics = o.registry ? makeMetrics(o.registry) : null;
  /** "mapping/shard" → the batch running here */
  const running = new Map<string, Promise<void>>();
  const startedAt = new Map<string, number>();
  let stopping = true;
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  let unlisten: (() => void) | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  let lastTrim = 0;
  const wakeUp = () => wake?.();

  async function beat(): Promise<void> {
    const threshold = Date.now() - leaseGraceMs / 3;
    const ids = [...startedAt].filter(([, at]) => at <= threshold).map(([id]) => id);
    if (ids.length === 0) return;
    try {
      await extendLeases(o.db, o.workerId, ids, leaseGraceMs);
      await extendShardHolds(o.db, ids, leaseGraceMs);
    } catch (e) {
      log.warn({ err: e }, 'stream batch heartbeat failed');
    }
  }

  async function runBatch(batch: StreamBatch): Promise<void> {
    const { state, fn, shard } = batch;
    const run = await o.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload: batch.payload });
    const d = decideStreamBatch(shard.mapping, batch, run, { ...decideOptions, now: new Date() });
    for (let attempt = 1; ; attempt++) {
      try {
        const { held, urls } = await settleStreamBatch(o.db, batch, d, { maxChainDepth: o.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH });
        if (urls > 0) o.onDestinations?.();
        if (!held) log.warn({ invocationId: state.id, shardId: shard.shardId }, 'a stream batch outlived its hold on the shard; the checkpoint was not moved');
        if (d.windowDropped) {
          log.warn({ mappingId: shard.mappingId, shardId: shard.shardId, window: batch.window?.start }, "a window's final invocation used its retries: the window's state is dropped");
        }
        if (d.onFailure && !shard.mapping.onFailure) {
          log.warn({ mappingId: shard.mappingId, shardId: shard.shardId, records: d.onFailure.records.length }, 'a batch used its retries and the mapping has no on-failure destination: its records are skipped');
        }
        metrics?.batches.inc({ outcome: d.reason === 'processed' ? 'succeeded' : d.onFailure || d.windowDropped ? 'on_failure' : 'retried' });
        metrics?.records.inc(d.to - batch.from);
        return;
      } catch (e) {
        // the function ran: keep trying while the database is away; if the worker stops
        // first, the hold runs out and the batch is delivered again (at-least-once)
        if (stopping || attempt > 20 || !isDatabaseUnavailable(e)) {
          log.error({ err: e, invocationId: state.id }, 'could not settle a stream batch; it is delivered again when its hold runs out');
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** attempt)));
      }
    }
  }

  function launch(key: string, batch: StreamBatch): void {
    startedAt.set(batch.state.id, Date.now());
    const p = runBatch(batch).finally(() => {
      running.delete(key);
      startedAt.delete(batch.state.id);
      wakeUp();
    });
    running.set(key, p);
  }

  async function pollShards(): Promise<number> {
    let nextMs = pollIntervalMs;
    if (Date.now() - lastTrim > trimEveryMs) {
      lastTrim = Date.now();
      const n = await trimExpiredRecords(o.db);
      if (n > 0) log.info({ records: n }, 'trimmed stream records past retention');
    }
    const shards = await listShardsToPoll(o.db);
    for (const s of shards) {
      if (stopping || running.size >= maxInFlight) break;
      const key = `${s.mappingId}/${s.shardId}/${s.lane}`;
      if (running.has(key) || s.functionVersion === null) continue;
      const fn = await versions.get(s.mapping.functionName, s.functionVersion);
      if (!fn) continue;
      const r = await receiveStreamBatch(o.db, s, fn, { workerId: o.workerId, leaseGraceMs });
      if (r.kind === 'batch') launch(key, r.batch);
      else if (r.kind === 'wait') nextMs = Math.min(nextMs, Math.max(1, r.ms));
    }
    return nextMs;
  }

  async function run(): Promise<void> {
    while (!stopping) {
      let nextMs = pollIntervalMs;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      try {
        if (running.size < maxInFlight) nextMs = await pollShards();
      } catch (e) {
        if (isDatabaseUnavailable(e)) log.warn({ err: e }, 'database unavailable; stream polling retries');
        else log.error({ err: e }, 'stream poll failed');
      }
      if (stopping) break;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, nextMs)))]);
      clearTimeout(timer);
    }
  }

  return {
    get inFlight() {
      return running.size;
    },
    async start() {
      if (!stopping) return;
      stopping = false;
      if (o.notifications) unlisten = wakeOn(o.notifications, STREAM_RECORDS_CHANNEL, wakeUp);
      heartbeat = setInterval(() => void beat(), Math.max(100, Math.floor(leaseGraceMs / 3)));
      loop = run();
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      wakeUp();
      await loop;
      while (running.size > 0) await Promise.all([...running.values()]);
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = null;
      unlisten?.();
      unlisten = null;
    },
  };
}

function makeMetrics(registry: Registry) {
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
  return {
    batches: counter('ledger_stream_batches_total', 'Batches delivered by stream mappings, by what became of them', ['outcome']),
    records: counter('ledger_stream_records_checkpointed_total', 'Stream records the checkpoints moved past', []),
  };
}
