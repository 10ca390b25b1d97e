// Configuration from the environment (README.md#configuration), validated once at start.
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_APP_ROLE } from '../../db/connection.ts';
import { DEFAULT_LEASE_GRACE_MS } from '../../db/queue-rows.ts';

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(def);

const envSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  // scale-out (docs/scale.md)
  /** transaction: DATABASE_URL is a pooler in transaction mode (PgBouncer): no session state, no named statements */
  DATABASE_POOL_MODE: z.enum(['session', 'transaction']).default('session'),
  /** a direct connection for LISTEN; unset: DATABASE_URL, or polling only when that is a transaction pooler */
  DATABASE_LISTEN_URL: z.string().min(1).optional(),
  /** a streaming replica for GraphQL queries, the console and audit reads; unset: the primary */
  DATABASE_READ_URL: z.string().min(1).optional(),
  /** longest wait for the replica to replay the primary's position before a read goes to the primary */
  DATABASE_READ_MAX_WAIT_MS: int(250, 0, 60_000),
  EMBEDDED_PG_PORT: int(54329, 1, 65535),
  EMBEDDED_PG_DIR: z.string().default('.data/postgres'),
  /** unset: 3000, or a free port for a worker-only process (its /healthz and /metrics) */
  PORT: z.coerce.number().int().min(0).max(65535).optional(),
  HOST: z.string().default('127.0.0.1'),
  /** a second listener serving only /metrics and /healthz, without a key; unset: none */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  METRICS_HOST: z.string().default('127.0.0.1'),
  LEDGER_ROLE: z.enum(['api', 'worker', 'all']).default('all'),
  FUNCTIONS_DIR: z.string().default('./functions'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** json: one JSON object per line (default); pretty: coloured lines for a terminal (docs/observability.md) */
  LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
  NODE_ENV: z.string().default('production'),
  LEDGER_AUTH: z.enum(['on', 'off']).optional(),
  /** seals the SigV4 secrets of API keys (AES-256-GCM); at least 32 characters, e.g. `openssl rand -base64 32` */
  LEDGER_SECRET_KEY: z.string().min(32, 'must be at least 32 characters (openssl rand -base64 32)').optional(),
  /** attempts one worker process runs at once; unset: adaptive, from 64 up to WORKER_MAX_CONCURRENCY (docs/worker.md) */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).optional(),
  /** the most an adaptive worker (WORKER_CONCURRENCY unset) holds at once */
  WORKER_MAX_CONCURRENCY: int(2_048, 1, 10_000),
  /** replay attempts one worker process runs at once, beside WORKER_CONCURRENCY (docs/replay.md); 0: this worker runs no replays */
  REPLAY_CONCURRENCY: int(2, 0, 1_000),
  /** invocations claimed per statement, at most (a claim never asks for more than the free slots) */
  CLAIM_BATCH_SIZE: int(1_000, 1, 10_000),
  /** fallback poll interval when LISTEN/NOTIFY is quiet */
  POLL_INTERVAL_MS: int(1_000, 10, 60_000),
  /** async attempts lease timeoutMs + this; heartbeats and the lost-worker reaper follow it */
  WORKER_LEASE_GRACE_MS: int(DEFAULT_LEASE_GRACE_MS, 100, 3_600_000),
  /** longest backoff of async work over its function's reservedConcurrency */
  WORKER_THROTTLE_MAX_DELAY_MS: int(10_000, 10, 3_600_000),
  /** a chain of invocations (destinations, invokes made by handlers) runs at most this many; 0 = no limit */
  MAX_CHAIN_DEPTH: int(16, 0, 10_000),
  /** worker threads per memory size for MODULE handlers */
  RUNTIME_THREADS: int(4, 1, 256),
  /** of those, started before any attempt needs them (docs/worker.md, "Warm threads") */
  RUNTIME_WARM_THREADS: int(0, 0, 256),
  DB_POOL_SIZE: int(20, 1, 500),
  /** the ledger writer's statement as a named prepared statement; off behind PgBouncer < 1.21 in transaction mode */
  DB_PREPARED_STATEMENTS: z.enum(['on', 'off']).default('on'),
  /** comma-separated browser origins that may call the API (CORS); empty = none */
  CORS_ORIGINS: z.string().default(''),
  /** comma-separated host patterns HTTP functions and destinations may call; empty = any */
  HTTP_ALLOWLIST: z.string().default(''),
  /** retention of the side tables (docs/retention.md): rows removed per batch, and how often worker processes look */
  RETENTION_PURGE_BATCH_SIZE: int(1_000, 1, 100_000),
  RETENTION_PURGE_INTERVAL_MS: int(600_000, 1_000, 86_400_000),
  /** how often a process adds its throttle counts to ledger.throttle_counts (docs/observability.md#throttles) */
  THROTTLE_FLUSH_INTERVAL_MS: int(10_000, 100, 3_600_000),
  /** longest a SIGINT/SIGTERM shutdown may take before the process exits anyway (exit code 1) */
  SHUTDOWN_TIMEOUT_MS: int(30_000, 100, 86_400_000),
  /** the console's trace link: an http(s) URL with `{traceId}` (e.g. http://jaeger:16686/trace/{traceId}); unset: no link */
  TRACE_URL_TEMPLATE: z
    .string()
    .refine((v) => /^https?:\/\/[^\s]+$/.test(v) && v.includes('{traceId}'), 'must be an http(s) URL containing {traceId}')
    .optional(),
  /** GraphQL introspection (on by default: the API doubles as a playground) */
  GRAPHQL_INTROSPECTION: z.enum(['on', 'off']).default('on'),
  // tamper evidence (docs/tamper-evidence.md)
  /** the sealer in worker/all processes: auto = on when a signing key is configured */
  LEDGER_SEALER: z.enum(['auto', 'on', 'off']).default('auto'),
  /** Ed25519 private key that signs tree heads: PEM (PKCS#8) or base64 DER; wins over the _FILE */
  LEDGER_SIGNING_KEY: z.string().optional(),
  LEDGER_SIGNING_KEY_FILE: z.string().optional(),
  /** how often the sealer looks for committed events */
  LEDGER_SEAL_INTERVAL_MS: int(1_000, 10, 3_600_000),
  /** the shortest time between two signed tree heads while the ledger grows */
  LEDGER_TREE_HEAD_INTERVAL_MS: int(5_000, 100, 86_400_000),
  /** where tree heads are published: file:PATH, dir:PATH, http(s)://URL, stdout (comma-separated) */
  LEDGER_WITNESSES: z.string().default(''),
});

export type Config = z.output<typeof envSchema> & { functionsDir: string };

/**
 * LEDGER_DB_ROLE (README.md#configuration): the role every command's connections act as
 * (SET ROLE at connect), `ledger_app` when unset; empty to stay the login role. Read here
 * only, so db/connection.ts takes the role as an option and reads no environment for it.
 */
export function databaseRole(env: NodeJS.ProcessEnv = process.env): string {
  return env.LEDGER_DB_ROLE ?? DEFAULT_APP_ROLE;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<keyof z.input<typeof envSchema>, string>> = {}): Config {
  const parsed = envSchema.safeParse({ ...env, ...overrides });
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${msg}`);
  }
  return { ...parsed.data, functionsDir: path.resolve(parsed.data.FUNCTIONS_DIR) };
}
