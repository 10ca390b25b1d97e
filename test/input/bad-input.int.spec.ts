// The bad-input matrix: malformed, hostile and out-of-range requests over HTTP (Lambda and
// native routes) and GraphQL. Each gets its documented status and error code, and the
// number of events in the ledger is unchanged. Plus a fast-check fuzz of the invoke routes.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFunction } from '../../db/functions.ts';
import { countEvents, moduleFn, startApi, type RunningApi } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let api: RunningApi;

beforeAll(async () => {
  t = await createTestDatabase();
  api = await startApi(t.db);
  await moduleFn(t.db, 'echo', 'echo.ts');
  await createFunction(t.db, 'echo2', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
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
