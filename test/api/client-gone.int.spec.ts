// clientGoneSignal: a sync invoke stops waiting for a runtime thread when its caller's
// connection closes, without building a WHATWG Request per request.
import http from 'node:http';
import { Hono } from 'hono';
import { afterAll, describe, expect, it } from 'vitest';
import { clientGoneSignal } from '../../apps/api/client-gone.ts';
import { listen, type Listening } from '../helpers/http.ts';

let server: Listening | undefined;
afterAll(() => server?.close());

describe('clientGoneSignal', () => {
  it('fires when the client closes the connection before the answer, and not after a normal answer', async () => {
    const seen: { path: string; aborted: Promise<boolean> }[] = [];
    const app = new Hono();
    app.post('/wait', async (c) => {
      const signal = clientGoneSignal(c);
      expect(signal).toBeDefined();
      const aborted = new Promise<boolean>((resolve) => signal!.addEventListener('abort', () => resolve(true), { once: true }));
      seen.push({ path: 'wait', aborted });
      await aborted; // never answers: only the client going away ends it
      return c.text('too late');
    });
    app.post('/quick', (c) => {
      const signal = clientGoneSignal(c)!;
      // listeners run in order: by the time this one runs, clientGoneSignal's has decided
      const outgoing = (c.env as { outgoing: http.ServerResponse }).outgoing;
      seen.push({ path: 'quick', aborted: new Promise((resolve) => outgoing.once('close', () => resolve(signal.aborted))) });
      return c.text('ok');
    });
    server = await listen(app.fetch);

    const quick = await fetch(`${server.url}/quick`, { method: 'POST', body: '{}' });
    expect(await quick.text()).toBe('ok');

    const req = http.request(`${server.url}/wait`, { method: 'POST' });
    req.on('error', () => {});
    req.end('{}');
    while (!seen.some((s) => s.path === 'wait')) await new Promise((r) => setTimeout(r, 10));
    req.destroy();

    expect(await seen.find((s) => s.path === 'wait')!.aborted).toBe(true);
    expect(await seen.find((s) => s.path === 'quick')!.aborted).toBe(false);
  });

  it('is undefined without a Node connection to watch (app.request in tests)', async () => {
    const app = new Hono().get('/', (c) => c.text(String(clientGoneSignal(c))));
    expect(await (await app.request('/')).text()).toBe('undefined');
  });
});
