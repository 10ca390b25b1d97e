// The native routes: POST /invoke/:name (sync; async with Prefer or ?async=true) and GET /invocations/:id.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { countEvents, eventTypes, moduleFn, startApi, type RunningApi } from './helpers.ts';

let t: TestDatabase;
let api: RunningApi;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await moduleFn(t.db, 'fail', 'fail.ts');
  await moduleFn(t.db, 'counter', 'counter.ts');
  api = await startApi(t.db);
});

afterAll(async () => {
  await api?.close();
});

const post = (path: string, body?: string, headers: Record<string, string> = {}) =>
  fetch(`${api.url}${path}`, { method: 'POST', headers, ...(body === undefined ? {} : { body }) });

interface InvocationJson {
  id: string;
  functionName: string;
  functionVersion: number;
  type: string;
  status: string;
  attempts: number;
  payload: unknown;
  result: unknown;
  error: { errorType: string; errorMessage: string; trace: string[] } | null;
  acceptedAt: string;
  finishedAt: string | null;
  events: { position: string; seq: number; type: string; attempt: number | null; occurredAt: string; data: Record<string, unknown> }[];
}

describe('POST /invoke/:name', () => {
  it('sync: 200 with the result; GET /invocations/:id has the whole story', async () => {
    const res = await post('/invoke/echo', '{"hello":"world"}');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ hello: 'world' });
    const id = res.headers.get('x-invocation-id') as string;
    expect(res.headers.get('x-amzn-requestid')).toBe(id);
    expect(res.headers.get('x-function-version')).toBe('1');

    const got = await fetch(`${api.url}/invocations/${id}`);
    expect(got.status).toBe(200);
    const inv = (await got.json()) as InvocationJson;
    expect(inv).toMatchObject({
      id,
      functionName: 'echo',
      functionVersion: 1,
      type: 'sync',
      status: 'succeeded',
      attempts: 1,
      payload: { hello: 'world' },
      result: { hello: 'world' },
      error: null,
    });
    expect(Date.parse(inv.acceptedAt)).not.toBeNaN();
    expect(Date.parse(inv.finishedAt as string)).toBeGreaterThanOrEqual(Date.parse(inv.acceptedAt));
    expect(inv.events.map((e) => [e.seq, e.type, e.attempt])).toEqual([
      [1, 'accepted', null],
      [2, 'started', 1],
      [3, 'succeeded', 1],
    ]);
    expect(inv.events[0]?.data).toMatchObject({ functionName: 'echo', functionVersion: 1, invocationType: 'sync', payload: { hello: 'world' } });
    expect(BigInt(inv.events[2]?.position as string)).toBeGreaterThan(BigInt(inv.events[0]?.position as string));
  });

  it('sync function error: 200 with X-Function-Error and the error body', async () => {
    const res = await post('/invoke/fail', '{"reason":"out of stock"}');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-function-error')).toBe('OrderRejected');
    const body = (await res.json()) as { errorType: string; errorMessage: string };
    expect(body).toMatchObject({ errorType: 'OrderRejected', errorMessage: 'rejected: out of stock' });
    const inv = (await (await fetch(`${api.url}/invocations/${res.headers.get('x-invocation-id')}`)).json()) as InvocationJson;
    expect(inv.status).toBe('failed');
    expect(inv.error).toMatchObject({ errorType: 'OrderRejected' });
  });

  it('Prefer: respond-async → 202 {invocationId} + Location, queued', async () => {
    const res = await post('/invoke/echo', '{"n":1}', { Prefer: 'wait=5, respond-async' });
    expect(res.status).toBe(202);
    const { invocationId } = (await res.json()) as { invocationId: string };
    expect(res.headers.get('location')).toBe(`/invocations/${invocationId}`);
    const inv = (await (await fetch(`${api.url}${res.headers.get('location')}`)).json()) as InvocationJson;
    expect(inv).toMatchObject({ id: invocationId, type: 'async', status: 'queued', attempts: 0, payload: { n: 1 }, finishedAt: null });
    expect(inv.events.map((e) => e.type)).toEqual(['accepted']);
  });

  it('?async=true → 202 as well', async () => {
    const res = await post('/invoke/echo?async=true', '{"n":2}');
    expect(res.status).toBe(202);
    const { invocationId } = (await res.json()) as { invocationId: string };
    expect(await eventTypes(t.db, invocationId)).toEqual(['accepted']);
  });

  it('an empty body is {}', async () => {
    const res = await post('/invoke/echo');
    expect(await res.json()).toEqual({});
  });

  it('Idempotency-Key: async twice is one invocation; sync twice runs once', async () => {
    const before = await countEvents(t.db);
    const a = await post('/invoke/echo?async=true', '{"k":1}', { 'Idempotency-Key': 'native-async-1' });
    const b = await post('/invoke/echo', '{"k":1}', { 'X-Idempotency-Key': 'native-async-1', Prefer: 'respond-async' });
    const idA = ((await a.json()) as { invocationId: string }).invocationId;
    expect(((await b.json()) as { invocationId: string }).invocationId).toBe(idA);
    expect(await countEvents(t.db)).toBe(before + 1);

    const s1 = await post('/invoke/counter', '{}', { 'Idempotency-Key': 'native-sync-1' });
    const s2 = await post('/invoke/counter', '{}', { 'Idempotency-Key': 'native-sync-1' });
    expect(s2.headers.get('x-invocation-id')).toBe(s1.headers.get('x-invocation-id'));
    expect(await s2.json()).toEqual(await s1.json());
    expect(await eventTypes(t.db, s1.headers.get('x-invocation-id') as string)).toEqual(['accepted', 'started', 'succeeded']);
  });
});

