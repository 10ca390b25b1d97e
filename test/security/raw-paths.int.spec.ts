// Scopes are decided on the route that will run, whatever the spelling of its path. Each
// request goes over a real socket with its path exactly as written (node:http sends the
// request target as is, like `curl --path-as-is`; fetch would normalise it first): percent-
// encoded letters, double slashes, dot segments, encoded dots, backslashes and case.
// For every variant, a key without the route's scope is refused and nothing is written,
// and a key with the scope gets what the router answers for that spelling.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ROUTE_RULES, decideAccess, routeRule } from '../../apps/api/auth/index.ts';
import type { Scope } from '../../db/keys.ts';
import { sql } from 'kysely';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createStream } from '../../db/streams.ts';
import { createSchedule } from '../../db/schedule-store.ts';
import { createAlias, createManagedFunction } from '../../db/control-plane.ts';
import { strToU8, zipSync } from 'fflate';
import { countEvents, moduleFn } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, createKeys, startSecureApi, type Keys, type SecureApi } from './helpers.ts';
import { treeHeadSigner } from '../../apps/cli/tamper.ts';
import { generateSigningKey, parseSigningKey } from '../../db/tamper/tree-head.ts';
import { sealAll } from '../tamper/helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let keys: Keys;
let invocationId: string;
let position: string;
let mappingId: string;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await createQueue(t.db, { name: 'q' });
  // a stream the records route puts to, and a mapping the Lambda mapping routes read (docs/streams.md, docs/control-plane.md)
  await createStream(t.db, { name: 'raw-stream', shardCount: 1 });
  mappingId = (await createEventSourceMapping(t.db, { queueName: 'q', functionName: 'echo', enabled: false })).id;
  // schedules the PUT and DELETE spellings change (docs/schedules.md)
  for (const name of ['raw-put', 'raw-del']) await createSchedule(t.db, { name, expression: 'rate(1 hour)', target: { functionName: 'echo' } }, { actor: 'test' });
  // the control plane's routes answer 2xx for these (docs/control-plane.md)
  const ctx = { actor: 'raw-paths' };
  await createManagedFunction(t.db, ctx, 'ctl', CTL_CONFIG, { zip: CTL_ZIP }, { publish: true });
  await createAlias(t.db, ctx, 'ctl', 'live', { functionVersion: 1 });
  for (let i = 1; i <= 6; i++) await createManagedFunction(t.db, ctx, `del-${i}`, CTL_CONFIG, { zip: CTL_ZIP });
  keys = await createKeys(t.db);
  // a signing key, so the tamper-evidence routes answer 2xx to a key with the audit scope
  const signer = treeHeadSigner(t.db, parseSigningKey(generateSigningKey().privateKeyPem), [], 'raw-paths', pino({ level: 'silent' }));
  api = await startSecureApi(t.db, { treeHeadSigner: signer });
  const res = await fetch(`${api.url}/invoke/echo`, { method: 'POST', headers: bearer(keys.invoke), body: '{"seed":1}' });
  invocationId = res.headers.get('x-invocation-id') as string;
  expect(invocationId).toMatch(/^[0-9a-f-]{36}$/);
  await sealAll(t.db); // other sessions' open transactions hold sealing back: wait them out
  await signer.signNow();
  const { rows } = await sql<{ p: string }>`select min(position)::text as p from ledger.events where invocation_id = ${invocationId}::uuid`.execute(t.db);
  position = rows[0]!.p;
});

afterAll(async () => {
  await api?.close();
});

