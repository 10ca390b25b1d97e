// Limits and failures at the edge: bodies refused while streaming, reservedConcurrency
// (429), and an unreachable database (503, nothing acknowledged).
import http from 'node:http';
import { InvokeCommand, ServiceException, TooManyRequestsException } from '@aws-sdk/client-lambda';
import { sql } from 'kysely';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../db/connection.ts';
import { composeApi } from '../../apps/cli/compose.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { FIXTURES, countEvents, fromBytes, json, lambdaClient, moduleFn, silent, startApi, type RunningApi } from './helpers.ts';

let t: TestDatabase;
let api: RunningApi;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await moduleFn(t.db, 'single', 'sleep.ts', { reservedConcurrency: 1 });
  await moduleFn(t.db, 'throttled', 'echo.ts', { reservedConcurrency: 0 });
  api = await startApi(t.db);
});

afterAll(async () => {
  await api?.close();
});

/**
 * POSTs up to `total` bytes in 64 KB chunks, honouring backpressure, and stops writing
 * as soon as the response arrives. Returns the status and how much had been written.
 */
function streamBody(url: string, total: number, headers: Record<string, string> = {}): Promise<{ status: number; written: number; body: string }> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 0x20); // spaces: valid JSON whitespace if it ever ended
    let written = 0;
    let answered = false;
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } });
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, written, body });
      });
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    const pump = () => {
      while (!answered && written < total) {
        written += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    pump();
  });
}

describe('body limits while streaming', () => {
  it('a 100 MB chunked body is refused after the limit, without buffering it', async () => {
    const before = await countEvents(t.db);
    const total = 100 * 1024 * 1024;
    for (const [type, path] of [
      ['RequestResponse', '/2015-03-31/functions/echo/invocations'],
      ['Event', '/2015-03-31/functions/echo/invocations'],
      ['native', '/invoke/echo'],
    ] as const) {
      const r = await streamBody(`${api.url}${path}`, total, type === 'native' ? {} : { 'x-amz-invocation-type': type });
      expect(r.status, type).toBe(413);
      // answered long before the client could finish: the server never waited for 100 MB
      expect(r.written, type).toBeLessThan(total / 2);
      if (type !== 'native') expect(JSON.parse(r.body)).toMatchObject({ Type: 'User' });
    }
    expect(await countEvents(t.db)).toBe(before);
  });

  it('Content-Length over the limit is refused before reading the body', async () => {
    const before = await countEvents(t.db);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${api.url}/2015-03-31/functions/echo/invocations`, {
        method: 'POST',
        headers: { 'content-length': String(6_291_457) },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      req.flushHeaders(); // headers only: the answer cannot depend on the body
    });
    expect(status).toBe(413);
    expect(await countEvents(t.db)).toBe(before);
  });

  it('exactly at the limit is accepted', async () => {
    const body = JSON.stringify({ s: '' });
    const padded = body + ' '.repeat(1_048_576 - body.length);
    const res = await fetch(`${api.url}/2015-03-31/functions/echo/invocations`, {
      method: 'POST',
      headers: { 'x-amz-invocation-type': 'Event' },
      body: padded,
    });
    expect(res.status).toBe(202);
  });
});

describe('reservedConcurrency', () => {
  it('0 → 429 TooManyRequestsException with Reason and Retry-After, nothing written', async () => {
    const before = await countEvents(t.db);
    const res = await fetch(`${api.url}/2015-03-31/functions/throttled/invocations`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(429);
    expect(res.headers.get('x-amzn-errortype')).toBe('TooManyRequestsException');
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ Type: 'User', Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' });

    const lambda = lambdaClient(api.url);
    try {
      const err = await lambda.send(new InvokeCommand({ FunctionName: 'throttled' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TooManyRequestsException);
      expect((err as TooManyRequestsException).Reason).toBe('ReservedFunctionConcurrentInvocationLimitExceeded');
    } finally {
      lambda.destroy();
    }
    expect(await countEvents(t.db)).toBe(before);
  });

  it('1 → a second sync call while the first runs is throttled; the first completes', async () => {
    const first = fetch(`${api.url}/invoke/single`, { method: 'POST', body: '{"ms":1500}' });
    // wait until the first attempt holds the slot
    for (let i = 0; ; i++) {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.invocations where function_name = 'single' and status = 'running'`.execute(t.db);
      if (rows[0]?.n === 1) break;
      if (i > 400) throw new Error('the first call never started');
      await new Promise((r) => setTimeout(r, 10));
    }
    const second = await fetch(`${api.url}/invoke/single`, { method: 'POST', body: '{"ms":1}' });
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe('TooManyRequests');
    expect(second.headers.get('retry-after')).toBe('1');
    const done = await first;
    expect(done.status).toBe(200);
    expect(await done.json()).toEqual({ slept: 1500 });
  });
});

describe('database unreachable', () => {
  it('503 ServiceException, nothing acknowledged, nothing written', async () => {
    const port = await freePort(); // closed: nothing listens there
    const url = new URL(t.ownerUrl);
    url.port = String(port);
    const dead = openDatabase(url.toString(), { max: 2 });
    const unreachable = composeApi({ db: dead.db, instanceId: 'dead', logger: silent, functionsDir: FIXTURES });
    const app = unreachable.app;
    let server!: ReturnType<typeof serve>;
    const serverPort = await new Promise<number>((resolve) => {
      server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
    });
    const base = `http://127.0.0.1:${serverPort}`;
    const before = await countEvents(t.db);
    const lambda = lambdaClient(base);
    try {
      for (const InvocationType of ['RequestResponse', 'Event', 'DryRun'] as const) {
        const err = await lambda.send(new InvokeCommand({ FunctionName: 'echo', InvocationType, Payload: json({}) })).catch((e: unknown) => e);
        expect(err, InvocationType).toBeInstanceOf(ServiceException);
        expect((err as ServiceException).$metadata.httpStatusCode).toBe(503);
        expect((err as ServiceException).$fault).toBe('server');
      }
      const raw = await fetch(`${base}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: '{}' });
      expect(raw.status).toBe(503);
      expect(raw.headers.get('x-amzn-errortype')).toBe('ServiceException');
      expect(raw.headers.get('x-amzn-requestid')).toBeTruthy();
      expect(await raw.json()).toMatchObject({ Type: 'Service', message: expect.stringContaining('database') });
      const native = await fetch(`${base}/invoke/echo?async=true`, { method: 'POST', body: '{}' });
      expect(native.status).toBe(503);
      expect(((await native.json()) as { error: { code: string } }).error.code).toBe('ServiceUnavailable');
    } finally {
      lambda.destroy();
      (server as unknown as http.Server).closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unreachable.close();
      await dead.close();
    }
    expect(await countEvents(t.db)).toBe(before);
    // the real server still works
    const ok = lambdaClient(api.url);
    try {
      const out = await ok.send(new InvokeCommand({ FunctionName: 'echo', Payload: json({ alive: true }) }));
      expect(fromBytes(out.Payload)).toEqual({ alive: true });
    } finally {
      ok.destroy();
    }
  });
});
