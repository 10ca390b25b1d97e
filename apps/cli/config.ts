// Configuration from the environment (ledger.md §1), validated once at start.
import path from 'node:path';
import { z } from 'zod';

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(def);

const envSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  EMBEDDED_PG_PORT: int(54329, 1, 65535),
  EMBEDDED_PG_DIR: z.string().default('.data/postgres'),
  PORT: int(3000, 0, 65535),
  HOST: z.string().default('127.0.0.1'),
  LEDGER_ROLE: z.enum(['api', 'worker', 'all']).default('all'),
  FUNCTIONS_DIR: z.string().default('./functions'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: z.string().default('production'),
  LEDGER_AUTH: z.enum(['on', 'off']).optional(),
  /** seals the SigV4 secrets of API keys (AES-256-GCM); at least 32 characters, e.g. `openssl rand -base64 32` */
  LEDGER_SECRET_KEY: z.string().min(32, 'must be at least 32 characters (openssl rand -base64 32)').optional(),
  /** attempts one worker process runs at once */
  WORKER_CONCURRENCY: int(64, 1, 10_000),
  /** invocations claimed per statement */
  CLAIM_BATCH_SIZE: int(500, 1, 10_000),
  /** fallback poll interval when LISTEN/NOTIFY is quiet */
  POLL_INTERVAL_MS: int(1_000, 10, 60_000),
  /** async attempts lease timeoutMs + this; heartbeats and the lost-worker reaper follow it */
  WORKER_LEASE_GRACE_MS: int(30_000, 100, 3_600_000),
  /** longest backoff of async work over its function's reservedConcurrency */
  WORKER_THROTTLE_MAX_DELAY_MS: int(10_000, 10, 3_600_000),
  /** worker threads per memory size for MODULE handlers */
  RUNTIME_THREADS: int(4, 1, 256),
  DB_POOL_SIZE: int(20, 1, 500),
  /** the ledger writer's statement as a named prepared statement; off behind PgBouncer < 1.21 in transaction mode */
  DB_PREPARED_STATEMENTS: z.enum(['on', 'off']).default('on'),
  /** comma-separated host patterns HTTP functions and destinations may call; empty = any */
  HTTP_ALLOWLIST: z.string().default(''),
  /** GraphQL introspection (on by default: the API doubles as a playground) */
  GRAPHQL_INTROSPECTION: z.enum(['on', 'off']).default('on'),
});

export type Config = z.output<typeof envSchema> & { functionsDir: string };

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<keyof z.input<typeof envSchema>, string>> = {}): Config {
  const parsed = envSchema.safeParse({ ...env, ...overrides });
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${msg}`);
  }
  return { ...parsed.data, functionsDir: path.resolve(parsed.data.FUNCTIONS_DIR) };
}