/** events and queued messages: what a request that got through would have written */
async function written(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.messages`.execute(t.db);
  return (await countEvents(t.db)) + (rows[0]?.n ?? 0);
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request with `path` as the request target, byte for byte. */
function raw(method: string, path: string, headers: Record<string, string>, body?: string, port = new URL(api.url).port): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { ...headers, connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Variant {
  name: string;
  path: () => string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: string;
  /** the scope of the route this spelling reaches */
  scope: Scope;
  /** Node's HTTP server answers 400 itself to a target it cannot parse (before any route) */
  unparsable?: boolean;
  /** headers the route needs to answer 2xx (Kinesis's X-Amz-Target) */
  headers?: Record<string, string>;
}

const INVOKE_SPELLINGS = [
  '/%69nvoke/echo',
  '/%69%6e%76%6f%6b%65/echo',
  '/invoke/%65cho',
  '//invoke/echo',
  '/invoke//echo',
  '/x/../invoke/echo',
  '/./invoke/echo',
  '/x/%2e%2e/invoke/echo',
  '/x/%2E%2E/invoke/echo',
  '/x/.%2e/invoke/echo',
  '/invoke/./echo',
  '/%2e/invoke/echo',
  '/x\\..\\invoke/echo',
  '/invoke/echo/',
  '/INVOKE/echo',
  '/Invoke/echo',
];

const LAMBDA_SPELLINGS = [
  '/2015-03-31/%66unctions/echo/invocations',
  '/2015-03-31/functions/echo/%69nvocations',
  '/%32015-03-31/functions/echo/invocations',
  '/2015-03-31//functions/echo/invocations',
  '//2015-03-31/functions/echo/invocations',
  '/2015-03-31/x/../functions/echo/invocations',
  '/2015-03-31/x/%2e%2e/functions/echo/invocations',
  '/2015-03-31/FUNCTIONS/echo/invocations',
  '/2014-11-13/%66unctions/echo/invoke-async',
  '/2014-11-13/functions/echo/%69nvoke-async/',
];

/** `{id}` is the known invocation; `{%id}` the same with its first character percent-encoded */
const AUDIT_SPELLINGS = [
  '/%69nvocations/{id}',
  '/invocations/{%id}',
  '//invocations/{id}',
  '/x/../invocations/{id}',
  '/x/%2e%2e/invocations/{id}',
  '/INVOCATIONS/{id}',
  '/invocations/{id}/',
];
const withId = (p: string) => () =>
  p.replace('{id}', invocationId).replace('{%id}', `%${invocationId.charCodeAt(0).toString(16)}${invocationId.slice(1)}`);

const METRICS_SPELLINGS = ['/%6detrics', '//metrics', '/x/../metrics', '/x/%2e%2e/metrics', '/METRICS', '/metrics/'];

const QUEUE_SPELLINGS = ['/%71ueues/q/messages', '/queues/q/%6dessages', '//queues/q/messages', '/x/../queues/q/messages'];

/** tamper evidence (docs/tamper-evidence.md); `{pos}` is the known invocation's first event */
const TAMPER_SPELLINGS = [
  '/%61udit/tree-heads',
  '/audit/tree-heads/%6catest',
  '/AUDIT/tree-heads/latest',
  '/%61udit/seal',
  '/audit/x/../seal',
  '/audit/invocations/{id}/%70roof',
  '/audit/%65vents/{pos}/proof',
  '/audit/events/{pos}/proof/',
  '/%61udit/consistency?from=1',
];
const withPosition = (p: string) => () => withId(p)().replace('{pos}', position);

/** the EventBridge Scheduler API: each POST creates a new schedule; raw-put and raw-del exist */
let made = 0;
const SCHEDULE_BODY = '{"ScheduleExpression":"rate(1 hour)","FlexibleTimeWindow":{"Mode":"OFF"},"Target":{"Arn":"echo","RoleArn":"r"}}';
const SCHEDULER_VARIANTS: Variant[] = [
  { name: '/%73chedules/raw-N (create)', path: () => `/%73chedules/raw-${++made}`, method: 'POST', body: SCHEDULE_BODY, scope: 'admin' },
  { name: '/schedules/%72aw-put (update)', path: () => '/schedules/%72aw-put', method: 'PUT', body: SCHEDULE_BODY, scope: 'admin' },
  { name: '/x/../schedules/raw-del (delete)', path: () => '/x/../schedules/raw-del', method: 'DELETE', scope: 'admin' },
  { name: '/schedules/%72aw-put (get)', path: () => '/schedules/%72aw-put', method: 'GET', scope: 'audit' },
  { name: '/%73chedules (list)', path: () => '/%73chedules', method: 'GET', scope: 'audit' },
];

const CTL_ZIP = zipSync({ 'index.js': strToU8('exports.handler = async (e) => e;') }, { mtime: new Date('2000-01-01T00:00:00Z') });
const CTL_CONFIG = { runtime: 'MODULE' as const, handler: 'index.handler' };
let created = 0;
// path() is called by every test of a variant (refused ones too): del-1…del-6 exist
let deleted = 0;

/** Control-plane routes; each answers 2xx to an admin key every time it is called this way. */
const CONTROL_VARIANTS: Variant[] = [
  { name: '/2015-03-31/%66unctions (list)', path: () => '/2015-03-31/%66unctions', method: 'GET', scope: 'admin' },
  {
    name: '/2015-03-31/%66unctions (create)',
    path: () => '/2015-03-31/%66unctions',
    method: 'POST',
    scope: 'admin',
    get body() {
      return JSON.stringify({ FunctionName: `made-${++created}`, Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: Buffer.from(CTL_ZIP).toString('base64') } });
    },
  },
  { name: '/2015-03-31/functions/%63tl', path: () => '/2015-03-31/functions/%63tl', method: 'GET', scope: 'admin' },
  { name: '/2015-03-31/functions/%64el-N (delete)', path: () => `/2015-03-31/functions/%64el-${++deleted}`, method: 'DELETE', scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/%63onfiguration', path: () => '/2015-03-31/functions/ctl/%63onfiguration', method: 'GET', scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/x/../configuration (update)', path: () => '/2015-03-31/functions/ctl/x/../configuration', method: 'PUT', body: '{}', scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/%63ode', path: () => '/2015-03-31/functions/ctl/%63ode', method: 'PUT', body: JSON.stringify({ ZipFile: Buffer.from(CTL_ZIP).toString('base64') }), scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/%76ersions', path: () => '/2015-03-31/functions/ctl/%76ersions', method: 'GET', scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/%61liases', path: () => '/2015-03-31/functions/ctl/%61liases', method: 'GET', scope: 'admin' },
  { name: '/2015-03-31/functions/ctl/aliases/%6cive', path: () => '/2015-03-31/functions/ctl/aliases/%6cive', method: 'GET', scope: 'admin' },
  { name: '/2017-10-31/functions/ctl/%63oncurrency', path: () => '/2017-10-31/functions/ctl/%63oncurrency', method: 'PUT', body: '{"ReservedConcurrentExecutions":5}', scope: 'admin' },
  { name: '/2016-08-19/%61ccount-settings', path: () => '/2016-08-19/%61ccount-settings', method: 'GET', scope: 'admin' },
  { name: '/2019-09-30/functions/ctl/%63oncurrency', path: () => '/2019-09-30/functions/ctl/%63oncurrency', method: 'GET', scope: 'admin' },
  { name: '/2019-09-25/functions/ctl/%65vent-invoke-config', path: () => '/2019-09-25/functions/ctl/%65vent-invoke-config', method: 'PUT', body: '{"MaximumRetryAttempts":1}', scope: 'admin' },
];

const VARIANTS: Variant[] = [
  ...CONTROL_VARIANTS,
  ...INVOKE_SPELLINGS.map((p): Variant => ({ name: p, path: () => p, method: 'POST', body: '{"v":1}', scope: 'invoke', unparsable: p.includes('\\') })),
  ...LAMBDA_SPELLINGS.map((p): Variant => ({ name: p, path: () => p, method: 'POST', body: '{"v":1}', scope: 'invoke' })),
  ...AUDIT_SPELLINGS.map((p): Variant => ({ name: p, path: withId(p), method: 'GET', scope: 'audit' })),
  ...METRICS_SPELLINGS.map((p): Variant => ({ name: p, path: () => p, method: 'GET', scope: 'audit' })),
  ...QUEUE_SPELLINGS.map((p): Variant => ({ name: p, path: () => p, method: 'POST', body: '{"m":1}', scope: 'invoke' })),
  ...TAMPER_SPELLINGS.map((p): Variant => ({ name: p, path: withPosition(p), method: 'GET', scope: 'audit' })),
  { name: '/audit/x/../tree-heads (sign)', path: () => '/audit/x/../tree-heads', method: 'POST', scope: 'audit' },
  { name: '/%73treams/raw-stream/records', path: () => '/%73treams/raw-stream/records', method: 'POST', body: '{"partitionKey":"k","data":"AA=="}', scope: 'invoke' },
  {
    name: '/./ (Kinesis PutRecord)',
    path: () => '/./',
    method: 'POST',
    body: '{"StreamName":"raw-stream","PartitionKey":"k","Data":"AA=="}',
    headers: { 'x-amz-target': 'Kinesis_20131202.PutRecord', 'content-type': 'application/x-amz-json-1.1' },
    scope: 'invoke',
  },
  { name: '/2015-03-31/%65vent-source-mappings (list)', path: () => '/2015-03-31/%65vent-source-mappings', method: 'GET', scope: 'admin' },
  { name: '/2015-03-31/event-source-mappings/x/../{uuid}', path: () => `/2015-03-31/event-source-mappings/x/../${mappingId}`, method: 'GET', scope: 'admin' },
  ...SCHEDULER_VARIANTS,
];

const WITHOUT: Record<Scope, (keyof Keys)[]> = { invoke: ['admin', 'audit'], audit: ['admin', 'invoke'], admin: ['invoke', 'audit'] };
const WITH: Record<Scope, keyof Keys> = { invoke: 'invoke', audit: 'audit', admin: 'admin' };

describe.each(VARIANTS)('$method $name', (v) => {
  it.each(WITHOUT[v.scope])('a key with only %s is refused (not 2xx), nothing written', async (other) => {
    const before = await written();
    const res = await raw(v.method, v.path(), { ...v.headers, ...bearer(keys[other]) }, v.body);
    // 403 when the spelling reaches a route; 404 when it reaches none (never the handler)
    expect(v.unparsable ? [400] : [403, 404], `${res.status} ${res.body}`).toContain(res.status);
    expect(await written()).toBe(before);
  });

  it(`a key with ${v.scope} gets the route's answer, or 403 naming admin where no route answers`, async () => {
    const res = await raw(v.method, v.path(), { ...v.headers, ...bearer(keys[WITH[v.scope]]) }, v.body);
    if (v.unparsable) return expect(res.status).toBe(400);
    if (res.status === 403) expect(res.body).toMatch(/admin scope needed for a path no route answers/);
    else expect([200, 201, 202, 204], `${res.status} ${res.body}`).toContain(res.status);
    // with every scope, such a path is the router's 404
    const all = await raw(v.method, v.path(), { ...v.headers, ...bearer(keys.all) }, v.body);
    expect([200, 201, 202, 204, 404], `${all.status} ${all.body}`).toContain(all.status);
  });

  it(`no key: 401, or 404 when no route answers this spelling`, async () => {
    const before = await written();
    const res = await raw(v.method, v.path(), { ...v.headers }, v.body);
    expect(v.unparsable ? [400] : [401, 404], `${res.status} ${res.body}`).toContain(res.status);
    expect(await written()).toBe(before);
  });
});

