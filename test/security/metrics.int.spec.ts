// /metrics names every function and counts its invocations: with auth on it needs a key
// with the `audit` scope on the API port (Prometheus sends it as a bearer token), in every
// role. METRICS_PORT adds a listener that serves only /metrics and /healthz without a key,
// for a scraper on a private network. Real `invoke-ledger start` processes, ended by pid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { bearer } from './helpers.ts';

let t: TestDatabase;
let audit: CreatedApiKey;
let invoke: CreatedApiKey;
const services = new Set<ServiceProcess>();

beforeAll(async () => {
  t = await createTestDatabase();
  audit = await createApiKey(t.db, { scopes: ['audit'] });
  invoke = await createApiKey(t.db, { scopes: ['invoke'] });
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
});

async function start(role: 'all' | 'worker', env: Record<string, string> = {}): Promise<ServiceProcess> {
  const p = await spawnService(role, await freePort(), { DATABASE_URL: t.ownerUrl, LEDGER_AUTH: 'on', ...env });
  services.add(p);
  return p;
}

const get = (port: number, path: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${port}${path}`, { headers });

describe.each(['all', 'worker'] as const)('role %s, auth on', (role) => {
  let p: ServiceProcess;
  let metricsPort: number;
  beforeAll(async () => {
    metricsPort = await freePort();
    p = await start(role, { METRICS_PORT: String(metricsPort) });
  }, 90_000);

  it('/metrics on the API port: 401 without a key, 403 without audit, the metrics with audit', async () => {
    expect((await get(p.port, '/metrics')).status).toBe(401);
    expect((await get(p.port, '/metrics', bearer(invoke))).status).toBe(403);
    const ok = await get(p.port, '/metrics', bearer(audit));
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/text\/plain/);
    expect(await ok.text()).toMatch(/process_cpu_user_seconds_total/);
  });

  it('/healthz stays open', async () => {
    expect((await get(p.port, '/healthz')).status).toBe(200);
  });

  it('METRICS_PORT serves /metrics and /healthz without a key, and nothing else', async () => {
    const m = await get(metricsPort, '/metrics');
    expect(m.status).toBe(200);
    expect(await m.text()).toMatch(/process_cpu_user_seconds_total/);
    expect((await get(metricsPort, '/healthz')).status).toBe(200);
    expect((await get(metricsPort, '/graphql')).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/invoke/echo`, { method: 'POST', body: '{}' })).status).toBe(404);
  });
});
