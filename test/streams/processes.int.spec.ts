// A worker process SIGKILLed mid-batch (docs/streams.md): another worker resumes the
// shard from the last checkpoint once the lost batch's hold runs out; the batch runs again
// (at-least-once) and the ledger shows both attempts, the lost one ended as WorkerLost.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
});
