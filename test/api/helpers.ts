// A real HTTP server per test file: the API as the composition root builds it
// (apps/cli/compose.ts) over test/api/fixtures, served by @hono/node-server on an ephemeral port.
import { fileURLToPath } from 'node:url';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { sql } from 'kysely';
import { pino } from 'pino';
import { createFunction, type FunctionConfigInput, type FunctionVersion } from '../../db/functions.ts';
import type { LedgerNotifications } from '../../db/notifications.ts';
import type { Db } from '../../db/schema.ts';
import type { InvokeService } from '../../apps/api/invoke.ts';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { listen } from '../helpers/http.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const silent = pino({ level: 'silent' });

export interface RunningApi {
  url: string;
  invoke: InvokeService;
  runtimes: Runtimes;
  close(): Promise<void>;
}

export async function startApi(db: Db, options: { coalesce?: boolean; notifications?: LedgerNotifications } = {}): Promise<RunningApi> {
  const api = composeApi({
    db,
    instanceId: 'test-api',
    logger: silent,
    functionsDir: FIXTURES,
    runtime: { poolSize: 2 },
    ...(options.notifications ? { notifications: options.notifications } : {}),
    ...(options.coalesce !== undefined ? { invoke: { coalesce: options.coalesce } } : {}),
  });
  const server = await listen(api.app.fetch);
  return {
    url: server.url,
    invoke: api.invoke,
    runtimes: api.runtimes,
    async close() {
      await server.close();
      await api.close();
    },
  };
}

export function lambdaClient(url: string, maxAttempts = 1): LambdaClient {
  return new LambdaClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
    maxAttempts,
  });
}

export function moduleFn(db: Db, name: string, handler: string, config: Partial<FunctionConfigInput> = {}): Promise<FunctionVersion> {
  return createFunction(db, name, { runtime: 'MODULE', handler, isolation: 'inline', ...config });
}

export async function countEvents(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(db);
  return rows[0]?.n ?? 0;
}

export async function eventTypes(db: Db, invocationId: string): Promise<string[]> {
  const { rows } = await sql<{ type: string }>`
    select type from ledger.events where invocation_id = ${invocationId}::uuid order by seq`.execute(db);
  return rows.map((r) => r.type);
}

export const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
export const fromBytes = (b: Uint8Array | undefined): unknown => (b && b.byteLength ? JSON.parse(new TextDecoder().decode(b)) : undefined);