describe('a key with the scope gets what the router answers', () => {
  it('encoded letters and dot segments reach the route; the Lambda route with an encoded segment invokes', async () => {
    const ok = await raw('POST', '/%69nvoke/echo', bearer(keys.invoke), '{"v":2}');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ v: 2 });
    const lambda = await raw('POST', '/2015-03-31/%66unctions/echo/invocations', bearer(keys.invoke), '{"v":3}');
    expect(lambda.status).toBe(200);
    const audit = await raw('GET', `/%69nvocations/${invocationId}`, bearer(keys.audit));
    expect(audit.status).toBe(200);
    expect(JSON.parse(audit.body)).toMatchObject({ id: invocationId });
  });

  it('the route that runs, not the spelling, decides: an admin-only key is refused on every spelling of the invoke route', async () => {
    for (const p of ['/invoke/echo', '/%69nvoke/echo', '/x/../invoke/echo']) {
      const res = await raw('POST', p, bearer(keys.admin), '{}');
      expect(res.status, p).toBe(403);
      expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'Forbidden' } });
    }
  });
});

describe('every scoped route has spellings in this matrix', () => {
  it('covers each rule that needs a scope', () => {
    const scoped = ROUTE_RULES.filter((r) => r.access !== 'open' && r.access !== 'graphql');
    // where each spelling lands once decoded and resolved as a URL parser does
    const reached = new Set(VARIANTS.map((v) => routeRule(v.method, decodeURIComponent(new URL(v.path(), 'http://x').pathname).toLowerCase())));
    expect(scoped.filter((r) => !reached.has(r)).map((r) => r.path)).toEqual([]);
  });
});

