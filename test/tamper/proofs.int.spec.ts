// Tamper evidence at the edges: tree heads signed on demand over HTTP and published to a
// witness; inclusion and consistency proofs over HTTP, GraphQL and the CLI, each checked
// by the standalone verifier with only the tree heads and the public key; the CLI's
// key, tree-head and verify commands as real processes.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { treeHeadSigner, witnessesOf } from '../../apps/cli/tamper.ts';
import { createFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { readSealState } from '../../db/tamper/store.ts';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { loadPublicKey, verifyConsistencyProof, verifyInclusionProof, type LeafEvent } from '../../tools/verify-ledger.mjs';
import { runAuditWorkload } from '../audit/workload.ts';
import { FIXTURES } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { bearer, createKeys, gql, type Keys } from '../security/helpers.ts';
import { sealAll, testKey } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let keys: Keys;
let dir: string;
let invocationId: string;
const signing = testKey();
const silent = pino({ level: 'silent' });

beforeAll(async () => {
  t = await createTestDatabase();
  await runAuditWorkload(t.db);
  keys = await createKeys(t.db);
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-witness-'));
  await writeFile(path.join(dir, 'key.pub.pem'), signing.publicKeyPem);
  await writeFile(path.join(dir, 'key.pem'), signing.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  runtimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 1 });
  const { app } = composeApi({
    db: t.db,
    instanceId: 'proofs-test',
    runtimes,
    logger: silent,
    functionsDir: FIXTURES,
    auth: { enabled: true, cacheTtlMs: 0 },
    treeHeadSigner: treeHeadSigner(t.db, signing.key, witnessesOf({ LEDGER_WITNESSES: `file:${dir}/heads.jsonl` }), 'proofs-test', silent),
  });
  server = await listen(app.fetch);
  const { rows } = await t.pool.query<{ id: string }>(`select id::text from ledger.invocations where status = 'succeeded' and attempts > 1 limit 1`);
  invocationId = rows[0]!.id;
});

afterAll(async () => {
  await server?.close();
  await runtimes?.close();
});

const get = async (p: string, key = keys.audit) => {
  const res = await fetch(`${server.url}${p}`, { headers: bearer(key) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: { code: string } } };
};
const signNow = async () => {
  const res = await fetch(`${server.url}/audit/tree-heads`, { method: 'POST', headers: bearer(keys.audit) });
  return { status: res.status, head: (await res.json()) as TreeHead };
};
const publicKey = () => loadPublicKey(signing.publicKeyPem);
const eventCount = async () => (await t.pool.query<{ n: number }>('select count(*)::int as n from ledger.events')).rows[0]!.n;

/**
 * POST until the head covers every event committed so far. Sealing waits for every older
 * transaction on the server to end (other test files' bulk loads included), so a first
 * answer may cover fewer events, or none yet (409).
 */
