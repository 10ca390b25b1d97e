// A worker process SIGKILLed mid-batch (docs/streams.md): another worker resumes the
// shard from the last checkpoint once the lost batch's hold runs out; the batch runs again
// (at-least-once) and the ledger shows both attempts, the lost one ended as WorkerLost. A
// tumbling window's state, kept on the checkpoint, outlives its worker.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInvocation } from '../../db/invocations.ts';
import { createStream, createStreamMapping, deliveriesOfRecord, listCheckpoints, putRecords } from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { deliveredBatches, FIXTURES, json, once, SLOW_TESTS, waitFor } from './helpers.ts';

let t: TestDatabase;
let dir: string;
const services = new Set<ServiceProcess>();

async function spawnWorker(): Promise<ServiceProcess> {
  const p = await spawnService('worker', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FIXTURES,
    WORKER_LEASE_GRACE_MS: '1000',
    POLL_INTERVAL_MS: '200',
  });
  services.add(p);
  return p;
}

beforeAll(async () => {
  if (!SLOW_TESTS) return;
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'stream-procs-'));
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.runIf(SLOW_TESTS)(once('worker processes'), () => {
  it('a shard whose batch died with its worker (SIGKILL) is resumed by another worker from the checkpoint', { timeout: 120_000 }, async () => {
    const a = await spawnWorker(); // registers the fixtures as functions
    const marker = path.join(dir, 'batch-running');
    await createStream(t.db, { name: 'events', shardCount: 1 });
    await putRecords(t.db, 'events', Array.from({ length: 10 }, (_, i) => ({ partitionKey: 'k', data: json(i === 5 ? { i, marker } : { i }) })));
    const m = await createStreamMapping(t.db, { streamName: 'events', functionName: 'stream-slow-first', startingPosition: 'TRIM_HORIZON', batchSize: 5 });

    await waitFor('the second batch running in worker A', async () => existsSync(marker), 30_000);
    expect((await listCheckpoints(t.db, m.id))[0]?.sequenceNumber).toBe(5);
    await endProcess(a, 'SIGKILL');
    expect(a.child.signalCode).toBe('SIGKILL');

    const b = await spawnWorker();
    await waitFor('the shard checkpointed at its last record by worker B', async () => (await listCheckpoints(t.db, m.id))[0]?.sequenceNumber === 10, 30_000);
    const batches = await waitFor(
      'the lost batch ended by the lease reaper',
      async () => {
        const list = await deliveredBatches(t.db, m.id);
        return list.length === 3 && list.every((x) => x.status !== 'running') ? list : null;
      },
      30_000,
    );
    expect(batches.map((x) => [x.status, x.first, x.last])).toEqual([
      ['succeeded', 1, 5],
      ['failed', 6, 10],
      ['succeeded', 6, 10],
    ]);
    const lost = await getInvocation(t.db, batches[1]?.invocationId as string);
    expect(lost?.error?.errorType).toBe('WorkerLost');
    expect(lost?.events.map((e) => e.type)).toEqual(['accepted', 'started', 'failed']);
    // the auditor's answer: record 3 once, record 6 twice (lost, then processed)
    expect((await deliveriesOfRecord(t.db, 'events', 'shardId-000000000000', 3)).map((d) => d.status)).toEqual(['succeeded']);
    expect((await deliveriesOfRecord(t.db, 'events', 'shardId-000000000000', 6)).map((d) => [d.status, d.checkpointReason])).toEqual([
      ['failed', null],
      ['succeeded', 'processed'],
    ]);
    await endProcess(b);
  });

  it('a tumbling window goes on with the state stored on its checkpoint after its worker is SIGKILLed', { timeout: 120_000 }, async () => {
    // a 900-second window: stay clear of its boundary so all records fall in one window
    await waitFor('not within 20 s of a 900-second boundary', async () => Date.now() % 900_000 < 880_000, 30_000);
    const a = await spawnWorker();
    await createStream(t.db, { name: 'windowed', shardCount: 1 });
    const m = await createStreamMapping(t.db, { streamName: 'windowed', functionName: 'stream-window', startingPosition: 'TRIM_HORIZON', tumblingWindowInSeconds: 900 });
    await putRecords(t.db, 'windowed', [1, 2, 3].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    await waitFor('the first batch checkpointed with its state by worker A', async () => (await listCheckpoints(t.db, m.id))[0]?.window?.state.count === 3, 30_000);
    await endProcess(a, 'SIGKILL');
    expect(a.child.signalCode).toBe('SIGKILL');

    await putRecords(t.db, 'windowed', [4, 5].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    const b = await spawnWorker();
    await waitFor('the second batch checkpointed by worker B', async () => (await listCheckpoints(t.db, m.id))[0]?.sequenceNumber === 5, 30_000);
    const { rows } = await sql<{ state: unknown; result: unknown }>`
      select a.data -> 'payload' -> 'state' as state,
        (select s.data -> 'result' -> 'state' from ledger.events s where s.invocation_id = b.invocation_id and s.type = 'succeeded') as result
      from ledger.stream_batches b join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
      where b.mapping_id = ${m.id}::uuid order by a.position`.execute(t.db);
    expect(rows).toEqual([
      { state: {}, result: { sum: 6, count: 3 } },
      { state: { sum: 6, count: 3 }, result: { sum: 15, count: 5 } },
    ]);
    expect((await listCheckpoints(t.db, m.id))[0]?.window?.state).toEqual({ sum: 15, count: 5 });
    await endProcess(b);
  });
});
