// Tumbling windows of stream mappings (docs/streams.md, "Tumbling windows"): records of
// two shards over two windows, each window's state passed from invocation to invocation
// and reset at the boundary, one final invocation per window and shard with the window's
// aggregate; the state kept on the checkpoint survives a worker restart; a state past
// 1 MB ends the window early; TumblingWindowInSeconds is refused outside 0 … 900 on the
// Lambda wire, in GraphQL and in db/streams.ts.
import { CreateEventSourceMappingCommand, LambdaServiceException, UpdateEventSourceMappingCommand } from '@aws-sdk/client-lambda';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { LedgerError } from '../../db/errors.ts';
import { createFunction } from '../../db/functions.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createStream, createStreamMapping, listCheckpoints, putRecords, shardForKey, updateStreamMapping, type Stream } from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { bearer, gql, sdkClient } from '../security/helpers.ts';
import { FIXTURES, json, silent, startStreamPoller, streamRuntimes, waitFor } from './helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let poller: StreamPoller;
let server: Listening;
let admin: CreatedApiKey;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = streamRuntimes();
  poller = await startStreamPoller(t.db, runtimes);
  const { app } = composeApi({ db: t.db, instanceId: 'windows-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0 } });
  server = await listen(app.fetch);
  admin = await createApiKey(t.db, { name: 'operator', scopes: ['admin', 'invoke', 'audit'] });
});

afterAll(async () => {
  await poller?.stop();
  await server?.close();
  await runtimes?.close();
});

const windowFunction = (name: string) => createFunction(t.db, name, { runtime: 'MODULE', handler: 'stream-window.ts', isolation: 'inline', timeoutMs: 10_000 });

/** `n` partition keys that land on the shard. */
function keysOn(stream: Stream, shardId: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (shardForKey(stream.shards, `key-${i}`) === shardId) out.push(`key-${i}`);
  return out;
}

interface WindowInvocation {
  invocationId: string;
  status: string;
  shardId: string;
  recordCount: number;
  windowStart: string;
  windowEnd: string;
  final: boolean;
  terminatedEarly: boolean;
  /** what the function received and returned */
  event: { Records: unknown[]; state: { sum?: number; count?: number }; window: { start: string; end: string }; shardId: string; eventSourceARN: string; isFinalInvokeForWindow: boolean; isWindowTerminatedEarly: boolean };
  returned: { sum: number; count: number } | null;
}

/** The mapping's poll invocations as the ledger has them (audit view, accepted payload, succeeded result), in order. */
async function windowInvocations(mappingId: string): Promise<WindowInvocation[]> {
  const { rows } = await sql<{
    invocation_id: string;
    status: string;
    shard_id: string;
    record_count: number;
    window_start: Date;
    window_end: Date;
    final_invoke_for_window: boolean;
    window_terminated_early: boolean;
    payload: WindowInvocation['event'];
    result: { state?: { sum: number; count: number } } | null;
  }>`
    select d.invocation_id, d.status, d.shard_id, d.record_count, d.window_start, d.window_end, d.final_invoke_for_window, d.window_terminated_early,
      a.data -> 'payload' as payload,
      (select s.data -> 'result' from ledger.events s where s.invocation_id = d.invocation_id and s.type = 'succeeded') as result
    from audit.stream_deliveries d
    join ledger.events a on a.invocation_id = d.invocation_id and a.seq = 1
    where d.mapping_id = ${mappingId}::uuid
    order by a.position`.execute(t.db);
  return rows.map((r) => ({
    invocationId: r.invocation_id,
    status: r.status,
    shardId: r.shard_id,
    recordCount: r.record_count,
    windowStart: r.window_start.toISOString(),
    windowEnd: r.window_end.toISOString(),
    final: r.final_invoke_for_window,
    terminatedEarly: r.window_terminated_early,
    event: r.payload,
    returned: r.result?.state ?? null,
  }));
}

