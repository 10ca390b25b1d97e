// A function's secret signs what is sent to its endpoint and goes nowhere else: not into
// events, attempt logs, destination records, metrics, process logs, the audit views, or any
// API response.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signBody } from '../../apps/runtimes/index.ts';
import { createWorker, listDestinationDeliveries, type Worker } from '../../apps/worker/index.ts';
import { getInvocation } from '../../db/invocations.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, gql, startSecureApi, type SecureApi } from './helpers.ts';

const SECRET = `fn-secret-${randomBytes(12).toString('hex')}`;
const ROTATED = `fn-secret-rotated-${randomBytes(12).toString('hex')}`;

let t: TestDatabase;
let api: SecureApi;
let worker: Worker;
let endpoint: Server;
let endpointUrl: string;
let key: CreatedApiKey;
const logLines: string[] = [];
const received: { path: string; signatureOk: boolean }[] = [];
let currentSecret = SECRET;

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => resolve(body));
  });

beforeAll(async () => {
  t = await createTestDatabase();
  endpoint = createServer(async (req, res) => {
    const body = await readBody(req);
    const signatureOk = req.headers['x-ledger-signature'] === signBody(currentSecret, body);
    received.push({ path: req.url ?? '', signatureOk });
    if (req.url === '/fail') {
      // echo everything the ledger sent back into the error message
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ headers: req.headers, body }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ signatureOk, headers: req.headers }));
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;

  // everything the process logs, at the most verbose level
  const logger = pino({ level: 'trace' }, { write: (s: string) => void logLines.push(s) });
  api = await startSecureApi(t.db, { logger });
  worker = createWorker({
    db: t.db,
    databaseUrl: t.ownerUrl,
    runtimes: api.runtimes,
    logger,
    registry: api.registry,
    workerId: 'secrets-test',
    concurrency: 2,
    claimBatchSize: 10,
    pollIntervalMs: 50,
    deliveryIntervalMs: 50,
  });
  await worker.start();
  key = await createApiKey(t.db, { scopes: ['invoke', 'admin', 'audit'] });
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await new Promise<void>((resolve) => (endpoint ? endpoint.close(() => resolve()) : resolve()));
});

