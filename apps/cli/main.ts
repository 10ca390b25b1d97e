// `invoke-ledger`: thin command dispatch. Parses flags, composes the other parts.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { createApp } from '../api/app.ts';
import { InvokeService } from '../api/invoke.ts';
import { opsRoutes } from '../api/ops.ts';
import { UrlAllowlist, withUrlAllowlist } from '../runtimes/allowlist.ts';
import { createRuntimes, resolveHandlerPath } from '../runtimes/index.ts';
import { createWorker } from '../worker/index.ts';
import { AUDIT_ROLE_USAGE, auditRoleCommand } from './audit-role.ts';
import { authEnabled, keysCommand, logAuthState } from './keys.ts';
import { loadConfig, type Config } from './config.ts';
import { resolveDatabase } from './database.ts';
import { registerFunctionsDir } from './register-functions.ts';

const USAGE = `usage: invoke-ledger <command> [options]

commands:
  start [--role api|worker|all]   migrate, then serve the API and/or run the worker
  migrate                         apply pending migrations
  verify                          check every invocation's events and projections
  rebuild-projections             recompute the projections from the events alone (stop workers first)
  ${AUDIT_ROLE_USAGE}
  keys create --scopes invoke,admin,audit [--name N] | keys list | keys revoke ID
                                  API keys (printed once; see docs/security.md)
`;

function makeLogger(config: Config): Logger {
  return pino({ level: config.LOG_LEVEL, base: { pid: process.pid } });
}

async function withDatabase<T>(config: Config, logger: Logger, fn: (url: string) => Promise<T>): Promise<T> {
  const database = await resolveDatabase(config, logger);
  try {
    return await fn(database.url);
  } finally {
    await database.stop();
  }
}

async function start(config: Config, logger: Logger): Promise<void> {
  const database = await resolveDatabase(config, logger);
  await migrate(database.url, (m) => logger.info(m));
  const handle = openDatabase(database.url, { max: config.DB_POOL_SIZE, preparedStatements: config.DB_PREPARED_STATEMENTS === 'on' });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const allowlist = UrlAllowlist.parse(config.HTTP_ALLOWLIST);
  const runtimes = withUrlAllowlist(createRuntimes({ functionsDir: config.functionsDir, poolSize: config.RUNTIME_THREADS, logger }), allowlist);
  const checks = { handler: (h: string) => void resolveHandlerPath(config.functionsDir, h), url: (u: string) => allowlist.check(u) };
  await registerFunctionsDir(handle.db, config.functionsDir, checks, logger);

  const role = config.LEDGER_ROLE;
  const auth = authEnabled(config);
  if (role !== 'worker') await logAuthState(handle.db, auth, config.LEDGER_SECRET_KEY, logger);
  const app =
    role === 'worker'
      ? new Hono().route('/', opsRoutes(handle.db, registry))
      : createApp({
          db: handle.db,
          invoke: new InvokeService({ db: handle.db, runtimes, instanceId, logger }),
          logger,
          registry,
          functionsDir: config.functionsDir,
          databaseUrl: database.url,
          graphqlIntrospection: config.GRAPHQL_INTROSPECTION === 'on',
          auth: { enabled: auth.enabled, secretKey: config.LEDGER_SECRET_KEY ?? null },
          httpAllowlist: allowlist,
        });
  const worker =
    role === 'api'
      ? null
      : createWorker({
          db: handle.db,
          databaseUrl: database.url,
          runtimes,
          logger,
          registry,
          workerId: instanceId,
          concurrency: config.WORKER_CONCURRENCY,
          claimBatchSize: config.CLAIM_BATCH_SIZE,
          pollIntervalMs: config.POLL_INTERVAL_MS,
          leaseGraceMs: config.WORKER_LEASE_GRACE_MS,
          throttleMaxDelayMs: config.WORKER_THROTTLE_MAX_DELAY_MS,
          delivery: { allowUrl: (u) => allowlist.allows(u) },
        });
  await worker?.start();

  const server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
    logger.info({ role, instanceId }, `invoke-ledger listening on http://${config.HOST}:${info.port}`);
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new work; finishing in-flight attempts');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await worker?.stop();
    await runtimes.close();
    await handle.close();
    await database.stop();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: { role: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: false,
  });
  if (!command || values.help || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 1;
  }
  const config = loadConfig(process.env, typeof values.role === 'string' ? { LEDGER_ROLE: values.role } : {});
  const logger = makeLogger(config);
  switch (command) {
    case 'start':
      await start(config, logger);
      return -1; // keeps running
    case 'migrate':
      await withDatabase(config, logger, async (url) => {
        const applied = await migrate(url, (m) => logger.info(m));
        logger.info({ applied }, applied.length ? 'migrated' : 'already up to date');
      });
      return 0;
    case 'verify':
      return withDatabase(config, logger, async (url) => {
        const handle = openDatabase(url);
        try {
          const problems = await verifyLedger(handle.db);
          for (const p of problems) process.stdout.write(`${p.invocationId}: ${p.problem}\n`);
          process.stdout.write(problems.length ? `verify: ${problems.length} problem(s)\n` : 'verify: ledger is consistent\n');
          return problems.length ? 1 : 0;
        } finally {
          await handle.close();
        }
      });
    case 'rebuild-projections':
      return withDatabase(config, logger, async (url) => {
        const handle = openDatabase(url);
        try {
          const { invocations } = await rebuildProjections(handle.db);
          process.stdout.write(`rebuilt projections of ${invocations} invocation(s)\n`);
          return 0;
        } finally {
          await handle.close();
        }
      });
    case 'audit-role':
      return auditRoleCommand(config, logger, rest);
    case 'keys':
      return withDatabase(config, logger, async (url) => {
        await migrate(url, (m) => logger.info(m));
        return keysCommand(url, rest, { secretKey: config.LEDGER_SECRET_KEY ?? null });
      });
    default:
      process.stderr.write(`unknown command: ${command}\n${USAGE}`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`invoke-ledger: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