describe('tumbling windows', () => {
  it('passes state within a window and shard, resets it at the boundary, and ends each window with one final invocation', { timeout: 60_000 }, async () => {
    const stream = await createStream(t.db, { name: 'tumbling', shardCount: 2 });
    await windowFunction('window-sum');
    const m = await createStreamMapping(t.db, { streamName: 'tumbling', functionName: 'window-sum', startingPosition: 'TRIM_HORIZON', batchSize: 2, tumblingWindowInSeconds: 1 });
    expect(m.tumblingWindowInSeconds).toBe(1);
    const shard0 = keysOn(stream, 'shardId-000000000000', 3);
    const shard1 = keysOn(stream, 'shardId-000000000001', 3);
    // one put is one transaction: its records share their arrival time, so one window per put and shard
    const put = (from: number, perShard: number) =>
      putRecords(
        t.db,
        'tumbling',
        Array.from({ length: perShard * 2 }, (_, i) => ({ partitionKey: (i % 2 === 0 ? shard0 : shard1)[i % 3] as string, data: json({ n: from + i }) })),
      );
    await put(1, 6); // 6 records per shard: 3 invocations of 2 in its window
    await waitFor('the database clock in the next 1-second window', async () => {
      const { rows } = await sql<{ next: boolean }>`
        select floor(extract(epoch from clock_timestamp())) > (select max(floor(extract(epoch from arrived_at))) from ledger.stream_records where stream_name = 'tumbling') as next`.execute(t.db);
      return rows[0]?.next;
    });
    await put(101, 4); // 4 records per shard in the next window

    const all = await waitFor('a final invocation of both windows of both shards', async () => {
      const list = await windowInvocations(m.id);
      return list.filter((x) => x.final && x.status === 'succeeded').length === 4 ? list : null;
    });

    // the windows each record belongs to, from the arrival times the ledger kept
    const { rows: records } = await sql<{ shard_id: string; n: number; window_start: Date }>`
      select shard_id, (convert_from(data, 'UTF8')::jsonb ->> 'n')::int as n, to_timestamp(floor(extract(epoch from arrived_at))) as window_start
      from ledger.stream_records where stream_name = 'tumbling' order by shard_id, sequence_number`.execute(t.db);
    const expected = new Map<string, { sum: number; count: number }>();
    for (const r of records) {
      const k = `${r.shard_id}@${r.window_start.toISOString()}`;
      const e = expected.get(k) ?? { sum: 0, count: 0 };
      expected.set(k, { sum: e.sum + r.n, count: e.count + 1 });
    }
    expect(expected.size).toBe(4);

    expect(all.every((x) => x.status === 'succeeded')).toBe(true);
    const groups = new Map<string, WindowInvocation[]>();
    for (const x of all) groups.set(`${x.shardId}@${x.windowStart}`, [...(groups.get(`${x.shardId}@${x.windowStart}`) ?? []), x]);
    expect([...groups.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [key, list] of groups) {
      const want = expected.get(key) as { sum: number; count: number };
      const finals = list.filter((x) => x.final);
      // exactly one final invocation, the window's last, without records, with the window's aggregate
      expect(finals.length, key).toBe(1);
      expect(list.at(-1)?.final, key).toBe(true);
      expect(finals[0]?.recordCount).toBe(0);
      expect(finals[0]?.event.Records).toEqual([]);
      expect(finals[0]?.event.state, key).toEqual(want);
      expect(finals[0]?.event).toMatchObject({ isFinalInvokeForWindow: true, isWindowTerminatedEarly: false, shardId: list[0]?.shardId, eventSourceARN: stream.arn });
      // the state starts empty at the window's first invocation and is passed on from each to the next
      expect(list[0]?.event.state, key).toEqual({});
      for (let i = 1; i < list.length; i++) expect(list[i]?.event.state, `${key} #${i}`).toEqual(list[i - 1]?.returned);
      const recordInvocations = list.filter((x) => !x.final);
      expect(recordInvocations.reduce((n, x) => n + x.recordCount, 0)).toBe(want.count);
      expect(recordInvocations.every((x) => x.recordCount <= 2 && !x.event.isFinalInvokeForWindow)).toBe(true);
      // the window names its bounds: one second, aligned to the epoch
      expect(new Date(list[0]?.event.window.end as string).getTime() - new Date(list[0]?.event.window.start as string).getTime()).toBe(1000);
      expect(list.every((x) => x.event.window.start === x.windowStart && x.event.window.end === x.windowEnd)).toBe(true);
    }
    // the first window of each shard took 3 invocations of records: state accumulated over them
    expect([...groups.values()].map((l) => l.filter((x) => !x.final).length).sort()).toEqual([2, 2, 3, 3]);
    // every window closed: the checkpoints keep no state, and sit at their shards' last records
    const cps = await listCheckpoints(t.db, m.id);
    expect(cps.map((c) => [c.sequenceNumber, c.window])).toEqual([
      [10, null],
      [10, null],
    ]);
  });

  it('keeps the open window and its state on the checkpoint across a worker restart', { timeout: 60_000 }, async () => {
    // a 900-second window: stay clear of its boundary so all records fall in one window
    await waitFor('not within 20 s of a 900-second boundary', async () => Date.now() % 900_000 < 880_000, 30_000);
    await createStream(t.db, { name: 'restart', shardCount: 1 });
    await windowFunction('window-restart');
    const m = await createStreamMapping(t.db, { streamName: 'restart', functionName: 'window-restart', startingPosition: 'TRIM_HORIZON', tumblingWindowInSeconds: 900 });
    await putRecords(t.db, 'restart', [1, 2, 3].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    const stored = await waitFor('the first batch checkpointed with its state', async () => {
      const cp = (await listCheckpoints(t.db, m.id))[0];
      return cp?.sequenceNumber === 3 ? cp : null;
    });
    expect(stored.window?.state).toEqual({ sum: 6, count: 3 });

    // the worker goes away; a new one, with nothing in memory, resumes the window from the checkpoint
    await poller.stop();
    await runtimes.close();
    await putRecords(t.db, 'restart', [4, 5].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    runtimes = streamRuntimes();
    poller = await startStreamPoller(t.db, runtimes);
    await waitFor('the second batch checkpointed', async () => (await listCheckpoints(t.db, m.id))[0]?.sequenceNumber === 5);
    let list = await windowInvocations(m.id);
    expect(list.map((x) => [x.recordCount, x.event.state, x.returned])).toEqual([
      [3, {}, { sum: 6, count: 3 }],
      [2, { sum: 6, count: 3 }, { sum: 15, count: 5 }],
    ]);
    expect(list[1]?.windowStart).toBe(list[0]?.windowStart);

    // turning tumbling windows off ends the open window at once, with its final invocation
    await updateStreamMapping(t.db, m.id, { tumblingWindowInSeconds: 0 });
    list = await waitFor('the final invocation', async () => {
      const l = await windowInvocations(m.id);
      return l.length === 3 && l[2]?.status === 'succeeded' ? l : null;
    });
    expect(list[2]).toMatchObject({ final: true, terminatedEarly: true, recordCount: 0, event: { state: { sum: 15, count: 5 }, isFinalInvokeForWindow: true, isWindowTerminatedEarly: true } });
    expect((await listCheckpoints(t.db, m.id))[0]?.window).toBeNull();
  });

  it('ends a window early when its state passes 1 MB, and goes on with a fresh state', { timeout: 60_000 }, async () => {
    await waitFor('not within 20 s of a 900-second boundary', async () => Date.now() % 900_000 < 880_000, 30_000);
    await createStream(t.db, { name: 'big-state', shardCount: 1 });
    await windowFunction('window-big');
    const m = await createStreamMapping(t.db, { streamName: 'big-state', functionName: 'window-big', startingPosition: 'TRIM_HORIZON', batchSize: 2, tumblingWindowInSeconds: 900 });
    await putRecords(t.db, 'big-state', [{ n: 1 }, { n: 2, big: true }, { n: 3 }].map((d) => ({ partitionKey: 'k', data: json(d) })));
    const list = await waitFor('the early end and the batch after it', async () => {
      const l = await windowInvocations(m.id);
      return l.length === 3 && l.every((x) => x.status === 'succeeded') ? l : null;
    });
    expect(list.map((x) => [x.recordCount, x.final, x.terminatedEarly, x.event.state.count ?? 0])).toEqual([
      [2, false, false, 0],
      [0, true, true, 2],
      [1, false, false, 0],
    ]);
    expect(list.every((x) => x.windowStart === list[0]?.windowStart)).toBe(true);
    expect((await listCheckpoints(t.db, m.id))[0]?.window?.state).toEqual({ sum: 3, count: 1 });
  });

  it('retries a batch whose response has no state, before any later record', { timeout: 60_000 }, async () => {
    await createStream(t.db, { name: 'no-state', shardCount: 1 });
    await windowFunction('window-no-state');
    const m = await createStreamMapping(t.db, {
      streamName: 'no-state',
      functionName: 'window-no-state',
      startingPosition: 'TRIM_HORIZON',
      tumblingWindowInSeconds: 900,
      maximumRetryAttempts: 1,
    });
    await putRecords(t.db, 'no-state', [{ n: 1, noState: true }].map((d) => ({ partitionKey: 'k', data: json(d) })));
    const list = await waitFor('the batch tried twice', async () => {
      const l = await windowInvocations(m.id);
      return l.length === 2 && l.every((x) => x.status === 'failed') ? l : null;
    });
    const { rows } = await sql<{ error_type: string }>`select error_type from ledger.invocations where id = ${list[0]?.invocationId}::uuid`.execute(t.db);
    expect(rows[0]?.error_type).toBe('InvalidTumblingWindowResponse');
  });
});

describe('TumblingWindowInSeconds on the wire', () => {
  const refusal = (p: Promise<unknown>): Promise<LambdaServiceException> => refusedWith(LambdaServiceException, p);

  it('is set and answered through CreateEventSourceMapping and UpdateEventSourceMapping, and refused outside 0 … 900', async () => {
    await createStream(t.db, { name: 'wire', shardCount: 1 });
    await windowFunction('window-wire');
    const client = sdkClient(server.url, admin);
    const arn = 'arn:aws:kinesis:us-east-1:000000000000:stream/wire';
    const created = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'window-wire', EventSourceArn: arn, StartingPosition: 'LATEST', TumblingWindowInSeconds: 60 }));
    expect(created.TumblingWindowInSeconds).toBe(60);
    const updated = await client.send(new UpdateEventSourceMappingCommand({ UUID: created.UUID!, TumblingWindowInSeconds: 900 }));
    expect(updated.TumblingWindowInSeconds).toBe(900);

    const { rows: before } = await sql<{ n: number }>`select count(*)::int as n from ledger.changes`.execute(t.db);
    for (const [what, send] of [
      ['create 901', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'window-wire', EventSourceArn: arn, StartingPosition: 'LATEST', TumblingWindowInSeconds: 901 }))],
      ['create -1', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'window-wire', EventSourceArn: arn, StartingPosition: 'LATEST', TumblingWindowInSeconds: -1 }))],
      ['update 901', () => client.send(new UpdateEventSourceMappingCommand({ UUID: created.UUID!, TumblingWindowInSeconds: 901 }))],
      ['update -1', () => client.send(new UpdateEventSourceMappingCommand({ UUID: created.UUID!, TumblingWindowInSeconds: -1 }))],
    ] as const) {
      const e = await refusal(send());
      expect([what, e.name, e.$metadata.httpStatusCode]).toEqual([what, 'InvalidParameterValueException', 400]);
      expect(e.message).toMatch(/tumblingWindowInSeconds.*between 0 and 900/);
    }
    const { rows: after } = await sql<{ n: number }>`select count(*)::int as n from ledger.changes`.execute(t.db);
    expect(after[0]?.n).toBe(before[0]?.n);
  });

  it('is refused outside 0 … 900 in GraphQL and in db/streams.ts', async () => {
    await windowFunction('window-gql');
    await createStream(t.db, { name: 'gql-windows', shardCount: 1 });
    const r = await gql(
      server.url,
      'mutation { createStreamEventSourceMapping(input: { streamName: "gql-windows", functionName: "window-gql", startingPosition: LATEST, tumblingWindowInSeconds: 901 }) { id } }',
      bearer(admin),
    );
    expect(r.body.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const ok = await gql(
      server.url,
      'mutation { createStreamEventSourceMapping(input: { streamName: "gql-windows", functionName: "window-gql", startingPosition: LATEST, tumblingWindowInSeconds: 30 }) { id tumblingWindowInSeconds checkpoints { shardId window { start } } } }',
      bearer(admin),
    );
    expect(ok.body.data?.['createStreamEventSourceMapping']).toMatchObject({ tumblingWindowInSeconds: 30, checkpoints: [{ shardId: 'shardId-000000000000', window: null }] });
    for (const bad of [901, -1, 1.5]) {
      await expect(createStreamMapping(t.db, { streamName: 'gql-windows', functionName: 'window-gql', startingPosition: 'LATEST', tumblingWindowInSeconds: bad })).rejects.toThrow(LedgerError);
    }
  });
});
