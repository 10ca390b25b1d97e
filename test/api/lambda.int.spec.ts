// The Lambda-compatible Invoke API through the unmodified AWS SDK v3 and raw HTTP.
import {
  InvalidParameterValueException,
  InvalidRequestContentException,
  InvokeCommand,
  LambdaServiceException,
  ResourceNotFoundException,
  type LambdaClient,
} from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInvocation } from '../../db/invocations.ts';
import { updateFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { countEvents, eventTypes, fromBytes, json, lambdaClient, moduleFn, startApi, type RunningApi } from './helpers.ts';

let t: TestDatabase;
let api: RunningApi;
let lambda: LambdaClient;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await updateFunction(t.db, 'echo', { memoryMb: 128 }); // version 2
  await moduleFn(t.db, 'fail', 'fail.ts');
  await moduleFn(t.db, 'logs', 'logs.ts', { isolation: 'thread', memoryMb: 64 });
  await moduleFn(t.db, 'context', 'context.ts');
  await moduleFn(t.db, 'slow', 'sleep.ts', { isolation: 'thread', memoryMb: 64, timeoutMs: 300 });
  await moduleFn(t.db, 'counter', 'counter.ts');
  api = await startApi(t.db);
  lambda = lambdaClient(api.url);
});

afterAll(async () => {
  lambda?.destroy();
  await api?.close();
});

/**
 * The SDK call fails with `cls` (a class the SDK models, or the name of one it does not:
 * like AWS, the 413 is RequestEntityTooLargeException, which the SDK surfaces as a
 * LambdaServiceException of that name), and the ledger did not change.
 */
async function rejects(cmd: InvokeCommand, cls: (new (...a: never[]) => LambdaServiceException) | string): Promise<LambdaServiceException> {
  const before = await countEvents(t.db);
  const err = await lambda.send(cmd).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(typeof cls === 'string' ? LambdaServiceException : cls);
  expect(await countEvents(t.db)).toBe(before);
  const e = err as LambdaServiceException;
  expect(e.name).toBe(typeof cls === 'string' ? cls : cls.name);
  expect(e.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
  return e;
}

describe('RequestResponse', () => {
  it('returns the result with the executed version and the invocation id as request id', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'echo', Payload: json({ a: 1 }) }));
    expect(out.StatusCode).toBe(200);
    expect(out.FunctionError).toBeUndefined();
    expect(fromBytes(out.Payload)).toEqual({ a: 1 });
    // Lambda: an unqualified invoke executes (and answers) $LATEST; the ledger keeps the number
    expect(out.ExecutedVersion).toBe('$LATEST');
    const id = out.$metadata.requestId as string;
    const view = await getInvocation(t.db, id);
    expect(view?.status).toBe('succeeded');
    expect(view?.invocationType).toBe('sync');
    expect(view?.functionVersion).toBe(2);
    expect(await eventTypes(t.db, id)).toEqual(['accepted', 'started', 'succeeded']);
  });

  it('an empty payload is {}', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'echo' }));
    expect(fromBytes(out.Payload)).toEqual({});
  });

  it('accepts name:version, ?Qualifier, $LATEST, full and partial ARNs', async () => {
    const cases: [string, string | undefined, string][] = [
      ['echo:1', undefined, '1'],
      ['echo', '1', '1'],
      ['echo:1', '1', '1'],
      ['echo', '$LATEST', '$LATEST'],
      ['echo:$LATEST', undefined, '$LATEST'],
      ['arn:aws:lambda:us-east-1:123456789012:function:echo', undefined, '$LATEST'],
      ['arn:aws:lambda:local:000000000000:function:echo:1', undefined, '1'],
      ['123456789012:function:echo', undefined, '$LATEST'],
      ['123456789012:function:echo:1', undefined, '1'],
    ];
    for (const [FunctionName, Qualifier, version] of cases) {
      const out = await lambda.send(new InvokeCommand({ FunctionName, Qualifier, Payload: json({ n: FunctionName }) }));
      expect(out.ExecutedVersion, `${FunctionName} ${Qualifier}`).toBe(version);
      expect(fromBytes(out.Payload)).toEqual({ n: FunctionName });
    }
  });

  it('passes X-Amz-Client-Context to the handler as context.clientContext', async () => {
    const ClientContext = Buffer.from(JSON.stringify({ custom: { tenant: 't1' } })).toString('base64');
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'context', ClientContext }));
    const seen = fromBytes(out.Payload) as Record<string, unknown>;
    expect(seen['clientContext']).toEqual({ custom: { tenant: 't1' } });
    expect(seen['invocationId']).toBe(out.$metadata.requestId);
    expect(seen['functionName']).toBe('context');
  });

  it('a thrown error is 200 with FunctionError Unhandled and the error payload', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'fail', Payload: json({ reason: 'no stock' }) }));
    expect(out.StatusCode).toBe(200);
    expect(out.FunctionError).toBe('Unhandled');
    const body = fromBytes(out.Payload) as { errorType: string; errorMessage: string; trace: string[] };
    expect(body.errorType).toBe('OrderRejected');
    expect(body.errorMessage).toBe('rejected: no stock');
    expect(Array.isArray(body.trace)).toBe(true);
    expect(await eventTypes(t.db, out.$metadata.requestId as string)).toEqual(['accepted', 'started', 'failed']);
  });

  it('a timeout is 200, Unhandled, Sandbox.Timedout with Lambda wording', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'slow', Payload: json({ ms: 5_000 }) }));
    expect(out.StatusCode).toBe(200);
    expect(out.FunctionError).toBe('Unhandled');
    expect(fromBytes(out.Payload)).toMatchObject({ errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.30 seconds' });
    const view = await getInvocation(t.db, out.$metadata.requestId as string);
    expect(view?.status).toBe('failed');
    expect(view?.error?.errorType).toBe('Sandbox.Timedout');
  });

  it('LogType Tail returns the base64 tail of what the handler logged', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'logs', LogType: 'Tail', Payload: json({ lines: ['hello', 'from the handler'] }) }));
    const log = Buffer.from(out.LogResult as string, 'base64').toString('utf8');
    expect(log).toMatch(/hello\n/);
    expect(log).toMatch(/from the handler\n/);
    const none = await lambda.send(new InvokeCommand({ FunctionName: 'logs', Payload: json({ lines: ['x'] }) }));
    expect(none.LogResult).toBeUndefined();
  });

  it('LogType Tail keeps only the last 4 KB', async () => {
    const lines = Array.from({ length: 200 }, (_, i) => `line ${String(i).padStart(3, '0')} ${'x'.repeat(60)}`);
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'logs', LogType: 'Tail', Payload: json({ lines }) }));
    const log = Buffer.from(out.LogResult as string, 'base64');
    expect(log.byteLength).toBeLessThanOrEqual(4096);
    expect(log.byteLength).toBeGreaterThan(3000);
    expect(log.toString('utf8')).toContain('line 199');
    expect(log.toString('utf8')).not.toContain('line 000');
  });
});

