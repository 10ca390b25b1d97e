import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attemptRequest } from './test-fixtures.ts';
import { createRuntimes, type RunnableFunction } from './index.ts';

const SECRET = 'super-secret-key';
const runtimes = createRuntimes({ functionsDir: '.' });
let server: Server;
let base: string;
const seen: Array<{ headers: IncomingMessage['headers']; body: string; signatureValid: boolean }> = [];

function verify(signature: string | undefined, body: Buffer): boolean {
  if (signature === undefined) return false;
  const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`);
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const routes: Record<string, (body: Buffer, res: ServerResponse) => void> = {
  '/echo': (body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ got: JSON.parse(body.toString()) })),
  '/empty': (_body, res) => res.writeHead(204).end(),
  '/fail': (_body, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('backend is down'),
  '/html': (_body, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>nope</html>'),
  '/hang': () => undefined,
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const signature = req.headers['x-ledger-signature'];
      seen.push({ headers: req.headers, body: body.toString(), signatureValid: verify(typeof signature === 'string' ? signature : undefined, body) });
      (routes[req.url ?? ''] ?? ((_b, r) => r.writeHead(404).end()))(body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await runtimes.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function httpFunction(path: string, overrides: Partial<RunnableFunction> = {}): RunnableFunction {
  return {
    name: 'remote',
    version: 1,
    runtime: 'HTTP',
    handler: null,
    url: `${base}${path}`,
    timeoutMs: 2000,
    memoryMb: 256,
    isolation: 'thread',
    secret: SECRET,
    ...overrides,
  };
}

describe('HTTP runtime', () => {
  it('POSTs the payload with ledger headers and returns the JSON body', async () => {
    const req = attemptRequest({ order: 42, note: 'üñí' }, { attempt: 2 });
    const outcome = await runtimes.run(httpFunction('/echo'), req);
    expect(outcome).toMatchObject({ ok: true, result: { got: { order: 42, note: 'üñí' } } });

    const last = seen.at(-1)!;
    expect(last.headers['content-type']).toBe('application/json');
    expect(last.headers['x-ledger-invocation-id']).toBe(req.invocationId);
    expect(last.headers['x-ledger-attempt']).toBe('2');
    expect(last.body).toBe(JSON.stringify(req.payload));
    expect(last.signatureValid).toBe(true);
    expect(outcome.log).not.toContain(SECRET);
  });

  it('sends no signature without a secret, and an empty 2xx body is null', async () => {
    const outcome = await runtimes.run(httpFunction('/empty', { secret: null }), attemptRequest());
    expect(outcome).toMatchObject({ ok: true, result: null });
    expect(seen.at(-1)!.headers['x-ledger-signature']).toBeUndefined();
  });

  it('turns a non-2xx answer into a function error carrying the status', async () => {
    const outcome = await runtimes.run(httpFunction('/fail'), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, httpStatus: 503, error: { errorType: 'HTTP.Status503' } });
    expect(outcome.ok || outcome.error.errorMessage).toContain('backend is down');
    expect(JSON.stringify(outcome)).not.toContain(SECRET);
  });

  it('refuses a 2xx body that is not JSON', async () => {
    const outcome = await runtimes.run(httpFunction('/html'), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'HTTP.InvalidResponse' } });
  });

  it('reports a refused connection as HTTP.ConnectionError', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const outcome = await runtimes.run(httpFunction('/', { url: `http://127.0.0.1:${port}/` }), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'HTTP.ConnectionError' } });
    expect(outcome.ok || outcome.error.errorMessage).toContain('ECONNREFUSED');
  });

  it('times out an endpoint that does not answer', async () => {
    const outcome = await runtimes.run(httpFunction('/hang', { timeoutMs: 300 }), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.30 seconds' } });
  });

  it('refuses a missing or non-http URL without a request', async () => {
    expect(await runtimes.run(httpFunction('', { url: null }), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'HTTP.InvalidUrl' },
    });
    expect(await runtimes.run(httpFunction('', { url: 'file:///etc/passwd' }), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'HTTP.InvalidUrl' },
    });
  });
});
