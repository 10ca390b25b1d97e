// Secrets in a function's URL never reach the permanent record. Credentials in a URL
// (user:password@) are refused at registration, wherever a function is registered; query
// strings and credentials are stripped from every error text a runtime produces before it
// is written; keys without `admin` see function URLs without their query values. End to
// end: failing functions whose URL or error carried a secret, sync and async (worker,
// retries, dead letter), and then a search for the secret in ledger.events, attempt logs,
// projections, every audit view, and every GraphQL and HTTP answer.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorker, type Worker } from '../../apps/worker/index.ts';
import { createFunction, updateFunction, upsertFunction } from '../../db/functions.ts';
import { getInvocation } from '../../db/invocations.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { LEAKED_PASSWORD, LEAKED_TOKEN } from '../api/fixtures/leaky-url.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, gql, startSecureApi, type SecureApi } from './helpers.ts';

const QUERY_SECRET = `q-${randomBytes(10).toString('hex')}`;
const USER_SECRET = `u-${randomBytes(10).toString('hex')}`;
const SECRETS = [QUERY_SECRET, USER_SECRET, LEAKED_PASSWORD, LEAKED_TOKEN];

let t: TestDatabase;
let api: SecureApi;
let worker: Worker;
let endpoint: Server;
let base: string;
let closedPort: number;
let admin: CreatedApiKey;
let audit: CreatedApiKey;
const answers: string[] = [];

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => resolve(body));
  });

async function until<T>(probe: () => Promise<T | null | undefined | false>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A function version written straight into the registry, as one registered before URL checks existed. */
async function legacyHttpFunction(name: string, url: string): Promise<void> {
  const owner = t.open({ role: '' });
  const config = { runtime: 'HTTP', handler: null, url, timeoutMs: 3000, memoryMb: 256, maxRetries: 0, retryBaseDelayMs: 0, retryMaxDelayMs: 0,
    maxEventAgeSeconds: 21600, reservedConcurrency: null, onSuccess: null, onFailure: null, isolation: 'thread', secret: null, codeHash: null };
  await sql`insert into ledger.functions (name, latest_version) values (${name}, 1)`.execute(owner.db);
  await sql`insert into ledger.function_versions (name, version, config) values (${name}, 1, ${JSON.stringify(config)}::jsonb)`.execute(owner.db);
}

beforeAll(async () => {
  t = await createTestDatabase();
  endpoint = createServer(async (req, res) => {
    await readBody(req);
    // a careless endpoint: its error page repeats the request line, query string and all
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`cannot handle POST ${req.url} (auth ${req.headers.authorization ?? 'none'})`);
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));

  const logger = pino({ level: 'silent' });
  api = await startSecureApi(t.db, { logger });
  worker = createWorker({
    db: t.db,
    databaseUrl: t.ownerUrl,
    runtimes: api.runtimes,
    logger,
    registry: api.registry,
    workerId: 'url-secrets-test',
    concurrency: 2,
    claimBatchSize: 10,
    pollIntervalMs: 50,
    deliveryIntervalMs: 50,
  });
  await worker.start();
  admin = await createApiKey(t.db, { scopes: ['invoke', 'admin', 'audit'] });
  audit = await createApiKey(t.db, { scopes: ['audit'] });
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await new Promise<void>((resolve) => (endpoint ? endpoint.close(() => resolve()) : resolve()));
});