describe('Event and DryRun', () => {
  it('Event is 202 once accepted is committed; the request id is the invocation id', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: json({ later: true }) }));
    expect(out.StatusCode).toBe(202);
    expect(out.Payload?.byteLength ?? 0).toBe(0);
    const view = await getInvocation(t.db, out.$metadata.requestId as string);
    expect(view).toMatchObject({ status: 'queued', invocationType: 'async', payload: { later: true }, functionVersion: 2 });
    expect(await eventTypes(t.db, view?.id as string)).toEqual(['accepted']);
  });

  it('DryRun is 204 and writes nothing', async () => {
    const before = await countEvents(t.db);
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'DryRun', Payload: json({ a: 1 }) }));
    expect(out.StatusCode).toBe(204);
    expect(await countEvents(t.db)).toBe(before);
  });

  it('DryRun still validates function, qualifier and payload', async () => {
    await rejects(new InvokeCommand({ FunctionName: 'nope', InvocationType: 'DryRun' }), ResourceNotFoundException);
    await rejects(new InvokeCommand({ FunctionName: 'echo', Qualifier: '9', InvocationType: 'DryRun' }), ResourceNotFoundException);
    await rejects(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'DryRun', Payload: new TextEncoder().encode('{nope') }), InvalidRequestContentException);
  });

  it('the legacy InvokeAsync route, with and without trailing slash, is an Event invoke', async () => {
    for (const path of ['/2014-11-13/functions/echo/invoke-async', '/2014-11-13/functions/echo/invoke-async/']) {
      const res = await fetch(`${api.url}${path}`, { method: 'POST', body: '{"legacy":1}' });
      expect(res.status).toBe(202);
      expect(await res.text()).toBe('');
      const id = res.headers.get('x-amzn-requestid') as string;
      expect((await getInvocation(t.db, id))?.status).toBe('queued');
    }
  });
});