describe('native errors: {"error": {code, message}} with the Lambda status table', () => {
  it.each([
    ['unknown function', '/invoke/ghost', '{}', {}, 404, 'FunctionNotFound'],
    ['unknown version', '/invoke/echo?version=5', '{}', {}, 404, 'FunctionNotFound'],
    ['bad name', `/invoke/${encodeURIComponent('no way')}`, '{}', {}, 400, 'InvalidParameter'],
    ['body not JSON', '/invoke/echo', 'nope', {}, 400, 'InvalidRequestContent'],
    ['async body over 1 MB', '/invoke/echo?async=true', JSON.stringify({ s: 'x'.repeat(1_048_576) }), {}, 413, 'PayloadTooLarge'],
    ['sync body over 6 MB', '/invoke/echo', JSON.stringify({ s: 'x'.repeat(6_291_456) }), {}, 413, 'PayloadTooLarge'],
    ['empty idempotency key', '/invoke/echo', '{}', { 'Idempotency-Key': '' }, 400, 'InvalidParameter'],
  ] as const)('%s', async (_what, path, body, headers, status, code) => {
    const before = await countEvents(t.db);
    const res = await post(path, body, headers);
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe(code);
    expect(json.error.message).toEqual(expect.any(String));
    expect(await countEvents(t.db)).toBe(before);
  });

  it('GET /invocations/:id: 404 for an unknown id and for a malformed one', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const res = await fetch(`${api.url}/invocations/${id}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('InvocationNotFound');
    }
  });
});

describe('function lookups', () => {
  it('an update made through this process is invoked at its new version at once (forgetFunction)', async () => {
    await moduleFn(t.db, 'versioned', 'echo.ts');
    expect((await post('/invoke/versioned', '{}')).headers.get('x-function-version')).toBe('1'); // now cached
    await updateFunction(t.db, 'versioned', { memoryMb: 128 });
    api.invoke.forgetFunction('versioned');
    expect((await post('/invoke/versioned', '{}')).headers.get('x-function-version')).toBe('2');
    expect((await post('/invoke/versioned?version=1', '{}')).headers.get('x-function-version')).toBe('1');
  });

  it('a function created after a miss is found at once (misses are not cached)', async () => {
    expect((await post('/invoke/late', '{}')).status).toBe(404);
    await moduleFn(t.db, 'late', 'echo.ts');
    expect((await post('/invoke/late', '{"x":1}')).status).toBe(200);
  });
});
