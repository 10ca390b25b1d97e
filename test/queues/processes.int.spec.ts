// At-least-once across a killed worker process: worker A (`invoke-ledger start --role
// worker`) receives a batch and is SIGKILLed mid-invocation; after the visibility
// timeout worker B receives the same messages and processes them; B's lease reaper
// ends A's poll invocation as failed (WorkerLost).
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInvocation } from '../../db/invocations.ts';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { FIXTURES, pollInvocations, remainingMessages, waitFor } from './helpers.ts';


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
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'queue-procs-'));
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await rm(dir, { recursive: true, force: true });
});

describe('worker processes', () => {
  it('messages of a batch whose worker was SIGKILLed are delivered again to another worker', { timeout: 120_000 }, async () => {
    const a = await spawnWorker(); // registers the fixtures as functions
    const marker = path.join(dir, 'batch-1-running');
    await createQueue(t.db, { name: 'orders', visibilityTimeoutSeconds: 8, maxReceiveCount: 5 }); // ≥ slow-first's timeout
    const ids = await sendMessages(t.db, 'orders', [1, 2, 3, 4, 5].map((n) => ({ body: { n, marker } })));
    await createEventSourceMapping(t.db, { queueName: 'orders', functionName: 'slow-first', batchSize: 10 });

    await waitFor('the batch running in worker A', async () => existsSync(marker) && readFileSync(marker, 'utf8').split('\n').length === 5, 30_000);
    await endProcess(a, 'SIGKILL');
    expect(a.child.signalCode).toBe('SIGKILL');

    const b = await spawnWorker();
    await waitFor('the queue drained by worker B', async () => (await remainingMessages(t.db, 'orders')) === 0, 30_000);
    // worker B's reaper ends A's poll invocation once its lease (timeout 8 s + grace 1 s) expires
    const [lost, redelivered] = await waitFor(
      'both poll invocations ended',
      async () => {
        const list = await pollInvocations(t.db, 'slow-first');
        return list.length === 2 && list.every((i) => i.status !== 'running') ? list : null;
      },
      30_000,
    );
    expect(lost).toMatchObject({ status: 'failed', errorType: 'WorkerLost', messageIds: ids, receiveCounts: [1, 1, 1, 1, 1] });
    expect(lost?.workerId).toContain(`:${a.child.pid}:`);
    expect(redelivered).toMatchObject({ status: 'succeeded', messageIds: ids, receiveCounts: [2, 2, 2, 2, 2], result: { processed: ids } });
    expect(redelivered?.workerId).toContain(`:${b.child.pid}:`);
    const view = await getInvocation(t.db, lost?.id as string);
    expect(view?.events.map((e) => e.type)).toEqual(['accepted', 'started', 'failed']);
    expect(view?.error?.errorMessage).toContain(lost?.workerId);

    await endProcess(b);
  });
});