describe('a route without a rule is closed (fail closed)', () => {
  it('is refused to every key, even one with every scope, and logged', async () => {
    const logged: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void logged.push(line) });
    const extra = await startSecureApi(t.db, { logger });
    try {
      extra.app.post('/undecided/:x', (c) => c.json({ ran: true }));
      const { port } = new URL(extra.url);
      for (const key of [keys.all, keys.admin]) {
        const res = await raw('POST', '/undecided/1', bearer(key), '{}', port);
        expect(res.status).toBe(403);
        expect(res.body).not.toContain('ran');
      }
      expect(logged.join('')).toMatch(/no entry in ROUTE_RULES/);
    } finally {
      await extra.close();
    }
  });

  it('decideAccess: the handlers decide; middlewares do not; no handler needs admin', () => {
    const mw = { method: 'ALL', path: '/*' };
    expect(decideAccess([mw, { method: 'POST', path: '/invoke/:name' }], '/invoke/x')).toMatchObject({ kind: 'scoped', scopes: ['invoke'] });
    expect(decideAccess([mw, { method: 'GET', path: '/healthz' }], '/healthz')).toEqual({ kind: 'open' });
    expect(decideAccess([mw, { method: 'POST', path: '/graphql' }], '/graphql')).toEqual({ kind: 'graphql' });
    expect(decideAccess([mw], '/nowhere')).toMatchObject({ kind: 'scoped', scopes: ['admin'], style: 'native' });
    expect(decideAccess([mw], '/2015-03-31/functions')).toMatchObject({ kind: 'scoped', scopes: ['admin'], style: 'lambda' });
    expect(decideAccess([mw, { method: 'GET', path: '/invocations/:id' }, { method: 'POST', path: '/invoke/:name' }], '/x')).toMatchObject({
      kind: 'scoped',
      scopes: ['audit', 'invoke'],
    });
    expect(decideAccess([mw, { method: 'ALL', path: '/invoke/:name' }], '/invoke/x')).toMatchObject({ kind: 'undecided' });
    expect(decideAccess([mw, { method: 'GET', path: '/healthz' }, { method: 'GET', path: '/new' }], '/new')).toMatchObject({ kind: 'undecided' });
  });
});
