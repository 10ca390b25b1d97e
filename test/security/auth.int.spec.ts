// No one in without a key: every HTTP route and every GraphQL root field × no key, an
// invalid key, a key without the scope, a key with it. Refused requests change nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRAPHQL_FIELD_SCOPES, ROUTE_RULES, isMiddleware, routeRule, ruleOfRoute } from '../../apps/api/auth/index.ts';
import { revokeApiKey, type Scope } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { countEvents, moduleFn } from '../api/helpers.ts';
import { bearer, createKeys, firstSubscriptionMessage, gql, startSecureApi, type Keys, type SecureApi } from './helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let keys: Keys;
let knownInvocation: string;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await moduleFn(t.db, 'doomed', 'echo.ts');
  keys = await createKeys(t.db);
  await revokeApiKey(t.db, keys.revoked.id);
  api = await startSecureApi(t.db);
  // one finished invocation for the audit routes to find
  const res = await fetch(`${api.url}/invoke/echo`, { method: 'POST', headers: bearer(keys.invoke), body: '{"seed":1}' });
  knownInvocation = res.headers.get('x-invocation-id') as string;
  expect(knownInvocation).toMatch(/^[0-9a-f-]{36}$/);
});

afterAll(async () => {
  await api?.close();
});

const OTHER_SCOPE: Record<Scope, keyof Keys> = { invoke: 'audit', admin: 'invoke', audit: 'invoke' };
const KEY_WITH: Record<Scope, keyof Keys> = { invoke: 'invoke', admin: 'admin', audit: 'audit' };

interface HttpCase {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: () => string;
  body?: string;
  headers?: Record<string, string>;
  scope: Scope;
  style: 'lambda' | 'native';
  /** status with a key that has the scope */
  allowed: number;
}

