// The bad-input matrix: malformed, hostile and out-of-range requests over HTTP (Lambda and
// native routes) and GraphQL. Each gets its documented status and error code, and the
// number of events in the ledger is unchanged. Plus a fast-check fuzz of the invoke routes.
import net from 'node:net';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFunction } from '../../db/functions.ts';
import { MAX_JSON_DEPTH } from '../../db/storable.ts';
import { countEvents, moduleFn, startApi, type RunningApi } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let api: RunningApi;

beforeAll(async () => {
  t = await createTestDatabase();
  api = await startApi(t.db);
  await moduleFn(t.db, 'echo', 'echo.ts');
  await createFunction(t.db, 'echo2', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
  await createFunction(t.db, 'echo-thread', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'thread', memoryMb: 64 });
});

afterAll(async () => {
  await api.close();
});

interface HttpCase {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | ArrayBuffer;
  status: number;
  /** x-amzn-ErrorType (Lambda routes) or error.code (native routes) */
  code?: string;
}

const lambda = (name: string) => `/2015-03-31/functions/${name}/invocations`;
const big = (bytes: number) => `{"x":"${'a'.repeat(bytes)}"}`;

const httpCases: HttpCase[] = [
  // malformed and truncated JSON
  { name: 'malformed JSON', path: lambda('echo'), body: '{', status: 400, code: 'InvalidRequestContentException' },
  { name: 'truncated JSON', path: lambda('echo'), body: '{"a": [1, 2', status: 400, code: 'InvalidRequestContentException' },
  { name: 'trailing garbage after JSON', path: lambda('echo'), body: '{"a":1} x', status: 400, code: 'InvalidRequestContentException' },
  { name: 'invalid UTF-8', path: lambda('echo'), body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]).buffer, status: 400, code: 'InvalidRequestContentException' },
  { name: 'bare word', path: lambda('echo'), body: 'hello', status: 400, code: 'InvalidRequestContentException' },
  { name: 'async malformed JSON', path: lambda('echo'), headers: { 'X-Amz-Invocation-Type': 'Event' }, body: '{"a":', status: 400, code: 'InvalidRequestContentException' },
  { name: 'dry run malformed JSON', path: lambda('echo'), headers: { 'X-Amz-Invocation-Type': 'DryRun' }, body: '[', status: 400, code: 'InvalidRequestContentException' },
  { name: 'legacy invoke-async malformed JSON', path: '/2014-11-13/functions/echo/invoke-async', body: '{{', status: 400, code: 'InvalidRequestContentException' },
  // unknown functions and hostile names
  { name: 'unknown function', path: lambda('nope'), body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'unknown function, async', path: lambda('nope'), headers: { 'X-Amz-Invocation-Type': 'Event' }, body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'unknown function, dry run', path: lambda('nope'), headers: { 'X-Amz-Invocation-Type': 'DryRun' }, body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'path traversal in the name', path: lambda('..%2F..%2Fetc%2Fpasswd'), body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'SQL metacharacters in the name', path: lambda(encodeURIComponent("echo';drop table ledger.events;--")), body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'name over 64 characters', path: lambda('a'.repeat(65)), body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'NUL byte in the name', path: lambda('echo%00'), body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'malformed ARN', path: lambda(encodeURIComponent('arn:aws:lambda:us-east-1:123:function')), body: '{}', status: 400, code: 'InvalidParameterValueException' },
  // qualifiers and invocation types
  { name: 'qualifier conflict', path: `${lambda('echo%3A1')}?Qualifier=2`, body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'non-numeric qualifier', path: `${lambda('echo')}?Qualifier=prod;drop`, body: '{}', status: 400, code: 'InvalidParameterValueException' },
  // like Lambda, a well-formed qualifier that names no version is an unknown alias: 404
  { name: 'negative qualifier', path: `${lambda('echo')}?Qualifier=-1`, body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'huge qualifier', path: `${lambda('echo')}?Qualifier=99999999999999999999`, body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'unknown version', path: `${lambda('echo')}?Qualifier=999`, body: '{}', status: 404, code: 'ResourceNotFoundException' },
  { name: 'invalid invocation type', path: lambda('echo'), headers: { 'X-Amz-Invocation-Type': 'Fire' }, body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'invalid log type', path: lambda('echo'), headers: { 'X-Amz-Log-Type': 'Everything' }, body: '{}', status: 400, code: 'InvalidParameterValueException' },
  { name: 'client context not base64 JSON', path: lambda('echo'), headers: { 'X-Amz-Client-Context': '%%%not-base64' }, body: '{}', status: 400 },
  // sizes
  { name: 'sync body over 6 MB', path: lambda('echo'), body: big(6_291_456), status: 413, code: 'RequestEntityTooLargeException' },
  { name: 'async body over 1 MB', path: lambda('echo'), headers: { 'X-Amz-Invocation-Type': 'Event' }, body: big(1_048_576), status: 413, code: 'RequestEntityTooLargeException' },
  { name: 'legacy async body over 1 MB', path: '/2014-11-13/functions/echo/invoke-async/', body: big(1_048_576), status: 413, code: 'RequestEntityTooLargeException' },
  { name: 'header over 16 KB', path: lambda('echo'), headers: { 'X-Padding': 'p'.repeat(20_000) }, body: '{}', status: 431 },
  // native routes
  { name: 'native: unknown function', path: '/invoke/nope', body: '{}', status: 404, code: 'FunctionNotFound' },
  { name: 'native: malformed JSON', path: '/invoke/echo', body: '{"a"', status: 400, code: 'InvalidRequestContent' },
  { name: 'native: path traversal', path: '/invoke/..%2F..%2Fetc', body: '{}', status: 400, code: 'InvalidParameter' },
  { name: 'native: async over 1 MB', path: '/invoke/echo?async=true', body: big(1_048_576), status: 413, code: 'PayloadTooLarge' },
  { name: 'native: unknown invocation id', method: 'GET', path: '/invocations/00000000-0000-4000-8000-000000000000', status: 404, code: 'InvocationNotFound' },
  { name: 'native: invocation id with SQL', method: 'GET', path: `/invocations/${encodeURIComponent("1' or '1'='1")}`, status: 404, code: 'InvocationNotFound' },
];