describe('bad input: the SDK error class, and nothing written', () => {
  it('unknown function or version → ResourceNotFoundException', async () => {
    const e = await rejects(new InvokeCommand({ FunctionName: 'no-such-function' }), ResourceNotFoundException);
    expect(e.message).toContain('no-such-function');
    expect(e.$metadata.httpStatusCode).toBe(404);
    await rejects(new InvokeCommand({ FunctionName: 'echo:7' }), ResourceNotFoundException);
    await rejects(new InvokeCommand({ FunctionName: 'echo', Qualifier: 'prod' }), ResourceNotFoundException);
    await rejects(new InvokeCommand({ FunctionName: 'no-such-function', InvocationType: 'Event' }), ResourceNotFoundException);
  });

  it('a body that is not JSON → InvalidRequestContentException', async () => {
    const e = await rejects(new InvokeCommand({ FunctionName: 'echo', Payload: new TextEncoder().encode('not json') }), InvalidRequestContentException);
    expect(e.$metadata.httpStatusCode).toBe(400);
    await rejects(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: new TextEncoder().encode('{"a":') }), InvalidRequestContentException);
  });

  it('a qualifier conflict, a bad name, a bad client context → 400', async () => {
    const e = await rejects(new InvokeCommand({ FunctionName: 'echo:1', Qualifier: '2' }), InvalidParameterValueException);
    expect(e.$metadata.httpStatusCode).toBe(400);
    await rejects(new InvokeCommand({ FunctionName: 'bad name!' }), InvalidParameterValueException);
    await rejects(new InvokeCommand({ FunctionName: 'echo', ClientContext: '%%%not-base64' }), InvalidRequestContentException);
    await rejects(new InvokeCommand({ FunctionName: 'echo', ClientContext: Buffer.from('[1,2]').toString('base64') }), InvalidRequestContentException);
  });

  it('oversized bodies → RequestEntityTooLargeException (sync > 6291456, async > 1048576)', async () => {
    const sync = await rejects(
      new InvokeCommand({ FunctionName: 'echo', Payload: json({ s: 'x'.repeat(6_291_456) }) }),
      'RequestEntityTooLargeException',
    );
    expect(sync.$metadata.httpStatusCode).toBe(413);
    expect(sync.message).toBe('Request must be smaller than 6291456 bytes for the Invoke operation');
    const async = await rejects(
      new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: json({ s: 'x'.repeat(1_048_576) }) }),
      'RequestEntityTooLargeException',
    );
    expect(async.$metadata.httpStatusCode).toBe(413);
    // just under the async limit is fine
    const ok = await lambda.send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: json({ s: 'x'.repeat(1_048_000) }) }));
    expect(ok.StatusCode).toBe(202);
  });

  it('a bad invocation or log type → 400 InvalidParameterValueException with the wire shape', async () => {
    const before = await countEvents(t.db);
    for (const headers of [{ 'x-amz-invocation-type': 'Sometimes' }, { 'x-amz-log-type': 'Everything' }] as Record<string, string>[]) {
      const res = await fetch(`${api.url}/2015-03-31/functions/echo/invocations`, { method: 'POST', headers, body: '{}' });
      expect(res.status).toBe(400);
      expect(res.headers.get('x-amzn-errortype')).toBe('InvalidParameterValueException');
      expect(res.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
      expect(await res.json()).toMatchObject({ Type: 'User', message: expect.stringContaining('failed to satisfy constraint') });
    }
    expect(await countEvents(t.db)).toBe(before);
  });

  it('raw HTTP: any content type, URL-encoded names, every response has x-amzn-RequestId', async () => {
    const res = await fetch(`${api.url}/2015-03-31/functions/${encodeURIComponent('echo:1')}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{"raw":true}',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-amz-executed-version')).toBe('1');
    expect(await res.json()).toEqual({ raw: true });
    const missing = await fetch(`${api.url}/2015-03-31/functions/ghost/invocations`, { method: 'POST' });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-amzn-errortype')).toBe('ResourceNotFoundException');
    expect(missing.headers.get('x-amzn-requestid')).toBeTruthy();
    expect(await missing.json()).toEqual({ Type: 'User', message: 'Function not found: ghost' });
    const wrongMethod = await fetch(`${api.url}/2015-03-31/functions/echo/invocations`);
    expect(wrongMethod.status).toBe(404);
    expect(wrongMethod.headers.get('x-amzn-requestid')).toBeTruthy();
  });
});

describe('idempotency', () => {
  it('an Event accepted twice under one key is one invocation with one accepted event', async () => {
    const send = () =>
      lambda
        .send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: json({ once: true }) }))
        .then((o) => o.$metadata.requestId as string);
    // InvokeCommand has no idempotency field: the header is this service's extension
    const viaHeader = async (header: string, key: string) => {
      const res = await fetch(`${api.url}/2015-03-31/functions/echo/invocations`, {
        method: 'POST',
        headers: { 'x-amz-invocation-type': 'Event', [header]: key },
        body: '{"once":true}',
      });
      expect(res.status).toBe(202);
      return res.headers.get('x-amzn-requestid') as string;
    };
    const before = await countEvents(t.db);
    const first = await viaHeader('Idempotency-Key', 'evt-1');
    const second = await viaHeader('X-Idempotency-Key', 'evt-1');
    expect(second).toBe(first);
    expect(await countEvents(t.db)).toBe(before + 1);
    expect(await eventTypes(t.db, first)).toEqual(['accepted']);
    // without a key, two sends are two invocations
    expect(await send()).not.toBe(await send());
  });

  it('a sync duplicate returns the first result and request id without running again', async () => {
    const call = async () => {
      const res = await fetch(`${api.url}/2015-03-31/functions/counter/invocations`, {
        method: 'POST',
        headers: { 'idempotency-key': 'sync-1', 'x-amz-log-type': 'Tail' },
        body: '{"ms":200}',
      });
      expect(res.status).toBe(200);
      return { id: res.headers.get('x-amzn-requestid'), body: await res.json() };
    };
    const [a, b] = await Promise.all([call(), call()]);
    const c = await call();
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(await eventTypes(t.db, a.id as string)).toEqual(['accepted', 'started', 'succeeded']);
    const other = await fetch(`${api.url}/2015-03-31/functions/counter/invocations`, { method: 'POST', body: '{}' });
    expect(((await other.json()) as { run: number }).run).toBe((a.body as { run: number }).run + 1);
  });
});
