// /healthz and /metrics: served by every role on PORT (/metrics needs an audit key when
// auth is on), and on METRICS_PORT without a key when that is set (docs/security.md).
import { Hono } from 'hono';
import type { Registry } from 'prom-client';
import { pingDatabase } from '../../db/connection.ts';
import type { Db } from '../../db/schema.ts';

export function opsRoutes(db: Db, registry: Registry): Hono {
  const app = new Hono();
  app.get('/healthz', async (c) => {
    try {
      await Promise.race([
        pingDatabase(db),
        new Promise((_, reject) => setTimeout(() => reject(new Error('database did not answer in 2 s')), 2_000)),
      ]);
      return c.json({ ok: true });
    } catch (e) {
      return c.json({ ok: false, error: (e as Error).message }, 503);
    }
  });
  app.get('/metrics', async (c) => {
    c.header('content-type', registry.contentType);
    return c.body(await registry.metrics());
  });
  return app;
}