async function send(c: HttpCase): Promise<Response> {
  return fetch(`${api.url}${c.path}`, {
    method: c.method ?? 'POST',
    headers: c.headers,
    ...(c.method === 'GET' ? {} : { body: c.body }),
  });
}

describe('bad input over HTTP', () => {
  for (const c of httpCases) {
    it(`${c.name} → ${c.status}${c.code ? ` ${c.code}` : ''}, no event written`, async () => {
      const before = await countEvents(t.db);
      const res = await send(c);
      const text = await res.text();
      expect(res.status, text.slice(0, 300)).toBe(c.status);
      if (c.code) {
        const lambdaRoute = c.path.startsWith('/20');
        const code = lambdaRoute ? res.headers.get('x-amzn-errortype') : (JSON.parse(text) as { error: { code: string } }).error.code;
        expect(code).toBe(c.code);
        if (lambdaRoute) expect(JSON.parse(text)).toMatchObject({ Type: 'User', message: expect.any(String) });
      }
      expect(await countEvents(t.db)).toBe(before);
    });
  }
});

interface GqlCase {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  /** extensions.code of the first error */
  code: string;
}

const gqlCases: GqlCase[] = [
  { name: 'invoke of an unknown function', query: 'mutation { invoke(functionName: "nope") { id } }', code: 'FunctionNotFound' },
  { name: 'invoke with a traversal name', query: 'mutation { invoke(functionName: "../../etc/passwd") { id } }', code: 'InvalidParameter' },
  { name: 'invokeAsync with SQL in the name', query: `mutation { invokeAsync(functionName: "x'; drop table ledger.events; --") { id } }`, code: 'InvalidParameter' },
  { name: 'createFunction with a bad name', query: 'mutation { createFunction(input: {name: "a b", runtime: MODULE, handler: "echo.ts"}) { name } }', code: 'InvalidParameter' },
  { name: 'createFunction with a negative timeout', query: 'mutation { createFunction(input: {name: "t1", runtime: MODULE, handler: "echo.ts", timeoutMs: -1}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'createFunction with a huge timeout', query: 'mutation { createFunction(input: {name: "t2", runtime: MODULE, handler: "echo.ts", timeoutMs: 2000000000}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'createFunction with maxRetries 11', query: 'mutation { createFunction(input: {name: "t3", runtime: MODULE, handler: "echo.ts", maxRetries: 11}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'createFunction with memory 0', query: 'mutation { createFunction(input: {name: "t4", runtime: MODULE, handler: "echo.ts", memoryMb: 0}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'handler path outside FUNCTIONS_DIR', query: 'mutation { createFunction(input: {name: "t5", runtime: MODULE, handler: "../../../etc/passwd"}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'absolute handler path outside FUNCTIONS_DIR', query: 'mutation { createFunction(input: {name: "t6", runtime: MODULE, handler: "/etc/passwd"}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'HTTP function with a file: URL', query: 'mutation { createFunction(input: {name: "t7", runtime: HTTP, url: "file:///etc/passwd"}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'destination that is neither function: nor a URL', query: 'mutation { createFunction(input: {name: "t8", runtime: MODULE, handler: "echo.ts", onFailure: "ftp://x"}) { name } }', code: 'InvalidFunctionConfig' },
  { name: 'wrong type for a field', query: 'mutation { createFunction(input: {name: "t9", runtime: MODULE, handler: "echo.ts", timeoutMs: "abc"}) { name } }', code: 'GRAPHQL_VALIDATION_FAILED' },
  { name: 'syntax error', query: 'mutation { invoke(functionName: "echo" { id } }', code: 'GRAPHQL_PARSE_FAILED' },
  { name: 'page size over the cap', query: '{ invocations(first: 1000) { edges { cursor } } }', code: 'InvalidParameter' },
  { name: 'garbage cursor', query: '{ invocations(first: 5, after: "!!!") { edges { cursor } } }', code: 'InvalidParameter' },
  { name: 'redrive of an unknown invocation', query: 'mutation { redrive(invocationId: "00000000-0000-4000-8000-000000000000") { id } }', code: 'InvocationNotFound' },
  { name: 'cancel with an id that is not a uuid', query: `mutation { cancelInvocation(id: "1' or '1'='1") { id } }`, code: 'InvocationNotFound' },
  {
    name: 'a query nested past the depth limit',
    query: '{ __type(name: "Query") { fields { type { fields { type { fields { type { fields { type { fields { name } } } } } } } } } } }',
    code: 'QueryTooDeep',
  },
  {
    name: 'an alias flood',
    query: `{ ${Array.from({ length: 2000 }, (_, i) => `a${i}: functions { name }`).join(' ')} }`,
    code: 'QueryTooComplex',
  },
];

async function gql(query: string, variables?: Record<string, unknown>) {
  const res = await fetch(`${api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, body: (await res.json()) as { data?: unknown; errors?: { extensions?: { code?: string } }[] } };
}

describe('bad input over GraphQL', () => {
  for (const c of gqlCases) {
    it(`${c.name} → ${c.code}, no event written`, async () => {
      const before = await countEvents(t.db);
      const { body } = await gql(c.query, c.variables);
      expect(body.errors?.[0]?.extensions?.code, JSON.stringify(body).slice(0, 400)).toBe(c.code);
      expect(await countEvents(t.db)).toBe(before);
    });
  }

  it('a body that is not JSON → 400, no event written', async () => {
    const before = await countEvents(t.db);
    const res = await fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": ' });
    expect(res.status).toBe(400);
    expect(await countEvents(t.db)).toBe(before);
  });
});

describe('fuzzing the invoke routes', () => {
  const documented = new Set([200, 202, 204, 400, 404, 413, 431]);

  it('property: any name, headers and body get a documented status, and only accepted requests write events', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant('echo'), fc.string({ maxLength: 80 }), fc.constantFrom('echo:1', 'echo:$LATEST', 'arn:aws:lambda:us-east-1:1:function:echo', '%', '..')),
        fc.constantFrom(undefined, 'RequestResponse', 'Event', 'DryRun', 'event', ''),
        fc.oneof(fc.json(), fc.string({ maxLength: 200 }), fc.constant('')),
        fc.constantFrom('lambda', 'native', 'native-async'),
        async (name, invocationType, body, route) => {
          const before = await countEvents(t.db);
          const encoded = encodeURIComponent(name);
          const path = route === 'lambda' ? lambda(encoded) : `/invoke/${encoded}${route === 'native-async' ? '?async=true' : ''}`;
          const headers: Record<string, string> = {};
          if (invocationType !== undefined && route === 'lambda') headers['X-Amz-Invocation-Type'] = invocationType;
          const res = await fetch(`${api.url}${path}`, { method: 'POST', headers, body });
          await res.arrayBuffer();
          expect(documented.has(res.status) || res.status === 405 || (res.status === 404 && !name), `status ${res.status} for ${path}`).toBe(true);
          expect(res.status).toBeLessThan(500);
          const after = await countEvents(t.db);
          if (res.status >= 400 || res.status === 204) expect(after).toBe(before);
        },
      ),
      { numRuns: 150 },
    );
  });
});

// One request PostgreSQL cannot store must be refused alone: its neighbours in the same
// group commit (accepts from concurrent requests share one statement) are accepted.
describe('one bad item in a group commit', () => {
  const CONCURRENT = 300;
  const POISON_AT = 150;
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const poisons = [
    { name: 'a NUL in a string', body: '{"a":"\\u0000"}' },
    { name: 'a NUL in a key', body: '{"\\u0000":1}' },
    { name: 'a lone surrogate', body: '{"a":"\\ud800"}' },
    { name: 'JSON nested 5,000 deep', body: deep(5000) },
  ];
  const routes: { name: string; path: string; headers: Record<string, string>; code: string }[] = [
    { name: 'native async', path: '/invoke/echo?async=true', headers: {}, code: 'InvalidRequestContent' },
    { name: 'Lambda Event', path: lambda('echo'), headers: { 'X-Amz-Invocation-Type': 'Event' }, code: 'InvalidRequestContentException' },
  ];

  for (const p of poisons) {
    for (const r of routes) {
      it(`${CONCURRENT} concurrent ${r.name} invokes with ${p.name}: the others are 202, it alone is 400, nothing of it written`, async () => {
        const before = await countEvents(t.db);
        const responses = await Promise.all(
          Array.from({ length: CONCURRENT }, async (_, i) => {
            const res = await fetch(`${api.url}${r.path}`, { method: 'POST', headers: r.headers, body: i === POISON_AT ? p.body : `{"n":${i}}` });
            return { status: res.status, errorType: res.headers.get('x-amzn-errortype'), text: await res.text() };
          }),
        );
        const good = responses.filter((_, i) => i !== POISON_AT);
        const statuses = good.reduce<Record<number, number>>((acc, x) => ({ ...acc, [x.status]: (acc[x.status] ?? 0) + 1 }), {});
        const bad = responses[POISON_AT] as { status: number; errorType: string | null; text: string };
        expect({ good: statuses, bad: bad.status }, `good requests by status; the bad one: ${bad.text.slice(0, 200)}`).toEqual({ good: { 202: CONCURRENT - 1 }, bad: 400 });
        const code = r.name === 'Lambda Event' ? bad.errorType : (JSON.parse(bad.text) as { error: { code: string } }).error.code;
        expect(code).toBe(r.code);
        expect(await countEvents(t.db)).toBe(before + CONCURRENT - 1);
      });
    }
  }

  const gqlPoisons = [
    { name: 'a NUL in the idempotencyKey', variables: { p: { a: 1 }, k: 'key\u0000' }, code: 'InvalidParameter' },
    { name: 'a lone surrogate in the idempotencyKey', variables: { p: { a: 1 }, k: 'key\ud800' }, code: 'InvalidParameter' },
    { name: 'a NUL in the payload', variables: { p: { a: 'x\u0000' }, k: null }, code: 'InvalidRequestContent' },
    { name: 'a lone surrogate in the payload', variables: { p: ['\udfff'], k: null }, code: 'InvalidRequestContent' },
    { name: 'a payload nested 5,000 deep', variables: { p: JSON.parse(deep(5000)) as unknown, k: null }, code: 'InvalidRequestContent' },
  ];
  for (const p of gqlPoisons) {
    it(`${CONCURRENT} concurrent GraphQL invokeAsync with ${p.name}: the others are accepted, it alone fails with ${p.code}`, async () => {
      const before = await countEvents(t.db);
      const query = 'mutation($p: JSON, $k: String) { invokeAsync(functionName: "echo", payload: $p, idempotencyKey: $k) { id } }';
      const bodies = await Promise.all(
        Array.from({ length: CONCURRENT }, async (_, i) => {
          const variables = i === POISON_AT ? p.variables : { p: { n: i }, k: `k-${p.name}-${i}` };
          // JSON.stringify cannot write 5,000 levels: the poisoned body is assembled by hand
          const body = i === POISON_AT && p.name.includes('deep') ? `{"query":${JSON.stringify(query)},"variables":{"p":${deep(5000)},"k":null}}` : JSON.stringify({ query, variables });
          const res = await fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' }, body });
          return (await res.json()) as { data?: { invokeAsync?: { id: string } | null }; errors?: { extensions?: { code?: string } }[] };
        }),
      );
      const accepted = bodies.filter((b, i) => i !== POISON_AT && b.data?.invokeAsync?.id).length;
      const bad = bodies[POISON_AT];
      expect({ accepted, bad: bad?.errors?.[0]?.extensions?.code }, JSON.stringify(bad).slice(0, 300)).toEqual({ accepted: CONCURRENT - 1, bad: p.code });
      expect(await countEvents(t.db)).toBe(before + CONCURRENT - 1);
    });
  }

  it('GraphQL literals are checked like variables', async () => {
    const before = await countEvents(t.db);
    const nul = await gql('mutation { invokeAsync(functionName: "echo", payload: {a: "x\\u0000"}) { id } }');
    const key = await gql('mutation { invokeAsync(functionName: "echo", payload: {}, idempotencyKey: "k\\u0000") { id } }');
    const nested = await gql(`mutation { invokeAsync(functionName: "echo", payload: ${deep(MAX_JSON_DEPTH + 1)}) { id } }`);
    expect([nul, key, nested].map((r) => r.body.errors?.[0]?.extensions?.code)).toEqual(['InvalidRequestContent', 'InvalidParameter', 'InvalidRequestContent']);
    expect(await countEvents(t.db)).toBe(before);
  });

  it(`a payload nested exactly ${MAX_JSON_DEPTH} deep is accepted and reaches a handler in a thread; one level more is refused`, async () => {
    const res = await fetch(`${api.url}${lambda('echo-thread')}`, { method: 'POST', body: deep(MAX_JSON_DEPTH) });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-amz-function-error')).toBeNull();
    expect(await res.text()).toBe(deep(MAX_JSON_DEPTH));
    const over = await fetch(`${api.url}${lambda('echo-thread')}`, { method: 'POST', body: deep(MAX_JSON_DEPTH + 1) });
    expect(over.status).toBe(400);
    expect(await over.json()).toMatchObject({ message: `The request body cannot be stored: JSON nested more than ${MAX_JSON_DEPTH} levels deep` });
  });

  it('a queue message body PostgreSQL cannot store is refused alone with 400 InvalidRequestContent, over HTTP and GraphQL', async () => {
    await gql('mutation { createQueue(input: {name: "badq"}) { name } }');
    const bad = ['{"a":"\\u0000"}', '"\\ud800"', deep(5000)];
    const responses = await Promise.all(
      Array.from({ length: CONCURRENT }, async (_, i) => {
        const body = i % 100 === 50 ? (bad[Math.floor(i / 100)] as string) : `{"n":${i}}`;
        const res = await fetch(`${api.url}/queues/badq/messages`, { method: 'POST', body });
        return { i, status: res.status, body: (await res.json()) as { error?: { code: string } } };
      }),
    );
    const summary = responses.map((r) => (r.i % 100 === 50 ? `bad:${r.status}:${r.body.error?.code}` : `good:${r.status}`));
    expect(summary.filter((s) => s.startsWith('good')).every((s) => s === 'good:201'), summary.join(' ')).toBe(true);
    expect(summary.filter((s) => s.startsWith('bad'))).toEqual(Array(3).fill('bad:400:InvalidRequestContent'));
    const viaGraphql = await gql('mutation($b: JSON!) { sendMessage(queueName: "badq", body: $b) { messageId } }', { b: { a: '\u0000' } });
    expect(viaGraphql.body.errors?.[0]?.extensions?.code).toBe('InvalidRequestContent');
    const batch = await gql('mutation($e: [SendMessageEntry!]!) { sendMessageBatch(queueName: "badq", entries: $e) { messageId } }', { e: [{ body: 1 }, { body: '\ud800' }] });
    expect(batch.body.errors?.[0]?.extensions?.code).toBe('InvalidRequestContent');
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.messages where queue_name = 'badq'`.execute(t.db);
    expect(rows[0]?.n).toBe(CONCURRENT - 3);
  });
});

/** Writes raw bytes on one connection; returns everything the server sent until it closed. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (received += d));
    socket.on('end', () => resolve(received));
    socket.on('close', () => resolve(received));
    socket.on('error', (e) => (received ? resolve(received) : reject(e)));
    socket.write(bytes, 'latin1');
  });
}

// A Content-Length shorter than the body: the bytes after it are not HTTP. Whatever the
// first answer is, the ledger must agree with it: refused means nothing written.
describe('a wrong Content-Length with trailing bytes', () => {
  const targets = [
    { name: 'Lambda Event', path: lambda('echo'), headers: 'X-Amz-Invocation-Type: Event\r\n' },
    { name: 'Lambda RequestResponse', path: lambda('echo'), headers: '' },
    { name: 'native async', path: '/invoke/echo?async=true', headers: '' },
    { name: 'native sync', path: '/invoke/echo', headers: '' },
  ];
  for (const target of targets) {
    it(`${target.name}: the first answer and the ledger agree`, async () => {
      const before = await countEvents(t.db);
      const port = Number(new URL(api.url).port);
      const received = await rawExchange(
        port,
        `POST ${target.path} HTTP/1.1\r\nHost: x\r\n${target.headers}Content-Length: 2\r\n\r\n{}garbage that is not a request\r\n\r\n`,
      );
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]);
      // an invocation accepted after all would show in the ledger by now (before the fix it
      // did, after Node's 400); the wait can only hide that bug, never fail a correct server
      await new Promise((r) => setTimeout(r, 300));
      const written = (await countEvents(t.db)) - before;
      expect({ status, written }, received.slice(0, 300)).toEqual({ status: 400, written: 0 });
      expect(received).toMatch(target.name.startsWith('Lambda') ? /x-amzn-errortype: InvalidRequestContentException/i : /"code":"InvalidRequestContent"/);
    });
  }

  it('bytes that arrive while the function runs: the request gets its true answer first, then the connection its 400', async () => {
    await moduleFn(t.db, 'sleepy', 'sleep.ts', { timeoutMs: 10_000 });
    const port = Number(new URL(api.url).port);
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (received += d));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(`POST /invoke/sleepy HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{"ms":1500}`);
    const { rows } = await waitForRows(async () => sql<{ id: string }>`select id from ledger.invocations where function_name = 'sleepy' and status = 'running'`.execute(t.db));
    socket.write('not http at all\r\n\r\n');
    await closed;
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((r) => r.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
    expect(responses[0]).toContain('{"slept":1500}');
    const { rows: status } = await sql<{ status: string }>`select status from ledger.invocations where id = ${rows[0]?.id}::uuid`.execute(t.db);
    expect(status[0]?.status).toBe('succeeded');
  });
});

async function waitForRows<R extends { rows: unknown[] }>(probe: () => Promise<R>): Promise<R> {
  for (;;) {
    const r = await probe();
    if (r.rows.length > 0) return r;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
