// The sealer as it runs in production: a background task of real worker processes
// (`invoke-ledger start --role worker` with a signing key). Two of them seal at once, one
// is SIGKILLed mid-stream and a new one takes over, a witness fails and gets the newest
// head later; in the end every event is sealed once, every published head is valid, and
// the standalone verifier finds the ledger consistent with all of them.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireFunction } from '../../db/functions.ts';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { checkTreeHead, loadPublicKey } from '../../tools/verify-ledger.mjs';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { invokeAsync, waitFor } from '../worker/helpers.ts';
import { testKey, verify } from './helpers.ts';

const PROCS_DIR = fileURLToPath(new URL('../worker/fixtures/procs/', import.meta.url));

let t: TestDatabase;
let dir: string;
let witness: Listening;
const received: TreeHead[] = [];
let refuseNext = 2;
const services = new Set<ServiceProcess>();
const signing = testKey();

async function spawnWorker(): Promise<ServiceProcess> {
  const p = await spawnService('worker', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: PROCS_DIR,
    LEDGER_SIGNING_KEY_FILE: path.join(dir, 'key.pem'),
    LEDGER_WITNESSES: `file:${dir}/heads.jsonl,${witness.url}/heads`,
    LEDGER_SEAL_INTERVAL_MS: '50',
    LEDGER_TREE_HEAD_INTERVAL_MS: '200',
    POLL_INTERVAL_MS: '200',
    // the killed worker's attempts are recovered after this, not the default 30 s
    WORKER_LEASE_GRACE_MS: '1000',
  });
  services.add(p);
  return p;
}

const countEvents = async () => (await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(t.db)).rows[0]!.n;
const latestHead = async () =>
  (await sql<{ n: string }>`select tree_size::text as n from ledger.tree_heads order by id desc limit 1`.execute(t.db)).rows[0]?.n;

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'sealer-procs-'));
  await writeFile(path.join(dir, 'key.pem'), signing.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  // a witness that refuses its first two heads (500) and keeps the rest
  const app = new Hono().post('/heads', async (c) => {
    if (refuseNext > 0) {
      refuseNext--;
      return c.text('not now', 500);
    }
    received.push(await c.req.json());
    return c.body(null, 204);
  });
  witness = await listen(app.fetch);
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await witness?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the sealer in worker processes', () => {
  it('two workers seal and sign while draining; one is killed, another takes over; nothing is lost or sealed twice', async () => {
    const a = await spawnWorker();
    const b = await spawnWorker();
    const noop = await requireFunction(t.db, 'noop');
    await invokeAsync(t.db, noop, Array.from({ length: 1500 }, (_, i) => ({ i })));
    // kill one worker once sealing is under way: whatever it had not committed is sealed by the others
    await waitFor('sealing under way', async () => Number(await latestHead()) > 0, 60_000);
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    services.delete(a);
    const c = await spawnWorker();
    await invokeAsync(t.db, noop, Array.from({ length: 500 }, (_, i) => ({ i })));
    await waitFor(
      'every invocation done and every event in a signed head',
      async () => {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.queue`.execute(t.db);
        return rows[0]!.n === 0 && Number(await latestHead()) === (await countEvents());
      },
      120_000,
    );
    const events = await countEvents();
    // 3 per invocation, and more for attempts the killed worker lost (retried elsewhere)
    expect(events).toBeGreaterThanOrEqual(2000 * 3);

    // each event sealed exactly once
    const { rows } = await sql<{ n: number; distinct: number }>`
      select count(*)::int as n, count(distinct position)::int as distinct from audit.merkle_leaves`.execute(t.db);
    expect(rows[0]).toMatchObject({ n: events, distinct: events });

    // the file witness: every head valid, sizes never going back; the HTTP witness caught up
    const key = loadPublicKey(signing.publicKeyPem);
    const heads = (await readFile(path.join(dir, 'heads.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as TreeHead);
    expect(heads.length).toBeGreaterThanOrEqual(1);
    for (const h of heads) expect(checkTreeHead(h, key)).toBe('valid');
    const { rows: stored } = await sql<{ tree_size: string }>`select tree_size::text from ledger.tree_heads order by id`.execute(t.db);
    const sizes = stored.map((r) => Number(r.tree_size));
    expect(sizes).toEqual([...sizes].sort((x, y) => x - y));
    await waitFor('the refusing witness has the newest head', async () => received.at(-1)?.treeSize === events, 30_000);

    // and the auditor, holding every head from both witnesses, finds the ledger intact
    const report = await verify(t, [...heads, ...received], signing.publicKeyPem);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);

    await Promise.all([b, c].map((p) => endProcess(p)));
    expect(b.output()).toMatch(/sealer started/);
  }, 240_000);
});
