// onSuccess / onFailure destinations: the invocation record, a function destination
// accepted with the outcome, a URL destination POSTed with retries and its status kept.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInvocation } from '../../db/invocations.ts';
import { listDestinationDeliveries } from '../../apps/worker/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, invokeAsync, startWorker, statusOf, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;
let server: http.Server;
let baseUrl: string;
const received: { path: string; body: unknown }[] = [];
let failuresLeft = 1;

beforeAll(async () => {
  t = await createTestDatabase();
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url === '/flaky' && failuresLeft > 0) {
        failuresLeft--;
        res.writeHead(500).end('try again');
        return;
      }
      received.push({ path: req.url ?? '', body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  worker = await startWorker(t.db, t.url, { delivery: { baseDelayMs: 50, maxAttempts: 3, timeoutMs: 2_000 }, deliveryIntervalMs: 100 });
});

afterAll(async () => {
  await worker?.stop();
  await new Promise((r) => server.close(r));
});

describe('destinations', () => {
  it('onSuccess function: the target is invoked async with the invocation record', async () => {
    await fn(t.db, 'sink', 'echo.ts');
    const f = await fn(t.db, 'echo-ok', 'echo.ts', { onSuccess: 'function:sink' });
    const [id] = await invokeAsync(t.db, f, [{ hello: 'world' }]);
    const delivery = await waitFor('delivery', async () => (await listDestinationDeliveries(t.db, { invocationId: id as string }))[0]);
    expect(delivery).toMatchObject({ status: 'delivered', condition: 'Success', destination: 'function:sink', attempts: 1 });
    const target = delivery.targetInvocationId as string;
    await waitFor('target ran', async () => (await statusOf(t.db, target)) === 'succeeded');
    const view = await getInvocation(t.db, target);
    expect(view?.functionName).toBe('sink');
    expect(view?.payload).toEqual({
      version: '1.0',
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      requestContext: {
        requestId: id,
        functionArn: `arn:aws:lambda:local:000000000000:function:echo-ok:${f.version}`,
        condition: 'Success',
        approximateInvokeCount: 1,
      },
      requestPayload: { hello: 'world' },
      responseContext: { statusCode: 200, executedVersion: String(f.version) },
      responsePayload: { hello: 'world' },
    });
  });

  it('onFailure URL: the record is POSTed after the dead letter, retried after a 500', async () => {
    const f = await fn(t.db, 'fails-to-url', 'always-throws.ts', { maxRetries: 1, retryBaseDelayMs: 10, onFailure: `${baseUrl}/flaky` });
    const [id] = await invokeAsync(t.db, f, [{ n: 1 }]);
    await waitFor('dead letter', async () => (await statusOf(t.db, id as string)) === 'dead_lettered');
    const delivery = await waitFor('delivered', async () => {
      const [d] = await listDestinationDeliveries(t.db, { invocationId: id as string });
      return d?.status === 'delivered' ? d : null;
    });
    expect(delivery).toMatchObject({ condition: 'RetriesExhausted', attempts: 2, lastStatusCode: 204, lastError: null });
    const got = received.find((r) => r.path === '/flaky');
    expect(got?.body).toEqual({
      version: '1.0',
      timestamp: expect.any(String),
      requestContext: {
        requestId: id,
        functionArn: `arn:aws:lambda:local:000000000000:function:fails-to-url:${f.version}`,
        condition: 'RetriesExhausted',
        approximateInvokeCount: 2,
      },
      requestPayload: { n: 1 },
      responseContext: { statusCode: 200, executedVersion: String(f.version), functionError: 'Unhandled' },
      responsePayload: { errorType: 'Error', errorMessage: 'attempt 2 failed', trace: expect.any(Array) },
    });
  });

  it('a URL that never answers 2xx ends failed after maxAttempts, with the last error kept', async () => {
    const f = await fn(t.db, 'zero-to-url', 'noop.ts', { reservedConcurrency: 0, onFailure: 'http://127.0.0.1:1/nothing-here' });
    const [id] = await invokeAsync(t.db, f, [{}]);
    const delivery = await waitFor(
      'failed delivery',
      async () => {
        const [d] = await listDestinationDeliveries(t.db, { invocationId: id as string });
        return d?.status === 'failed' ? d : null;
      },
      20_000,
    );
    expect(delivery.attempts).toBe(3);
    expect(delivery.lastError).toMatch(/ECONNREFUSED|fetch failed/);
    expect(delivery.record.requestContext).toMatchObject({ condition: 'ZeroReservedConcurrency', approximateInvokeCount: 0 });
    expect(await listDestinationDeliveries(t.db, { status: 'failed' })).toContainEqual(expect.objectContaining({ id: delivery.id }));
  });
});
