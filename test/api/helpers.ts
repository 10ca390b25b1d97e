// A real HTTP server per test file: createApp + InvokeService + createRuntimes over
// test/api/fixtures, served by @hono/node-server on an ephemeral port.
import { fileURLToPath } from 'node:url';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createFunction, type FunctionConfigInput, type FunctionVersion } from '../../db/functions.ts';
import type { LedgerNotifications } from '../../db/notifications.ts';
import type { Db } from '../../db/schema.ts';
import { createApp } from '../../apps/api/app.ts';
import { InvokeService } from '../../apps/api/invoke.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
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
  const runtimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
  const invoke = new InvokeService({ db, runtimes, instanceId: 'test-api', logger: silent, ...options });
  const app = createApp({ db, invoke, logger: silent, registry: new Registry(), functionsDir: FIXTURES });
  const server = await listen(app.fetch);
  return {
    url: server.url,
    invoke,
    runtimes,
    async close() {
      await server.close();
      await runtimes.close();
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