async function until<T>(probe: () => Promise<T | null | undefined | false>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('function secrets', () => {
  const responses: string[] = [];

  it('are used to sign, and never echoed by the API that sets them', async () => {
    const created = await gql(
      api.url,
      `mutation { createFunction(input: {name: "hook", runtime: HTTP, url: "${endpointUrl}/ok", secret: "${SECRET}", onSuccess: "${endpointUrl}/destination"}) { name hasSecret url } }`,
      bearer(key),
    );
    expect(created.body.data).toEqual({ createFunction: { name: 'hook', hasSecret: true, url: `${endpointUrl}/ok` } });
    responses.push(JSON.stringify(created.body));
    const failing = await gql(api.url, `mutation { createFunction(input: {name: "hook_fail", runtime: HTTP, url: "${endpointUrl}/fail", secret: "${SECRET}"}) { name } }`, bearer(key));
    responses.push(JSON.stringify(failing.body));

    // sync through the Lambda route, with the log tail
    const lambda = await fetch(`${api.url}/2015-03-31/functions/hook/invocations`, {
      method: 'POST',
      headers: { ...bearer(key), 'x-amz-log-type': 'Tail' },
      body: '{"order":1}',
    });
    const lambdaBody = await lambda.text();
    expect(JSON.parse(lambdaBody)).toMatchObject({ signatureOk: true });
    responses.push(lambdaBody, Buffer.from(lambda.headers.get('x-amz-log-result') ?? '', 'base64').toString('utf8'));

    // a failing endpoint that echoes the request into the error
    const failed = await fetch(`${api.url}/invoke/hook_fail`, { method: 'POST', headers: bearer(key), body: '{"order":2}' });
    expect(failed.headers.get('x-function-error')).toBe('HTTP.Status500');
    responses.push(await failed.text());

    // async through the worker, with a URL destination
    const asyncRes = await fetch(`${api.url}/invoke/hook?async=true`, { method: 'POST', headers: bearer(key), body: '{"order":3}' });
    const { invocationId } = (await asyncRes.json()) as { invocationId: string };
    await until(async () => (await getInvocation(t.db, invocationId))?.status === 'succeeded');
    await until(async () => (await listDestinationDeliveries(t.db, { invocationId }))[0]?.status === 'delivered');
    const record = await fetch(`${api.url}/invocations/${invocationId}`, { headers: bearer(key) });
    responses.push(await record.text());

    // rotate the secret; the new one signs from now on
    const rotated = await gql(api.url, `mutation { updateFunction(name: "hook", input: {secret: "${ROTATED}"}) { version hasSecret } }`, bearer(key));
    expect(rotated.body.data).toEqual({ updateFunction: { version: 2, hasSecret: true } });
    responses.push(JSON.stringify(rotated.body));
    currentSecret = ROTATED;
    // the API caches a function's latest version for a moment: invoke until version 2 runs
    const again = await until(async () => {
      const res = await fetch(`${api.url}/invoke/hook`, { method: 'POST', headers: bearer(key), body: '{"order":4}' });
      const body = await res.text();
      return res.headers.get('x-function-version') === '2' && body;
    });
    expect(JSON.parse(again)).toMatchObject({ signatureOk: true });
    responses.push(again);

    expect(received.filter((r) => r.path !== '/destination').length).toBeGreaterThanOrEqual(4);
    expect(received.filter((r) => r.path !== '/destination').at(-1)?.signatureOk).toBe(true);
    expect(received.some((r) => r.path === '/destination')).toBe(true);
  });

  it('appear in no event, log, projection, delivery, audit view, metric or response', async () => {
    const everything = await gql(
      api.url,
      `query {
        functions { name version runtime handler url timeoutMs memoryMb maxRetries retryBaseDelayMs retryMaxDelayMs
                    maxEventAgeSeconds reservedConcurrency onSuccess onFailure isolation hasSecret codeHash createdAt }
        function(name: "hook") { url hasSecret }
        invocations(first: 100) { edges { node { id payload result error { errorType errorMessage trace }
                                               events { seq type attempt data } } } }
      }`,
      bearer(key),
    );
    expect(everything.body.errors).toBeUndefined();
    responses.push(JSON.stringify(everything.body));

    const tables = async (query: ReturnType<typeof sql<{ t: string }>>) => (await query.execute(t.db)).rows.map((r) => r.t).join('\n');
    const stored = [
      await tables(sql`select data::text as t from ledger.events`),
      await tables(sql`select log as t from ledger.attempt_logs`),
      await tables(sql`select row_to_json(i)::text as t from ledger.invocations i`),
      await tables(sql`select row_to_json(d)::text as t from ledger.destination_deliveries d`),
    ];
    const owner = t.open({ role: '' });
    for (const view of ['audit.invocations', 'audit.invocation_events', 'audit.dead_letters', 'audit.function_stats_hourly']) {
      stored.push((await sql<{ t: string }>`select row_to_json(v)::text as t from ${sql.table(view)} v`.execute(owner.db)).rows.map((r) => r.t).join('\n'));
    }
    const metrics = await (await fetch(`${api.url}/metrics`, { headers: bearer(key) })).text();

    // the checks have teeth: these places do hold the invocations' data
    expect(stored[0]).toContain('"order": 3');
    expect(stored[1]).toContain('/ok');
    expect(logLines.length).toBeGreaterThan(0);
    expect(metrics.length).toBeGreaterThan(0);

    for (const secret of [SECRET, ROTATED]) {
      stored.forEach((text, i) => expect(text, `stored text #${i}`).not.toContain(secret));
      expect(metrics).not.toContain(secret);
      expect(logLines.join('')).not.toContain(secret);
      responses.forEach((text, i) => expect(text, `response #${i}`).not.toContain(secret));
    }
  });
});