const HTTP_ROUTES: HttpCase[] = [
  { name: 'Lambda Invoke', method: 'POST', path: () => '/2015-03-31/functions/echo/invocations', body: '{"a":1}', scope: 'invoke', style: 'lambda', allowed: 200 },
  {
    name: 'Lambda Invoke (Event)',
    method: 'POST',
    path: () => '/2015-03-31/functions/echo%3A1/invocations',
    body: '{}',
    headers: { 'x-amz-invocation-type': 'DryRun' },
    scope: 'invoke',
    style: 'lambda',
    allowed: 204,
  },
  { name: 'legacy InvokeAsync', method: 'POST', path: () => '/2014-11-13/functions/doomed/invoke-async/', body: '{}', scope: 'invoke', style: 'lambda', allowed: 202 },
  { name: 'native invoke', method: 'POST', path: () => '/invoke/echo', body: '{"b":2}', scope: 'invoke', style: 'native', allowed: 200 },
  { name: 'native invoke async', method: 'POST', path: () => '/invoke/doomed?async=true', body: '{}', scope: 'invoke', style: 'native', allowed: 202 },
  { name: 'invocation record', method: 'GET', path: () => `/invocations/${knownInvocation}`, scope: 'audit', style: 'native', allowed: 200 },
  { name: 'metrics', method: 'GET', path: () => '/metrics', scope: 'audit', style: 'native', allowed: 200 },
  { name: 'send queue message', method: 'POST', path: () => '/queues/no-such-queue/messages', body: '{"m":1}', scope: 'invoke', style: 'native', allowed: 404 },
  { name: 'put stream records', method: 'POST', path: () => '/streams/no-such-stream/records', body: '{"partitionKey":"k","data":"AA=="}', scope: 'invoke', style: 'native', allowed: 404 },
  {
    name: 'Kinesis PutRecord',
    method: 'POST',
    path: () => '/',
    body: '{"StreamName":"no-such-stream","PartitionKey":"k","Data":"AA=="}',
    headers: { 'x-amz-target': 'Kinesis_20131202.PutRecord', 'content-type': 'application/x-amz-json-1.1' },
    scope: 'invoke',
    style: 'lambda',
    allowed: 404,
  },
  // tamper evidence: nothing is signed in this database (404), and this API holds no signing key (503)
  { name: 'tree heads', method: 'GET', path: () => '/audit/tree-heads', scope: 'audit', style: 'native', allowed: 200 },
  { name: 'latest tree head', method: 'GET', path: () => '/audit/tree-heads/latest', scope: 'audit', style: 'native', allowed: 404 },
  { name: 'sign a tree head', method: 'POST', path: () => '/audit/tree-heads', scope: 'audit', style: 'native', allowed: 503 },
  { name: 'seal status', method: 'GET', path: () => '/audit/seal', scope: 'audit', style: 'native', allowed: 200 },
  { name: 'invocation proof', method: 'GET', path: () => `/audit/invocations/${knownInvocation}/proof`, scope: 'audit', style: 'native', allowed: 404 },
  { name: 'event proof', method: 'GET', path: () => '/audit/events/1/proof', scope: 'audit', style: 'native', allowed: 404 },
  { name: 'consistency proof', method: 'GET', path: () => '/audit/consistency?from=1', scope: 'audit', style: 'native', allowed: 404 },
  // the EventBridge Scheduler API (docs/schedules.md): a body without Target is a ValidationException
  { name: 'CreateSchedule', method: 'POST', path: () => '/schedules/sec', body: '{}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'UpdateSchedule', method: 'PUT', path: () => '/schedules/sec', body: '{}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'DeleteSchedule', method: 'DELETE', path: () => '/schedules/sec', scope: 'admin', style: 'lambda', allowed: 404 },
  { name: 'GetSchedule', method: 'GET', path: () => '/schedules/sec', scope: 'audit', style: 'lambda', allowed: 404 },
  { name: 'ListSchedules', method: 'GET', path: () => '/schedules', scope: 'audit', style: 'lambda', allowed: 200 },
  // the control plane (docs/control-plane.md): answers that do not change with repetition
  { name: 'ListFunctions', method: 'GET', path: () => '/2015-03-31/functions/', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'CreateFunction (no name)', method: 'POST', path: () => '/2015-03-31/functions', body: '{}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'GetFunction', method: 'GET', path: () => '/2015-03-31/functions/echo', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'DeleteFunction (unknown)', method: 'DELETE', path: () => '/2015-03-31/functions/no-such', scope: 'admin', style: 'lambda', allowed: 404 },
  { name: 'GetFunctionConfiguration', method: 'GET', path: () => '/2015-03-31/functions/echo/configuration', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'UpdateFunctionConfiguration (bad)', method: 'PUT', path: () => '/2015-03-31/functions/echo/configuration', body: '{"Timeout":0}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'UpdateFunctionCode (no zip)', method: 'PUT', path: () => '/2015-03-31/functions/echo/code', body: '{}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'ListVersionsByFunction', method: 'GET', path: () => '/2015-03-31/functions/echo/versions', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'ListAliases', method: 'GET', path: () => '/2015-03-31/functions/echo/aliases', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'GetAlias (unknown)', method: 'GET', path: () => '/2015-03-31/functions/echo/aliases/none', scope: 'admin', style: 'lambda', allowed: 404 },
  { name: 'PutFunctionConcurrency (unknown)', method: 'PUT', path: () => '/2017-10-31/functions/no-such/concurrency', body: '{"ReservedConcurrentExecutions":1}', scope: 'admin', style: 'lambda', allowed: 404 },
  { name: 'GetFunctionConcurrency', method: 'GET', path: () => '/2019-09-30/functions/echo/concurrency', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'GetAccountSettings', method: 'GET', path: () => '/2016-08-19/account-settings', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'GetFunctionEventInvokeConfig (none)', method: 'GET', path: () => '/2019-09-25/functions/echo/event-invoke-config', scope: 'admin', style: 'lambda', allowed: 404 },
  { name: 'ListEventSourceMappings', method: 'GET', path: () => '/2015-03-31/event-source-mappings/', scope: 'admin', style: 'lambda', allowed: 200 },
  { name: 'CreateEventSourceMapping (no ARN)', method: 'POST', path: () => '/2015-03-31/event-source-mappings/', body: '{}', scope: 'admin', style: 'lambda', allowed: 400 },
  { name: 'GetEventSourceMapping (unknown)', method: 'GET', path: () => `/2015-03-31/event-source-mappings/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, scope: 'admin', style: 'lambda', allowed: 404 },
];

async function call(c: HttpCase, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${api.url}${c.path()}`, { method: c.method, headers: { ...c.headers, ...headers }, ...(c.body !== undefined ? { body: c.body } : {}) });
}

async function expectRefused(res: Response, c: HttpCase, status: 401 | 403, lambdaType: string): Promise<void> {
  expect(res.status).toBe(status);
  const body = (await res.json()) as Record<string, unknown>;
  if (c.style === 'lambda') {
    expect(res.headers.get('x-amzn-errortype')).toBe(lambdaType);
    expect(body).toMatchObject({ Type: 'User', message: expect.any(String) });
  } else {
    expect(body).toMatchObject({ error: { code: status === 401 ? 'Unauthorized' : 'Forbidden', message: expect.any(String) } });
    if (status === 401) expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
  }
}

describe.each(HTTP_ROUTES)('$method $name', (c) => {
  it('no key → 401, nothing written', async () => {
    const before = await countEvents(t.db);
    await expectRefused(await call(c), c, 401, 'UnrecognizedClientException');
    expect(await countEvents(t.db)).toBe(before);
  });

  it.each([
    ['wrong secret', () => `il_${keys.all.id}_${'A'.repeat(43)}`],
    ['unknown key id', () => `il_IL${'A'.repeat(18)}_${keys.all.token.slice(-43)}`],
    ['malformed token', () => 'not-a-key'],
    ['revoked key', () => keys.revoked.token],
  ])('invalid key (%s) → 401, nothing written', async (_what, token) => {
    const before = await countEvents(t.db);
    await expectRefused(await call(c, bearer(token())), c, 401, 'UnrecognizedClientException');
    expect(await countEvents(t.db)).toBe(before);
  });

  it('a key without the scope → 403 AccessDenied, nothing written', async () => {
    const before = await countEvents(t.db);
    await expectRefused(await call(c, bearer(keys[OTHER_SCOPE[c.scope]])), c, 403, 'AccessDeniedException');
    expect(await countEvents(t.db)).toBe(before);
  });

  it(`a key with the ${c.scope} scope (alone, or among others) is let through`, async () => {
    for (const key of [keys[KEY_WITH[c.scope]], keys.all]) {
      const res = await call(c, bearer(key));
      expect(res.status).toBe(c.allowed);
      await res.arrayBuffer();
    }
  });
});

describe('open routes', () => {
  it('/healthz needs no key', async () => {
    const res = await fetch(`${api.url}/healthz`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });

  it('/metrics needs the audit scope (it names every function)', async () => {
    expect((await fetch(`${api.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${api.url}/metrics`, { headers: bearer(keys.invoke) })).status).toBe(403);
    const res = await fetch(`${api.url}/metrics`, { headers: bearer(keys.audit) });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });

  it('the GraphiQL page needs no key (its operations do)', async () => {
    const res = await fetch(`${api.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/graphiql/i);
  });

  it('an unknown path needs the admin scope (a route added without a decision is not open)', async () => {
    expect((await fetch(`${api.url}/not-a-route`)).status).toBe(401);
    expect((await fetch(`${api.url}/not-a-route`, { headers: bearer(keys.all) })).status).toBe(404);
    const lambdaStyle = await fetch(`${api.url}/2015-03-31/functions`, { headers: bearer(keys.invoke) });
    expect(lambdaStyle.status).toBe(403);
    expect(lambdaStyle.headers.get('x-amzn-errortype')).toBe('AccessDeniedException');
  });
});

describe('route coverage', () => {
  it('every route the app serves has an explicit rule, and every rule here is tested', () => {
    // middlewares are listed as ALL <prefix>/*; they answer nothing themselves
    const served = api.app.routes.filter((r) => !isMiddleware(r));
    const undecided = served.filter((r) => !ruleOfRoute(r));
    expect(undecided.map((r) => `${r.method} ${r.path}`)).toEqual([]);
    const scoped = ROUTE_RULES.filter((r) => r.access !== 'open' && r.access !== 'graphql');
    for (const rule of scoped) {
      expect(HTTP_ROUTES.some((c) => routeRule(c.method, c.path().split('?')[0] as string) === rule)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------
// GraphQL: per root field

const ZERO = '00000000-0000-0000-0000-000000000000';
let created = 0;

/** `allowed`: the exact error codes with a key that has the scope (default: none); `gated`: only check the gate */
const GRAPHQL_OPERATIONS: Record<string, { kind: 'query' | 'mutation' | 'subscription'; doc: () => string; allowed?: string[]; gated?: true }> = {
  invocation: { kind: 'query', doc: () => `query { invocation(id: "${knownInvocation}") { id status } }` },
  invocations: { kind: 'query', doc: () => 'query { invocations(first: 1) { totalCount } }' },
  deadLetters: { kind: 'query', doc: () => 'query { deadLetters(first: 1) { totalCount } }' },
  functions: { kind: 'query', doc: () => 'query { functions { name } }' },
  function: { kind: 'query', doc: () => 'query { function(name: "echo") { name } }' },
  functionStats: { kind: 'query', doc: () => 'query { functionStats(name: "echo") { __typename } }' },
  functionHistory: { kind: 'query', doc: () => 'query { functionHistory(name: "echo") { action } }' },
  createFunction: {
    kind: 'mutation',
    doc: () => `mutation { createFunction(input: {name: "made_${++created}", runtime: MODULE, handler: "echo.ts", isolation: INLINE}) { name } }`,
  },
  updateFunction: { kind: 'mutation', doc: () => 'mutation { updateFunction(name: "echo", input: {timeoutMs: 4000}) { version } }' },
  deleteFunction: { kind: 'mutation', doc: () => `mutation { deleteFunction(name: "made_${created}") }` },
  invoke: { kind: 'mutation', doc: () => 'mutation { invoke(functionName: "echo", payload: {c: 3}) { id status } }' },
  invokeAsync: { kind: 'mutation', doc: () => 'mutation { invokeAsync(functionName: "doomed", payload: {}) { id status } }' },
  redrive: { kind: 'mutation', doc: () => `mutation { redrive(invocationId: "${ZERO}") { id } }`, allowed: ['InvocationNotFound'] },
  cancelInvocation: { kind: 'mutation', doc: () => `mutation { cancelInvocation(id: "${ZERO}") { id } }`, allowed: ['InvocationNotFound'] },
  queues: { kind: 'query', doc: () => 'query { queues { name } }' },
  queue: { kind: 'query', doc: () => 'query { queue(name: "orders") { name } }' },
  queueDeadLetters: { kind: 'query', doc: () => 'query { queueDeadLetters(queueName: "orders", first: 1) { edges { __typename } } }', gated: true },
  eventSourceMappings: { kind: 'query', doc: () => 'query { eventSourceMappings { id } }' },
  eventSourceMapping: { kind: 'query', doc: () => `query { eventSourceMapping(id: "${ZERO}") { id } }`, gated: true },
  createQueue: { kind: 'mutation', doc: () => `mutation { createQueue(input: {name: "q_${++created}"}) { name } }` },
  sendMessage: { kind: 'mutation', doc: () => 'mutation { sendMessage(queueName: "no_such_queue", body: {m: 1}) { messageId } }', gated: true },
  sendMessageBatch: { kind: 'mutation', doc: () => 'mutation { sendMessageBatch(queueName: "no_such_queue", entries: [{body: 1}]) { messageId } }', gated: true },
  redriveQueueDeadLetters: { kind: 'mutation', doc: () => 'mutation { redriveQueueDeadLetters(queueName: "no_such_queue") }', gated: true },
  createEventSourceMapping: { kind: 'mutation', doc: () => 'mutation { createEventSourceMapping(input: {queueName: "no_such_queue", functionName: "echo"}) { id } }', gated: true },
  updateEventSourceMapping: { kind: 'mutation', doc: () => `mutation { updateEventSourceMapping(id: "${ZERO}", input: {batchSize: 2}) { id } }`, gated: true },
  deleteEventSourceMapping: { kind: 'mutation', doc: () => `mutation { deleteEventSourceMapping(id: "${ZERO}") }`, gated: true },
  brokerEventSourceMappings: { kind: 'query', doc: () => 'query { brokerEventSourceMappings { id } }' },
  brokerEventSourceMapping: { kind: 'query', doc: () => `query { brokerEventSourceMapping(id: "${ZERO}") { id } }`, gated: true },
  createRabbitMqEventSourceMapping: {
    kind: 'mutation',
    doc: () => 'mutation { createRabbitMqEventSourceMapping(input: {url: "amqp://127.0.0.1", queue: "q", functionName: "no_such_fn"}) { id } }',
    gated: true,
  },
  createNatsEventSourceMapping: {
    kind: 'mutation',
    doc: () => 'mutation { createNatsEventSourceMapping(input: {url: "nats://127.0.0.1", stream: "s", functionName: "no_such_fn"}) { id } }',
    gated: true,
  },
  updateBrokerEventSourceMapping: { kind: 'mutation', doc: () => `mutation { updateBrokerEventSourceMapping(id: "${ZERO}", input: {batchSize: 2}) { id } }`, gated: true },
  deleteBrokerEventSourceMapping: { kind: 'mutation', doc: () => `mutation { deleteBrokerEventSourceMapping(id: "${ZERO}") }`, gated: true },
  invocationStats: { kind: 'query', doc: () => `query { invocationStats(since: "${new Date(Date.now() - 3_600_000).toISOString()}", bucketSeconds: 60) { total { points { accepted } } } }` },
  activity: { kind: 'query', doc: () => 'query { activity { runningAttempts } }' },
  deadLetterGroups: { kind: 'query', doc: () => 'query { deadLetterGroups { count } }' },
  invocationEvents: { kind: 'subscription', doc: () => `subscription { invocationEvents(invocationId: "${knownInvocation}") { seq type } }` },
  treeHead: { kind: 'query', doc: () => 'query { treeHead { treeSize } }' },
  invocationProof: { kind: 'query', doc: () => `query { invocationProof(id: "${knownInvocation}") { treeSize } }`, allowed: ['TreeHeadNotFound'] },
  consistencyProof: { kind: 'query', doc: () => 'query { consistencyProof(fromSize: 1) { proof } }', allowed: ['TreeHeadNotFound'] },
  schedules: { kind: 'query', doc: () => 'query { schedules { name } }' },
  schedule: { kind: 'query', doc: () => 'query { schedule(name: "no-such") { name } }', allowed: ['ScheduleNotFound'] },
  scheduleTicks: { kind: 'query', doc: () => 'query { scheduleTicks(name: "no-such") { recorded { outcome } } }' },
  createSchedule: { kind: 'mutation', doc: () => `mutation { createSchedule(input: {name: "s_${++created}", expression: "rate(1 hour)", targetFunction: "echo"}) { name } }` },
  updateSchedule: { kind: 'mutation', doc: () => 'mutation { updateSchedule(input: {name: "no-such", expression: "rate(1 hour)", targetFunction: "echo"}) { name } }', allowed: ['ScheduleNotFound'] },
  deleteSchedule: { kind: 'mutation', doc: () => 'mutation { deleteSchedule(name: "no-such") { name } }', allowed: ['ScheduleNotFound'] },
  setScheduleState: { kind: 'mutation', doc: () => 'mutation { setScheduleState(name: "no-such", state: "DISABLED") { name } }', allowed: ['ScheduleNotFound'] },
  // replays (docs/replay.md): a target that does not exist, so nothing is written
  replay: { kind: 'query', doc: () => `query { replay(id: "${ZERO}") { id } }` },
  replays: { kind: 'query', doc: () => 'query { replays { id } }' },
  streams: { kind: 'query', doc: () => 'query { streams { name } }' },
  stream: { kind: 'query', doc: () => 'query { stream(name: "no_such_stream") { name } }' },
  streamEventSourceMappings: { kind: 'query', doc: () => 'query { streamEventSourceMappings { id } }' },
  streamRecordDeliveries: { kind: 'query', doc: () => 'query { streamRecordDeliveries(streamName: "s", shardId: "shardId-000000000000", sequenceNumber: "1") { invocationId } }' },
  createStream: { kind: 'mutation', doc: () => `mutation { createStream(input: {name: "s_${++created}", shardCount: 1}) { name } }` },
  putRecord: { kind: 'mutation', doc: () => 'mutation { putRecord(streamName: "no_such_stream", partitionKey: "k", data: "AA==") { sequenceNumber } }', gated: true },
  putRecords: { kind: 'mutation', doc: () => 'mutation { putRecords(streamName: "no_such_stream", records: [{partitionKey: "k", data: "AA=="}]) { sequenceNumber } }', gated: true },
  createStreamEventSourceMapping: {
    kind: 'mutation',
    doc: () => 'mutation { createStreamEventSourceMapping(input: {streamName: "no_such_stream", functionName: "echo", startingPosition: LATEST}) { id } }',
    gated: true,
  },
  updateStreamEventSourceMapping: { kind: 'mutation', doc: () => `mutation { updateStreamEventSourceMapping(id: "${ZERO}", input: {batchSize: 2}) { id } }`, gated: true },
  deleteStreamEventSourceMapping: { kind: 'mutation', doc: () => `mutation { deleteStreamEventSourceMapping(id: "${ZERO}") }`, gated: true },
  // change streams (docs/streams.md): a table that does not exist, so no slot is made
  changeStreamEventSourceMappings: { kind: 'query', doc: () => 'query { changeStreamEventSourceMappings { id } }' },
  changeStreamEventSourceMapping: { kind: 'query', doc: () => `query { changeStreamEventSourceMapping(id: "${ZERO}") { id } }` },
  createChangeStreamEventSourceMapping: {
    kind: 'mutation',
    doc: () => 'mutation { createChangeStreamEventSourceMapping(input: {table: "public.no_such_table", functionName: "echo"}) { id } }',
    gated: true,
  },
  deleteChangeStreamEventSourceMapping: { kind: 'mutation', doc: () => `mutation { deleteChangeStreamEventSourceMapping(id: "${ZERO}") }`, gated: true },
  startReplay: { kind: 'mutation', doc: () => 'mutation { startReplay(input: {functionName: "echo", target: "99"}) { id } }', allowed: ['FunctionNotFound'] },
};

/** the errors of a query/mutation, or of the first message of a subscription */
async function run(field: string, headers: Record<string, string>): Promise<{ status: number; codes: (string | undefined)[]; data: unknown }> {
  const op = GRAPHQL_OPERATIONS[field]!;
  if (op.kind === 'subscription') {
    const { status, message } = await firstSubscriptionMessage(api.url, op.doc(), headers);
    const m = message as { data?: unknown; errors?: { extensions?: { code?: string } }[] };
    return { status, codes: (m.errors ?? []).map((e) => e.extensions?.code), data: m.data };
  }
  const { status, body } = await gql(api.url, op.doc(), headers);
  return { status, codes: (body.errors ?? []).map((e) => e.extensions?.code), data: body.data };
}

describe('GraphQL schema coverage', () => {
  it('every root field of the served schema has a scope in the table and an operation in this test', async () => {
    const names = (t: { fields: { name: string }[] } | null) => (t?.fields ?? []).map((f) => f.name).sort();
    const { body } = await gql(
      api.url,
      '{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }',
      bearer(keys.all),
    );
    const s = (body.data as { __schema: Record<string, { fields: { name: string }[] } | null> }).__schema;
    const fields = { query: names(s.queryType!), mutation: names(s.mutationType!), subscription: names(s.subscriptionType!) };
    expect(fields.query).toContain('functions');
    for (const kind of ['query', 'mutation', 'subscription'] as const) {
      expect(Object.keys(GRAPHQL_FIELD_SCOPES[kind]).sort()).toEqual(fields[kind]);
      expect(Object.entries(GRAPHQL_OPERATIONS).filter(([, o]) => o.kind === kind).map(([f]) => f).sort()).toEqual(fields[kind]);
    }
  });
});

const FIELD_CASES = Object.entries(GRAPHQL_OPERATIONS).map(([field, op]) => ({
  field,
  kind: op.kind,
  scope: GRAPHQL_FIELD_SCOPES[op.kind][field] as Scope,
}));

describe.each(FIELD_CASES)('GraphQL $kind $field', ({ field, scope, kind }) => {
  it('no key → Unauthorized, nothing runs', async () => {
    const before = await countEvents(t.db);
    const r = await run(field, {});
    expect(r.codes).toEqual(['Unauthorized']);
    expect(r.data ?? null).toBeNull();
    if (kind !== 'subscription') expect(r.status).toBe(401);
    expect(await countEvents(t.db)).toBe(before);
  });

  it('an invalid or revoked key → Unauthorized', async () => {
    for (const token of [`il_${keys.all.id}_${'B'.repeat(43)}`, keys.revoked.token, 'garbage']) {
      const r = await run(field, bearer(token));
      expect(r.codes).toEqual(['Unauthorized']);
    }
  });

  it(`a key without ${scope} → Forbidden, nothing runs`, async () => {
    const before = await countEvents(t.db);
    const fnCount = await t.db.selectFrom('ledger.function_versions').select((b) => b.fn.countAll().as('n')).executeTakeFirst();
    const r = await run(field, bearer(keys[OTHER_SCOPE[scope]]));
    expect(r.codes).toEqual(['Forbidden']);
    if (kind !== 'subscription') expect(r.status).toBe(403);
    expect(await countEvents(t.db)).toBe(before);
    expect(await t.db.selectFrom('ledger.function_versions').select((b) => b.fn.countAll().as('n')).executeTakeFirst()).toEqual(fnCount);
  });

  it(`a key with ${scope} runs it (no auth error)`, async () => {
    const r = await run(field, bearer(keys[KEY_WITH[scope]]));
    const op = GRAPHQL_OPERATIONS[field]!;
    if (op.gated) {
      // past the gate the resolver answers, possibly that the thing does not exist
      expect(r.codes.filter((c) => c === 'Unauthorized' || c === 'Forbidden')).toEqual([]);
      return;
    }
    expect(r.codes).toEqual(op.allowed ?? []);
    if (r.codes.length === 0) expect(r.data).toHaveProperty(field);
  });
});

describe('GraphQL operations as a whole', () => {
  it('an operation is refused whole when one of its fields lacks the scope: nothing in it runs', async () => {
    const before = await countEvents(t.db);
    const r = await gql(api.url, 'mutation { invoke(functionName: "echo", payload: {}) { id } createFunction(input: {name: "sneaky", runtime: MODULE, handler: "echo.ts"}) { name } }', bearer(keys.invoke));
    expect(r.status).toBe(403);
    expect(r.body.errors?.[0]?.message).toMatch(/createFunction \(admin\)/);
    expect(await countEvents(t.db)).toBe(before);
    expect((await gql(api.url, 'query { function(name: "sneaky") { name } }', bearer(keys.audit))).body.data).toEqual({ function: null });
  });

  it('fields reached through fragments count', async () => {
    const r = await gql(api.url, 'query Q { ...F } fragment F on Query { functions { name } }', bearer(keys.invoke));
    expect(r.body.errors?.[0]?.extensions?.code).toBe('Forbidden');
  });

  it('introspection needs a valid key (any scope); __typename alone needs none', async () => {
    expect((await gql(api.url, '{ __schema { queryType { name } } }')).body.errors?.[0]?.extensions?.code).toBe('Unauthorized');
    expect((await gql(api.url, '{ __schema { queryType { name } } }', bearer(keys.invoke))).body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    expect((await gql(api.url, '{ __typename }')).body).toEqual({ data: { __typename: 'Query' } });
  });

  it('GET queries are checked like POSTs', async () => {
    const res = await fetch(`${api.url}/graphql?query=${encodeURIComponent('{ functions { name } }')}`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code).toBe('Unauthorized');
  });
});

describe('revocation and the default', () => {
  it('a revoked key stops working at once when the cache is off', async () => {
    const { createApiKey } = await import('../../db/keys.ts');
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    const get = () => fetch(`${api.url}/invocations/${knownInvocation}`, { headers: bearer(key) });
    expect((await get()).status).toBe(200);
    await revokeApiKey(t.db, key.id);
    expect((await get()).status).toBe(401);
  });

  it('createApp without an auth option lets everything through (tests, LEDGER_AUTH=off)', async () => {
    const open = await startSecureApi(t.db, { auth: { enabled: false } });
    try {
      const res = await fetch(`${open.url}/invocations/${knownInvocation}`);
      expect(res.status).toBe(200);
      expect((await gql(open.url, 'query { functions { name } }')).body.errors).toBeUndefined();
    } finally {
      await open.close();
    }
  });
});