describe('credentials in a URL are refused at registration', () => {
  const url = () => `http://svc:${USER_SECRET}@127.0.0.1:1/ok`;

  it('GraphQL createFunction and updateFunction: InvalidFunctionConfig, pointing to the signing secret, without echoing the password', async () => {
    for (const [input, advice] of [
      [`url: "${url()}"`, /set the function's secret/],
      [`url: "${base}/ok", onSuccess: "${url()}"`, /function: destination/],
      [`url: "${base}/ok", onFailure: "${url()}"`, /function: destination/],
    ] as const) {
      const r = await gql(api.url, `mutation { createFunction(input: {name: "creds", runtime: HTTP, ${input}}) { name } }`, bearer(admin));
      expect(r.body.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
      expect(r.body.errors?.[0]?.message).toMatch(/must not carry credentials/);
      expect(r.body.errors?.[0]?.message).toMatch(advice);
      answers.push(JSON.stringify(r.body));
    }
    await gql(api.url, `mutation { createFunction(input: {name: "plain", runtime: HTTP, url: "${base}/ok"}) { name } }`, bearer(admin));
    const u = await gql(api.url, `mutation { updateFunction(name: "plain", input: {url: "${url()}"}) { version } }`, bearer(admin));
    expect(u.body.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    answers.push(JSON.stringify(u.body));
  });

  it('the registry itself refuses them (FUNCTIONS_DIR files and any other caller go through it)', async () => {
    await expect(createFunction(t.db, 'creds2', { runtime: 'HTTP', url: url() })).rejects.toMatchObject({ code: 'InvalidFunctionConfig' });
    await expect(createFunction(t.db, 'creds3', { runtime: 'HTTP', url: `http://just-a-user@127.0.0.1:1/` })).rejects.toMatchObject({ code: 'InvalidFunctionConfig' });
    await expect(upsertFunction(t.db, 'creds4', { runtime: 'MODULE', handler: 'echo.ts', onFailure: url() })).rejects.toMatchObject({ code: 'InvalidFunctionConfig' });
    await expect(updateFunction(t.db, 'plain', { onSuccess: url() })).rejects.toMatchObject({ code: 'InvalidFunctionConfig' });
    await expect(createFunction(t.db, 'creds5', { runtime: 'HTTP', url: url() })).rejects.not.toThrow(USER_SECRET);
  });
});

describe('a failing function whose URL or error carried a secret', () => {
  it('fails, sync and async, and its secrets are stripped before anything is written', async () => {
    await createFunction(t.db, 'query_secret', { runtime: 'HTTP', url: `${base}/hook?api_key=${QUERY_SECRET}&v=2`, maxRetries: 1, retryBaseDelayMs: 0 });
    await createFunction(t.db, 'refused_port', { runtime: 'HTTP', url: `http://127.0.0.1:${closedPort}/x?api_key=${QUERY_SECRET}`, maxRetries: 0 });
    await createFunction(t.db, 'leaky_module', { runtime: 'MODULE', handler: 'leaky-url.ts', isolation: 'inline', maxRetries: 0 });
    await createFunction(t.db, 'leaky_thread', { runtime: 'MODULE', handler: 'leaky-url.ts', maxRetries: 0 });
    await legacyHttpFunction('legacy_creds', `http://svc:${USER_SECRET}@127.0.0.1:${closedPort}/x?api_key=${QUERY_SECRET}`);

    const names = ['query_secret', 'refused_port', 'leaky_module', 'leaky_thread', 'legacy_creds'];
    for (const name of names) {
      const sync = await fetch(`${api.url}/2015-03-31/functions/${name}/invocations`, {
        method: 'POST',
        headers: { ...bearer(admin), 'x-amz-log-type': 'Tail' },
        body: '{"n":1}',
      });
      expect(sync.headers.get('x-amz-function-error'), name).toBe('Unhandled');
      answers.push(await sync.text(), Buffer.from(sync.headers.get('x-amz-log-result') ?? '', 'base64').toString('utf8'));
      const native = await fetch(`${api.url}/invoke/${name}`, { method: 'POST', headers: bearer(admin), body: '{"n":2}' });
      answers.push(await native.text(), JSON.stringify([...native.headers]));
    }
    const asyncIds: string[] = [];
    for (const name of names) {
      const res = await fetch(`${api.url}/invoke/${name}?async=true`, { method: 'POST', headers: bearer(admin), body: '{"n":3}' });
      asyncIds.push(((await res.json()) as { invocationId: string }).invocationId);
    }
    for (const id of asyncIds) await until(async () => (await getInvocation(t.db, id))?.status === 'dead_lettered');
    for (const id of asyncIds) {
      for (const key of [admin, audit]) answers.push(await (await fetch(`${api.url}/invocations/${id}`, { headers: bearer(key) })).text());
    }

    // the checks have teeth: the errors name what failed, without the secret parts
    const qs = (await getInvocation(t.db, asyncIds[0]!))!;
    expect(JSON.stringify(qs.error)).toMatch(/answered 500/);
    expect(JSON.stringify(qs.error)).toContain('/hook');
    const leaky = (await getInvocation(t.db, asyncIds[2]!))!;
    expect(leaky.error?.errorMessage).toBe('GET https://[redacted]@api.example.test/v1/charge?token=[redacted]&x=[redacted] failed: 502 Bad Gateway');
    expect(leaky.error?.trace.join('\n')).toContain('https://[redacted]@api.example.test/v1/charge?token=[redacted]&x=[redacted]');
    const legacy = (await getInvocation(t.db, asyncIds[4]!))!;
    expect(legacy.error?.errorType).toMatch(/^HTTP\./);
  });

  it('GraphQL: audit-only keys see no query values in function URLs; no one sees a secret in errors or events', async () => {
    const fields = `functions { name url onSuccess onFailure }
      invocations(first: 100) { edges { node { id error { errorType errorMessage trace } events { seq type data } } } }
      deadLetters(first: 100) { edges { node { id error { errorMessage } } } }`;
    const asAudit = await gql(api.url, `query { ${fields} }`, bearer(audit));
    expect(asAudit.body.errors).toBeUndefined();
    const fns = (asAudit.body.data as { functions: { name: string; url: string | null }[] }).functions;
    expect(fns.find((f) => f.name === 'query_secret')?.url).toBe(`${base}/hook?api_key=[redacted]&v=[redacted]`);
    expect(fns.find((f) => f.name === 'legacy_creds')?.url).toBe(`http://[redacted]@127.0.0.1:${closedPort}/x?api_key=[redacted]`);
    answers.push(JSON.stringify(asAudit.body));
    const fn = await gql(api.url, `query { function(name: "legacy_creds") { url } }`, bearer(audit));
    answers.push(JSON.stringify(fn.body));
    // the admin who registered a URL can read it back (to fix it)
    const asAdmin = await gql(api.url, `query { function(name: "query_secret") { url } }`, bearer(admin));
    expect((asAdmin.body.data as { function: { url: string } }).function.url).toContain(QUERY_SECRET);
    const adminView = await gql(api.url, `query { invocations(first: 100) { edges { node { error { errorMessage trace } events { data } } } } }`, bearer(admin));
    answers.push(JSON.stringify(adminView.body));
  });

  it('appear nowhere: events, attempt logs, projections, audit views, answers', async () => {
    const text = async (q: ReturnType<typeof sql<{ t: string }>>) => (await q.execute(t.db)).rows.map((r) => r.t).join('\n');
    const stored: Record<string, string> = {
      events: await text(sql`select data::text as t from ledger.events`),
      attempt_logs: await text(sql`select log as t from ledger.attempt_logs`),
      invocations: await text(sql`select row_to_json(i)::text as t from ledger.invocations i`),
    };
    const owner = t.open({ role: '' });
    for (const view of ['audit.invocations', 'audit.invocation_events', 'audit.dead_letters', 'audit.function_stats_hourly']) {
      stored[view] = (await sql<{ t: string }>`select row_to_json(v)::text as t from ${sql.table(view)} v`.execute(owner.db)).rows.map((r) => r.t).join('\n');
    }
    // teeth: the failures are there
    expect(stored.events).toMatch(/HTTP\.Status500/);
    expect(stored.events).toMatch(/HTTP\.ConnectionError/);
    expect(stored.events).toMatch(/502 Bad Gateway/);
    expect(stored['audit.invocation_events']).toMatch(/dead_lettered/);
    expect(stored.attempt_logs).toMatch(/calling the charge API/);
    expect(stored.attempt_logs).toMatch(/answered 500/);
    expect(answers.length).toBeGreaterThan(20);
    for (const secret of SECRETS) {
      for (const [where, value] of Object.entries(stored)) expect(value, `${where} holds ${secret}`).not.toContain(secret);
      answers.forEach((a, i) => expect(a, `answer #${i} holds ${secret}`).not.toContain(secret));
    }
  });
});
