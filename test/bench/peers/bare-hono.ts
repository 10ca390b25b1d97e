// The floor for a sync invoke: the same route shape served by @hono/node-server, running
// the same no-op handler, with no ledger and no database. Prints its port when listening.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { FUNCTIONS_DIR } from '../lib/proc.ts';

const mod = (await import(pathToFileURL(path.join(FUNCTIONS_DIR, 'noop.mjs')).href)) as {
  handler: (event: unknown, context: unknown) => Promise<unknown>;
};
const app = new Hono();
app.get('/healthz', (c) => c.json({ ok: true }));
app.post('/2015-03-31/functions/:name/invocations', async (c) => {
  const body = await c.req.text();
  const event: unknown = body ? JSON.parse(body) : {};
  const result = await mod.handler(event, { functionName: c.req.param('name') });
  return c.json(result ?? null, 200, { 'x-amz-executed-version': '1' });
});
serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' });
