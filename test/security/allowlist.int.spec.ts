// HTTP_ALLOWLIST against SSRF: refused when a function is registered, and again when it is
// called or its destination is POSTed (for functions registered before the list narrowed).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { URL_NOT_ALLOWED, UrlAllowlist } from '../../apps/runtimes/allowlist.ts';
import { createWorker, listDestinationDeliveries, type Worker } from '../../apps/worker/index.ts';
import { LedgerError } from '../../db/errors.ts';
import { createFunction, getFunction } from '../../db/functions.ts';
import { getInvocation } from '../../db/invocations.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, gql, startSecureApi, type SecureApi } from './helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let worker: Worker;
let key: CreatedApiKey;
let allowlist: UrlAllowlist;
/** not on the list: must never be called */
let internal: Server;
let internalUrl: string;
const internalHits: string[] = [];
/** on the list: answers, or redirects to the internal one */
let external: Server;
let externalUrl: string;

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  t = await createTestDatabase();
  internal = createServer((req, res) => {
    internalHits.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"internal":true}');
  });
  internalUrl = await listen(internal);
  external = createServer((req, res) => {
    if (req.url === '/redirect') res.writeHead(307, { location: `${internalUrl}/via-redirect` }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{"external":true}');
  });
  externalUrl = await listen(external);
  allowlist = UrlAllowlist.parse(`api.example.com,${new URL(externalUrl).host}`);

  // registered while no list was in force
  await createFunction(t.db, 'old_http', { runtime: 'HTTP', url: `${internalUrl}/old`, maxRetries: 0 });
  await createFunction(t.db, 'old_dest', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline', onSuccess: `${internalUrl}/dest` });
  await createFunction(t.db, 'clean', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
  await createFunction(t.db, 'redirect_dest', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline', onSuccess: `${externalUrl}/redirect` });

  const logger = pino({ level: 'silent' });
  api = await startSecureApi(t.db, { allowlist, logger });
  worker = createWorker({
    db: t.db,
    databaseUrl: t.ownerUrl,
    runtimes: api.runtimes,
    logger,
    registry: api.registry,
    workerId: 'allowlist-test',
    concurrency: 2,
    claimBatchSize: 10,
    pollIntervalMs: 50,
    deliveryIntervalMs: 50,
    delivery: { allowUrl: (u) => allowlist.allows(u), maxAttempts: 1 },
  });
  await worker.start();
  key = await createApiKey(t.db, { scopes: ['invoke', 'admin', 'audit'] });
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const s of [internal, external]) await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
});

async function until<T>(probe: () => Promise<T | null | undefined | false>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('at registration', () => {
  it.each([
    ['a function url', (u: string) => `createFunction(input: {name: "f1", runtime: HTTP, url: "${u}"}) { name }`],
    ['an onSuccess URL', (u: string) => `createFunction(input: {name: "f2", runtime: MODULE, handler: "echo.ts", onSuccess: "${u}"}) { name }`],
    ['an onFailure URL', (u: string) => `updateFunction(name: "clean", input: {onFailure: "${u}"}) { version }`],
  ])('GraphQL refuses %s outside the list with InvalidFunctionConfig', async (_what, mutation) => {
    const refused = await gql(api.url, `mutation { ${mutation('http://169.254.169.254/latest/meta-data/')} }`, bearer(key));
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    expect(refused.body.errors?.[0]?.message).toMatch(/host 169\.254\.169\.254 is not allowed by HTTP_ALLOWLIST/);
  });

  it('GraphQL accepts a URL on the list', async () => {
    const ok = await gql(api.url, `mutation { createFunction(input: {name: "f3", runtime: HTTP, url: "https://api.example.com/hook"}) { name } }`, bearer(key));
    expect(ok.body).toEqual({ data: { createFunction: { name: 'f3' } } });
    expect((await getFunction(t.db, 'clean'))?.version).toBe(1);
  });

  it('any change to a function that still points outside the list is refused until the URL is fixed', async () => {
    const refused = await gql(api.url, 'mutation { updateFunction(name: "old_dest", input: {timeoutMs: 5000}) { version } }', bearer(key));
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    expect(refused.body.errors?.[0]?.message).toContain(`host ${new URL(internalUrl).host} is not allowed`);
  });

  it('the registry check is the same for every caller (FUNCTIONS_DIR, CLI)', async () => {
    const checks = { url: (u: string) => allowlist.check(u) };
    const err = await createFunction(t.db, 'f4', { runtime: 'HTTP', url: `${internalUrl}/x` }, checks).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerError);
    expect((err as LedgerError).code).toBe('InvalidFunctionConfig');
    expect(await getFunction(t.db, 'f4')).toBeNull();
  });
});

describe('at call time', () => {
  it('a sync invoke of a function whose URL is no longer allowed fails without a request', async () => {
    const res = await fetch(`${api.url}/invoke/old_http`, { method: 'POST', headers: bearer(key), body: '{}' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-function-error')).toBe(URL_NOT_ALLOWED);
    expect(await res.json()).toMatchObject({ errorType: URL_NOT_ALLOWED, errorMessage: expect.stringMatching(/not allowed by HTTP_ALLOWLIST/) });
    expect(internalHits).toEqual([]);
  });

  it('an async invoke ends dead-lettered the same way, without a request', async () => {
    const res = await fetch(`${api.url}/invoke/old_http?async=true`, { method: 'POST', headers: bearer(key), body: '{}' });
    const { invocationId } = (await res.json()) as { invocationId: string };
    const view = await until(async () => {
      const v = await getInvocation(t.db, invocationId);
      return v?.status === 'dead_lettered' && v;
    });
    expect(view.error?.errorType).toBe(URL_NOT_ALLOWED);
    expect(internalHits).toEqual([]);
  });

  it('a URL destination no longer allowed is marked failed, not POSTed', async () => {
    const res = await fetch(`${api.url}/invoke/old_dest?async=true`, { method: 'POST', headers: bearer(key), body: '{"d":1}' });
    const { invocationId } = (await res.json()) as { invocationId: string };
    const delivery = await until(async () => {
      const d = (await listDestinationDeliveries(t.db, { invocationId }))[0];
      return d && d.status !== 'pending' && d;
    });
    expect(delivery).toMatchObject({ status: 'failed', lastError: expect.stringMatching(/HTTP_ALLOWLIST/) });
    expect(internalHits).toEqual([]);
  });

  it('an allowed destination that redirects elsewhere is not followed', async () => {
    const res = await fetch(`${api.url}/invoke/redirect_dest?async=true`, { method: 'POST', headers: bearer(key), body: '{}' });
    const { invocationId } = (await res.json()) as { invocationId: string };
    const delivery = await until(async () => {
      const d = (await listDestinationDeliveries(t.db, { invocationId }))[0];
      return d && d.status !== 'pending' && d;
    });
    expect(delivery).toMatchObject({ status: 'failed', lastStatusCode: 307 });
    expect(internalHits).toEqual([]);
  });
});
