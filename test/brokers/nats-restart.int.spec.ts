// A NATS server that dies mid-run and comes back: this test runs its own nats-server
// (JetStream, file storage in a temporary directory, a free port), SIGKILLs it while
// batches flow, and starts it again on the same port and store. The mapping reports the
// error, backs off, reconnects, and the ledger records every message processed exactly
// once: a batch recorded just before the kill, whose ack never arrived, is redelivered
// and recognised by its stream sequence instead of being invoked again.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcp } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createBrokerMapping, getBrokerMapping } from '../../db/brokers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, processedBodies, SLOW_BROKER_TESTS, once, startSources, terminal, waitFor } from './helpers.ts';

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

let t: TestDatabase;
let runtimes: Runtimes;
let dir: string;
let port: number;
let server: ChildProcess | null = null;
let sources: Awaited<ReturnType<typeof startSources>>;

const answers = (p: number) =>
  new Promise<boolean>((resolve) => {
    const s = tcp(p, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

async function startServer(): Promise<void> {
  server = spawn(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: 'ignore' });
  await waitFor('nats-server answers', () => answers(port), 30_000);
}

async function killServer(): Promise<void> {
  const s = server;
  server = null;
  if (!s || s.exitCode !== null) return;
  const exited = new Promise((resolve) => s.once('exit', resolve));
  s.kill('SIGKILL');
  await exited;
}

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = brokerRuntimes();
  dir = await mkdtemp(path.join(tmpdir(), 'nats-restart-'));
  port = await freePort();
  await startServer();
  sources = await startSources(t.db, runtimes);
});

afterAll(async () => {
  await sources?.stop();
  await killServer();
  await runtimes?.close();
  await rm(dir, { recursive: true, force: true });
});

describe.runIf(SLOW_BROKER_TESTS)(once('a NATS server killed mid-run'), () => {
  it('loses nothing and records nothing twice', { timeout: 300_000 }, async () => {
    const url = `nats://127.0.0.1:${port}`;
    const n = 3_000;
    const nc: NatsConnection = await connect({ servers: `127.0.0.1:${port}` });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: 'restart', subjects: ['restart.>'] });
    const js = nc.jetstream();
    for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => js.publish(`restart.${(i + k) % 3}`, Buffer.from(JSON.stringify({ n: i + k })))));
    await nc.close();

    await brokerFunction(t.db, 'nats-restart');
    const m = await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'nats', url, stream: 'restart', functionName: 'nats-restart', batchSize: 50, maxBatchingWindowMs: 50 });
    const processed = async () => processedBodies(await brokerBatches(t.db, 'nats-restart')).length;
    await waitFor('batches flowing', async () => (await processed()) > 300, 60_000);

    await killServer();
    await waitFor('the mapping reports the error', async () => (await getBrokerMapping(t.db, m.id))?.state === 'Error', 60_000);
    const during = await processed();
    await startServer();
    await waitFor('reconnected', async () => (await getBrokerMapping(t.db, m.id))?.state === 'Enabled', 60_000);

    const batches = await waitFor(
      'all processed',
      async () => {
        const b = await brokerBatches(t.db, 'nats-restart');
        return new Set(processedBodies(b).map((x) => x.n)).size >= n && b.every((x) => terminal(x.status)) ? b : null;
      },
      180_000,
    );
    expect(during).toBeLessThan(n); // the kill happened mid-run
    const seen = processedBodies(batches).map((b) => b.n as number);
    expect(new Set(seen).size).toBe(n);
    expect(seen.length).toBe(n);
    // per subject, in stream order, across the restart
    for (const s of [0, 1, 2]) {
      const ns = seen.filter((x) => x % 3 === s);
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
    }
  });

  it('a worker stops while its NATS server is down: nothing waits on the dead connection', { timeout: 120_000 }, async () => {
    const own = await startSources(t.db, runtimes);
    const nc = await connect({ servers: `127.0.0.1:${port}` });
    const js = nc.jetstream();
    await (await nc.jetstreamManager()).streams.add({ name: 'down', subjects: ['down.>'] });
    await Promise.all(Array.from({ length: 2_000 }, (_, i) => js.publish(`down.${i % 3}`, Buffer.from(JSON.stringify({ n: i })))));
    await nc.close();
    await brokerFunction(t.db, 'nats-down');
    await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'nats', url: `nats://127.0.0.1:${port}`, stream: 'down', functionName: 'nats-down', batchSize: 50, maxBatchingWindowMs: 50 });
    await waitFor('batches flowing', async () => processedBodies(await brokerBatches(t.db, 'nats-down')).length > 100, 60_000);
    await killServer();
    // both source sets stop; a wait left on the dead connection would hold stop() forever
    const stopped = Promise.all([own.stop(), sources.stop()]).then(() => 'stopped');
    const outcome = await Promise.race([stopped, new Promise((r) => setTimeout(() => r('still waiting after 60 s'), 60_000))]);
    expect(outcome).toBe('stopped');
    await startServer();
    sources = await startSources(t.db, runtimes);
  });
});