async function signCoveringAll(): Promise<{ status: number; head: TreeHead }> {
  const n = await eventCount();
  for (;;) {
    const r = await signNow();
    if ((r.status === 201 || r.status === 200) && r.head.treeSize === n) return r;
    expect([200, 201, 409]).toContain(r.status);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
/** waits on other sessions' transactions (see signCoveringAll): a cap, not a timing assertion */
const SEALING_TEST_MS = 120_000;

describe('tree heads on demand', () => {
  it('POST seals what is committed, signs, stores and publishes a head; again with nothing new, the same head', async () => {
    expect((await get('/audit/tree-heads/latest')).body.error?.code).toBe('TreeHeadNotFound');
    const first = await signCoveringAll();
    const n = await eventCount();
    expect(first.head.treeSize).toBe(n);
    expect(first.head.keyId).toBe(signing.key.keyId);
    const again = await signNow();
    expect(again).toEqual({ status: 200, head: first.head });
    expect((await get('/audit/tree-heads/latest')).body).toEqual(first.head);
    const listed = (await get('/audit/tree-heads')).body.treeHeads as TreeHead[];
    expect(listed[0]).toEqual(first.head);
    // the witness file holds exactly what was published, one head per line, the newest last
    expect((await readFile(path.join(dir, 'heads.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))).toEqual([...listed].reverse());
    const status = (await get('/audit/seal')).body;
    expect(status).toMatchObject({ treeSize: n, unsealed: 0, latestTreeHead: first.head });
  }, SEALING_TEST_MS);
});

describe('inclusion proofs', () => {
  it('an invocation: every event proven in the latest head, O(log n) hashes, checked with only the head and the key', async () => {
    const head = (await get('/audit/tree-heads/latest')).body as unknown as TreeHead;
    const { status, body } = await get(`/audit/invocations/${invocationId}/proof`);
    expect(status).toBe(200);
    const proof = body as unknown as { treeHead: TreeHead; events: { leafIndex: number; auditPath: string[]; event: LeafEvent }[]; notCovered: unknown[] };
    expect(proof.treeHead).toEqual(head);
    expect(proof.notCovered).toEqual([]);
    expect(proof.events.length).toBeGreaterThanOrEqual(4);
    for (const e of proof.events) expect(e.auditPath.length).toBeLessThanOrEqual(Math.ceil(Math.log2(head.treeSize)));
    expect(verifyInclusionProof(proof, head, publicKey())).toMatchObject({ ok: true, verified: proof.events.length });
    // the events in the proof are the invocation's events as the API shows them
    const record = (await get(`/invocations/${invocationId}`)).body as { events: { seq: number; type: string; data: unknown }[] };
    expect(proof.events.map((e) => [e.event.seq, e.event.type, e.event.data])).toEqual(record.events.map((e) => [e.seq, e.type, e.data]));
  });

  it('one event, in an older size; refusals are typed', async () => {
    const { body } = await get(`/audit/invocations/${invocationId}/proof`);
    const position = (body.events as { position: string }[])[0]!.position;
    const p = await get(`/audit/events/${position}/proof?treeSize=300`);
    if ((p.body.leafIndex as number) < 300) {
      expect(p.status).toBe(200);
      expect(p.body.treeSize).toBe(300);
      expect(p.body.treeHead).toBeNull(); // no head was signed at size 300: the proof is only as good as a root you trust
    }
    const state = await readSealState(t.db);
    expect((await get(`/audit/events/${position}/proof?treeSize=${state.treeSize + 1}`)).body.error?.code).toBe('NotYetSealed');
    expect((await get(`/audit/events/${position}/proof?treeSize=abc`)).status).toBe(400);
    expect((await get('/audit/events/999999999/proof')).body.error?.code).toBe('EventNotFound');
    expect((await get('/audit/invocations/00000000-0000-0000-0000-000000000000/proof')).status).toBe(404);
    expect((await get('/audit/invocations/not-a-uuid/proof')).status).toBe(400);
    expect((await get('/audit/consistency')).status).toBe(400);
    expect((await get('/audit/tree-heads/latest', keys.invoke)).status).toBe(403);
  });

  it('events appended after the head are listed as not covered, then proven in the next head', async () => {
    const fn = await createFunction(t.db, 'late', { runtime: 'MODULE', handler: 'echo.ts' });
    const [late] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: { late: true } }]);
    const before = await get(`/audit/invocations/${late!.invocationId}/proof`);
    expect(before.status).toBe(200);
    expect(before.body.events).toEqual([]);
    expect(before.body.notCovered).toEqual([{ position: expect.any(String), seq: 1 }]);
    const next = await signCoveringAll();
    expect(next.status).toBe(201);
    const after = (await get(`/audit/invocations/${late!.invocationId}/proof`)).body;
    expect(verifyInclusionProof(after as never, next.head, publicKey())).toMatchObject({ ok: true, verified: 1 });
  }, SEALING_TEST_MS);
});

describe('consistency proofs', () => {
  it('between the two published heads, over HTTP and GraphQL', async () => {
    const heads = ((await get('/audit/tree-heads')).body.treeHeads as TreeHead[]).reverse();
    expect(heads.length).toBeGreaterThanOrEqual(2);
    const [older, newer] = [heads[0], heads.at(-1)] as [TreeHead, TreeHead];
    const http = (await get(`/audit/consistency?from=${older.treeSize}&to=${newer.treeSize}`)).body as { proof: string[]; fromTreeHead: TreeHead; toTreeHead: TreeHead };
    expect(http).toMatchObject({ fromTreeHead: older, toTreeHead: newer });
    expect(verifyConsistencyProof(http, older, newer, publicKey())).toEqual({ ok: true, problems: [] });
    // a proof between other sizes does not link these heads
    const wrong = (await get(`/audit/consistency?from=${older.treeSize - 1}&to=${newer.treeSize}`)).body as { proof: string[] };
    expect(verifyConsistencyProof(wrong, older, newer, publicKey()).ok).toBe(false);

    const q = await gql(
      server.url,
      `{ consistencyProof(fromSize: ${older.treeSize}) { fromSize toSize fromRoot toRoot proof toTreeHead { treeSize rootHash signature } } }`,
      bearer(keys.audit),
    );
    expect(q.body.errors).toBeUndefined();
    const g = q.body.data?.consistencyProof as { proof: string[]; toSize: number; toTreeHead: { rootHash: string } };
    expect(g.toSize).toBe(newer.treeSize);
    expect(g.proof).toEqual(http.proof);
    expect(g.toTreeHead.rootHash).toBe(newer.rootHash);
  });
});

describe('GraphQL', () => {
  it('treeHead and invocationProof give what HTTP gives, and the proof verifies', async () => {
    const q = await gql(
      server.url,
      `{ treeHead { treeSize timestamp time rootHash keyId signature }
         invocationProof(id: "${invocationId}") { invocationId treeSize rootHash notCovered { seq }
           treeHead { treeSize timestamp rootHash keyId signature }
           events { position leafIndex leafHash auditPath event { invocationId seq type attempt occurredAt data } } } }`,
      bearer(keys.audit),
    );
    expect(q.body.errors).toBeUndefined();
    const data = q.body.data as { treeHead: TreeHead & { time: string }; invocationProof: { treeHead: TreeHead; events: unknown[] } };
    const latest = (await get('/audit/tree-heads/latest')).body as unknown as TreeHead;
    expect(data.treeHead).toEqual({ ...latest, time: new Date(latest.timestamp).toISOString() });
    const http = (await get(`/audit/invocations/${invocationId}/proof`)).body;
    expect(data.invocationProof).toEqual({ ...http, treeHead: latest });
    expect(verifyInclusionProof(data.invocationProof as never, data.invocationProof.treeHead, publicKey()).ok).toBe(true);
  });

  it('needs the audit scope and reports typed errors', async () => {
    const denied = await gql(server.url, '{ treeHead { treeSize } }', bearer(keys.invoke));
    expect(denied.body.errors?.[0]?.extensions?.code).toBe('Forbidden');
    const missing = await gql(server.url, '{ invocationProof(id: "00000000-0000-0000-0000-000000000000") { treeSize } }', bearer(keys.audit));
    expect(missing.body.errors?.[0]?.extensions?.code).toBe('InvocationNotFound');
    const bad = await gql(server.url, `{ invocationProof(id: "${invocationId}", treeSize: 1.5) { treeSize } }`, bearer(keys.audit));
    expect(bad.body.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
  });
});

describe('the CLI, as processes', () => {
  const cli = async (args: string[], env: Record<string, string> = {}) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'apps/cli/main.ts', ...args], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'warn', ...env },
      });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };

  // each spawns the CLI (tsx start-up is seconds on a busy machine): a generous cap, not a timing assertion
  const PROCESS_TEST_MS = 120_000;

  it('keys signing writes a private key only its owner reads, and refuses to overwrite it', async () => {
    const out = path.join(dir, 'made.pem');
    const made = await cli(['keys', 'signing', '--out', out]);
    expect(made.code).toBe(0);
    expect(made.stdout).toContain('-----BEGIN PUBLIC KEY-----');
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dir, 'made.pub.pem'), 'utf8')).toContain('-----BEGIN PUBLIC KEY-----');
    expect((await cli(['keys', 'signing', '--out', out])).code).toBe(1);
  }, PROCESS_TEST_MS);

  it('tree-head seals, signs and publishes to a directory witness; without a key it says so', async () => {
    const fn = await createFunction(t.db, 'cli', { runtime: 'MODULE', handler: 'echo.ts' });
    await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: { cli: 1 } }]);
    await sealAll(t.db); // wait out other sessions' transactions here, so the CLI's head is a new one
    const signed = await cli(['tree-head'], { LEDGER_SIGNING_KEY_FILE: path.join(dir, 'key.pem'), LEDGER_WITNESSES: `dir:${dir}/heads` });
    expect(signed.code).toBe(0);
    const head = JSON.parse(signed.stdout) as TreeHead & { created: boolean };
    expect(head.created).toBe(true);
    const files = await readdir(path.join(dir, 'heads'));
    expect(files).toEqual([`${String(head.treeSize).padStart(12, '0')}-${head.timestamp}.json`]);
    await writeFile(path.join(dir, 'head.json'), await readFile(path.join(dir, 'heads', files[0]!), 'utf8'));
    expect((await cli(['tree-head'])).stderr).toMatch(/no signing key/);
  }, PROCESS_TEST_MS);

  it('proof prints a proof that the standalone script accepts with only the head and the key', async () => {
    const proof = await cli(['proof', '--invocation', invocationId]);
    expect(proof.code).toBe(0);
    await writeFile(path.join(dir, 'proof.json'), proof.stdout);
    const script = await run(process.execPath, ['tools/verify-ledger.mjs', 'proof', '--proof', path.join(dir, 'proof.json'), '--tree-head', path.join(dir, 'head.json'), '--public-key', path.join(dir, 'key.pub.pem')], { cwd: ROOT });
    expect(script.stdout).toMatch(/event\(s\) proven in the tree head of size/);
    expect((await cli(['proof'])).code).toBe(1);
  }, PROCESS_TEST_MS);

  it('verify --tree-head checks the ledger against every head of both witnesses', async () => {
    const verified = await cli(['verify', '--tree-head', path.join(dir, 'heads.jsonl'), '--tree-head', path.join(dir, 'head.json'), '--public-key', path.join(dir, 'key.pub.pem')]);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/the ledger matches every tree head/);
    const published = (await readFile(path.join(dir, 'heads.jsonl'), 'utf8')).trim().split('\n').length;
    expect(verified.stdout.match(/signature valid, reproduced by the events/g)).toHaveLength(published + 1);
  }, PROCESS_TEST_MS);
});
