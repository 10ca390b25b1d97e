// URL destinations under hostile targets: an answer of half a gigabyte is never read, a
// target that hangs holds only its own few slots (a healthy target's delivery goes out
// meanwhile), and a failing target rests while the others carry on.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listDestinationDeliveries } from '../../apps/worker/index.ts';
import { insertDeliveries } from '../../db/destinations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startWorker, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
const servers: http.Server[] = [];
const workers: RunningWorker[] = [];
const hanging = new Set<http.ServerResponse>();

beforeAll(async () => {
  t = await createTestDatabase();
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});
afterAll(async () => {
  for (const r of hanging) r.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** Delivery rows as a terminal event would leave them: pending, due now, oldest first. */
async function due(urls: string[]): Promise<string[]> {
  const ids = urls.map(() => randomUUID());
  for (let i = 0; i < urls.length; i++) {
    await insertDeliveries(t.db, [
      { invocationId: ids[i] as string, invokeCount: 1, condition: 'Success', destination: urls[i] as string, record: { n: i }, status: 'pending', targetInvocationId: null, lastError: null },
    ]);
  }
  return ids;
}

const deliveryOf = async (invocationId: string) => (await listDestinationDeliveries(t.db, { invocationId }))[0];

describe('destination isolation', () => {
  it('a 512 MB answer is not read: the delivery is recorded and the connection dropped after a few MB', { timeout: 120_000 }, async () => {
    const LIMIT = 512 << 20;
    const sent = { bytes: 0, closed: false };
    const url = await serve((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(1 << 20, 120);
        const pump = () => {
          while (sent.bytes < LIMIT && !res.destroyed) {
            sent.bytes += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        res.on('close', () => (sent.closed = true));
        pump();
      });
    });
    workers.push(await startWorker(t.db, t.url, { deliveryIntervalMs: 50, delivery: { timeoutMs: 60_000 } }));
    const [id] = await due([`${url}/huge`]);
    const d = await waitFor('delivered', async () => ((await deliveryOf(id as string))?.status === 'delivered' ? deliveryOf(id as string) : null), 60_000);
    expect(d?.lastStatusCode).toBe(200);
    await waitFor('the connection to close', async () => sent.closed, 60_000);
    // what the socket buffers took before the client let go, not the body
    expect(sent.bytes).toBeLessThan(64 << 20);
  });

  it('40 deliveries to a target that hangs do not delay a healthy one', { timeout: 180_000 }, async () => {
    let arrived = 0;
    const slow = await serve((req, res) => {
      arrived++;
      hanging.add(res); // never answered while the test runs
    });
    const healthy = await serve((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    workers.push(
      await startWorker(t.db, t.url, { deliveryIntervalMs: 50, delivery: { timeoutMs: 120_000, perTargetConcurrency: 4, maxConcurrency: 32 } }),
    );
    const stuck = await due(Array.from({ length: 40 }, (_, i) => `${slow}/hang/${i}`));
    const [ok] = await due([`${healthy}/ok`]);
    await waitFor('the healthy delivery', async () => (await deliveryOf(ok as string))?.status === 'delivered', 90_000);
    // the hanging target holds its own 4 slots; none of its POSTs has even timed out yet
    expect(arrived).toBeLessThanOrEqual(4);
    const rows = await Promise.all(stuck.map(deliveryOf));
    expect(rows.every((r) => r?.status === 'pending' && r.lastError === null)).toBe(true);
  });

  it('a failing target rests (its other deliveries wait) while the others go out', { timeout: 120_000 }, async () => {
    let failing = 0;
    const bad = await serve((req, res) => {
      failing++;
      req.resume();
      req.on('end', () => res.writeHead(500).end('no'));
    });
    const good = await serve((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    workers.push(
      await startWorker(t.db, t.url, {
        deliveryIntervalMs: 50,
        delivery: { perTargetConcurrency: 2, targetBackoffBaseMs: 600_000, baseDelayMs: 600_000, timeoutMs: 30_000 },
      }),
    );
    const badIds = await due(Array.from({ length: 10 }, (_, i) => `${bad}/x/${i}`));
    const [first] = await due([`${good}/1`]);
    await waitFor('the first healthy delivery', async () => (await deliveryOf(first as string))?.status === 'delivered', 60_000);
    await waitFor('two failed POSTs recorded', async () => (await Promise.all(badIds.map(deliveryOf))).filter((r) => r?.lastError === 'HTTP 500').length === 2, 60_000);
    // more healthy work, claimed while the failing target rests
    const [second] = await due([`${good}/2`]);
    await waitFor('the second healthy delivery', async () => (await deliveryOf(second as string))?.status === 'delivered', 60_000);
    expect(failing).toBe(2);
    const rows = await Promise.all(badIds.map(deliveryOf));
    expect(rows.filter((r) => r?.attempts === 0)).toHaveLength(8);
  });
});
