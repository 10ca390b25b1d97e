// `invoke-ledger start`: migrate, register FUNCTIONS_DIR, then serve the API and/or run the
// worker until SIGINT/SIGTERM.
import { createHmac, randomUUID } from 'node:crypto';
import type http from 'node:http';
import { hostname } from 'node:os';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { createPartitionUpkeep } from '../worker/partition-upkeep.ts';
import { createThrottleFlusher } from '../telemetry/throttle-flusher.ts';
import { createRetentionUpkeep } from '../worker/retention-upkeep.ts';
import { listenToLedger } from '../../db/notifications.ts';
import { ReplicaReads } from '../../db/replica.ts';
import type { Db } from '../../db/schema.ts';
import { parseCorsOrigins } from '../api/app.ts';
import { createApiAuth, type AuthOptions } from '../api/auth/index.ts';
import { answerMalformedRequests } from '../api/body.ts';
import { LedgerFeed } from '../api/graphql/feed.ts';
import { opsRoutes } from '../api/ops.ts';
import { registerHandlerLoader } from '../runtimes/register-loader.mjs';
import { UrlAllowlist } from '../runtimes/allowlist.ts';
import { resolveHandlerPath } from '../runtimes/index.ts';
import { createWorker } from '../worker/index.ts';
import { poolMetrics } from '../telemetry/metrics.ts';
import { startTracing, tracingDisabledReason } from '../telemetry/sdk.ts';
import { CliError } from './cli.ts';
import { composeApi, composeRuntimes } from './compose.ts';
import { databaseRole, type Config } from './config.ts';
import { resolveDatabase } from './database.ts';
import { authEnabled, logAuthState } from './keys.ts';
import { registerFunctionsDir } from './register-functions.ts';
import { sealerTaskFor, signingKeyOf, treeHeadSigner, witnessesOf } from './tamper.ts';

/** where an adaptive worker starts (WORKER_CONCURRENCY unset), and what it shrinks back to */
const DEFAULT_WORKER_CONCURRENCY = 64;

export async function start(config: Config, logger: Logger): Promise<void> {
  // Handlers are TypeScript: inline handlers are imported in this thread, so it needs the
  // same loader as the runtime threads. Under tsx or vitest a TypeScript loader is active
  // already (this very file is .ts); bin/invoke-ledger.mjs registers it before anything
  // loads (registered later, a .ts handler in a CommonJS scope lost its named exports);
  // this covers `node dist/apps/cli/main.js start` (idempotent).
  if (!import.meta.url.endsWith('.ts')) registerHandlerLoader();
  const database = await resolveDatabase(config, logger);
  const cleanups: (() => Promise<void>)[] = [() => database.stop()];
  const cleanUp = async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => logger.error({ err }, 'cleanup failed'));
  };
  try {
    await migrate(database.url, (m) => logger.info(m));
    const handle = openDatabase(database.url, {
      role: databaseRole(),
      max: config.DB_POOL_SIZE,
      preparedStatements: config.DB_PREPARED_STATEMENTS === 'on',
      poolMode: config.DATABASE_POOL_MODE,
    });
    cleanups.push(() => handle.close());
    // reads that may come from a replica (docs/scale.md): never staler than the primary at the request
    const replica = config.DATABASE_READ_URL
      ? openDatabase(config.DATABASE_READ_URL, { role: databaseRole(), max: config.DB_POOL_SIZE, poolMode: config.DATABASE_POOL_MODE, applicationName: 'invoke-ledger reads' })
      : null;
    if (replica) cleanups.push(() => replica.close());
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const replicaReads = new Counter({ name: 'ledger_replica_reads_total', help: 'Reads that could use DATABASE_READ_URL, by the side that served them and why', labelNames: ['source', 'reason'], registers: replica ? [registry] : [] });
    const reads = replica
      ? new ReplicaReads(handle.db, replica.db, { maxWaitMs: config.DATABASE_READ_MAX_WAIT_MS, onRead: (source, reason) => replicaReads.inc({ source, reason }) })
      : null;
    const instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    // observability (docs/observability.md): pool gauges; traces only when OTEL_* ask for them
    poolMetrics(registry, handle.pool);
    const tracing = await startTracing(process.env, { instanceId, role: config.LEDGER_ROLE });
    if (tracing) cleanups.push(() => tracing.shutdown());
    logger.info(tracing ? 'tracing on: spans go to the OTLP endpoint in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT' : `tracing off (${tracingDisabledReason(process.env)})`);
    const allowlist = UrlAllowlist.parse(config.HTTP_ALLOWLIST);
    const corsOrigins = parseCorsOrigins(config.CORS_ORIGINS);
    const runtimes = composeRuntimes({
      functionsDir: config.functionsDir,
      poolSize: config.RUNTIME_THREADS,
      warmThreads: config.RUNTIME_WARM_THREADS,
      logger,
      // code deployed through the control plane: loaded from the database by hash, cached locally (docs/code.md)
      codePackages: { db: handle.db },
      allowlist,
    });
    cleanups.push(() => runtimes.close());
    const checks = { handler: (h: string) => void resolveHandlerPath(config.functionsDir, h), url: (u: string) => allowlist.check(u) };
    await registerFunctionsDir(handle.db, config.functionsDir, checks, logger);

    const role = config.LEDGER_ROLE;
    // one LISTEN connection for the whole process: claim loop, queue poller, feed, idempotent waiters.
    // LISTEN is session state: behind a transaction pooler it needs a direct DATABASE_LISTEN_URL,
    // and without one everything polls (docs/scale.md)
    const listenUrl = config.DATABASE_LISTEN_URL ?? (config.DATABASE_POOL_MODE === 'transaction' ? null : database.url);
    if (!listenUrl) logger.warn({ pollIntervalMs: config.POLL_INTERVAL_MS }, 'DATABASE_POOL_MODE=transaction without DATABASE_LISTEN_URL: no LISTEN, polling only');
    const notifications = listenUrl
      ? listenToLedger(listenUrl, {
          onError: (err, retryInMs) => logger.warn({ err: (err as Error).message, retryInMs }, 'LISTEN connection failed; polling meanwhile'),
        })
      : undefined;
    const listening = notifications ? { notifications } : {};
    if (notifications) cleanups.push(() => notifications.close());
    const feed =
      role === 'worker'
        ? null
        : new LedgerFeed({ db: handle.db, ...listening, onError: (err) => logger.warn({ err }, 'ledger feed: read failed; retrying') });
    const auth = authEnabled(config);
    let signingKey: ReturnType<typeof signingKeyOf>;
    try {
      signingKey = signingKeyOf(config);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    if (role !== 'worker') await logAuthState(handle.db, auth, config.LEDGER_SECRET_KEY, logger);
    const app =
      role === 'worker'
        ? workerApp(handle.db, registry, auth.enabled ? { enabled: true, secretKey: config.LEDGER_SECRET_KEY ?? null } : undefined, logger)
        : composeApi({
            db: handle.db,
            instanceId,
            runtimes,
            invoke: { leaseGraceMs: config.WORKER_LEASE_GRACE_MS, maxChainDepth: config.MAX_CHAIN_DEPTH },
            logger,
            registry,
            functionsDir: config.functionsDir,
            ...(listenUrl ? { databaseUrl: listenUrl } : {}),
            ...listening,
            ...(feed ? { feed } : {}),
            graphqlIntrospection: config.GRAPHQL_INTROSPECTION === 'on',
            auth: { enabled: auth.enabled, secretKey: config.LEDGER_SECRET_KEY ?? null },
            httpAllowlist: allowlist,
            corsOrigins,
            ...(config.TRACE_URL_TEMPLATE ? { traceUrlTemplate: config.TRACE_URL_TEMPLATE } : {}),
            ...(reads ? { reads } : {}),
            // Code.Location URLs signed by one API process are good at any other that shares LEDGER_SECRET_KEY
            ...(config.LEDGER_SECRET_KEY ? { codeUrlKey: createHmac('sha256', config.LEDGER_SECRET_KEY).update('invoke-ledger code location').digest() } : {}),
            ...(signingKey ? { treeHeadSigner: treeHeadSigner(handle.db, signingKey, witnessesOf(config), instanceId, logger) } : {}),
          }).app;

    // the ports first: a port in use stops the start before any work is claimed
    const port = listenPort(config);
    const server = await listen(app, port, config.HOST, role === 'worker' ? 'PORT (the worker’s /healthz and /metrics)' : 'PORT');
    cleanups.push(() => closeServer(server));
    answerMalformedRequests(server);
    const metricsServer =
      config.METRICS_PORT === undefined ? null : await listen(new Hono().route('/', opsRoutes(handle.db, registry)), config.METRICS_PORT, config.METRICS_HOST, 'METRICS_PORT');
    if (metricsServer) cleanups.push(() => closeServer(metricsServer));

    const worker =
      role === 'api'
        ? null
        : createWorker({
            db: handle.db,
            databaseUrl: listenUrl ?? database.url,
            ...(notifications ? { notifications } : { listen: false }),
            runtimes,
            logger,
            registry,
            workerId: instanceId,
            concurrency: config.WORKER_CONCURRENCY ?? DEFAULT_WORKER_CONCURRENCY,
            ...(config.WORKER_CONCURRENCY === undefined ? { adaptive: { max: config.WORKER_MAX_CONCURRENCY } } : {}),
            claimBatchSize: config.CLAIM_BATCH_SIZE,
            pollIntervalMs: config.POLL_INTERVAL_MS,
            leaseGraceMs: config.WORKER_LEASE_GRACE_MS,
            throttleMaxDelayMs: config.WORKER_THROTTLE_MAX_DELAY_MS,
            delivery: { allowUrl: (u) => allowlist.allows(u) },
            maxChainDepth: config.MAX_CHAIN_DEPTH,
            secretKey: config.LEDGER_SECRET_KEY ?? null,
            replayConcurrency: config.REPLAY_CONCURRENCY,
          });
    await worker?.start();
    // tamper evidence: a background task of worker processes (docs/tamper-evidence.md)
    const sealer = role === 'api' ? null : sealerTaskFor(config, handle.db, logger, registry, instanceId);
    sealer?.start();
    // retention: ledger.events partitions made ahead (docs/retention.md)
    const partitionUpkeep = createPartitionUpkeep({ db: handle.db, logger, registry });
    partitionUpkeep.start();
    // retention: expired attempt logs, deliveries and dead letters removed by rule (docs/retention.md)
    const retentionUpkeep =
      role === 'api'
        ? null
        : createRetentionUpkeep({
            db: handle.db,
            logger,
            registry,
            intervalMs: config.RETENTION_PURGE_INTERVAL_MS,
            batchSize: config.RETENTION_PURGE_BATCH_SIZE,
          });
    retentionUpkeep?.start();
    // throttles of every process where the console and SQL see them (docs/observability.md#throttles)
    const throttleFlusher = createThrottleFlusher({ db: handle.db, registry, logger, intervalMs: config.THROTTLE_FLUSH_INTERVAL_MS });
    throttleFlusher.start();

    logger.info({ role, instanceId }, `invoke-ledger listening on http://${config.HOST}:${boundPort(server)}`);
    if (metricsServer) logger.info(`metrics (no key) on http://${config.METRICS_HOST}:${boundPort(metricsServer)}/metrics`);

    stopOnSignals({ logger, timeoutMs: config.SHUTDOWN_TIMEOUT_MS, database }, async () => {
      // claiming stops first (synchronously, inside stop()); running attempts finish meanwhile
      const workerStopped = worker?.stop();
      // live streams complete (clients resume elsewhere with Last-Event-ID), or they would
      // hold server.close() open for as long as their clients stay
      await feed?.close();
      await Promise.all([server, metricsServer].map((srv) => (srv ? closeServer(srv) : Promise.resolve())));
      await workerStopped;
      await sealer?.stop();
      await partitionUpkeep.stop();
      await retentionUpkeep?.stop();
      await throttleFlusher.stop();
      await runtimes.close();
      await notifications?.close();
      await replica?.close();
      await handle.close();
      // the last spans of the drain are exported before the process exits
      await tracing?.shutdown();
    });
  } catch (e) {
    await cleanUp();
    throw e;
  }
}

/**
 * PORT, or its default: 3000 for processes that serve the API; a worker-only process
 * serves just /healthz and /metrics, on a free port unless PORT says which, so extra
 * workers start beside a running server without a port clash.
 */
export function listenPort(config: Pick<Config, 'PORT' | 'LEDGER_ROLE'>): number {
  return config.PORT ?? (config.LEDGER_ROLE === 'worker' ? 0 : 3000);
}

/** Listens, or fails with one line saying which setting to change. */
function listen(app: Hono, port: number, host: string, setting: string): Promise<http.Server> {
  const server = createAdaptorServer({ fetch: app.fetch }) as http.Server;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new CliError(`${host}:${port} is already in use (another invoke-ledger?): set ${setting} to a free port, or ${setting.split(' ')[0]}=0 for any`));
      } else if (err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
        reject(new CliError(`cannot listen on ${host}:${port} (${err.code}): check ${setting} and ${setting.startsWith('METRICS') ? 'METRICS_HOST' : 'HOST'}`));
      } else {
        reject(err);
      }
    });
    server.listen(port, host, () => resolve(server));
  });
}

function boundPort(server: http.Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

/** A worker process serves only /healthz and /metrics; with auth on, /metrics needs an audit key. */
function workerApp(db: Db, registry: Registry, auth: AuthOptions | undefined, logger: Logger): Hono {
  const app = new Hono();
  const gate = createApiAuth(db, auth, logger);
  if (gate) app.use('*', gate.middleware);
  return app.route('/', opsRoutes(db, registry));
}

/** A repeat of the signal within this window is the same Ctrl-C (npm forwards it to its child too). */
const REPEAT_WINDOW_MS = 500;

/**
 * SIGINT/SIGTERM: `drain` (stop taking work, let running attempts finish and their
 * outcomes be recorded, close the pool), then stop the embedded PostgreSQL last, exit 0.
 * A second Ctrl-C, or `timeoutMs` elapsing, exits at once (130/143, or 1): attempts still
 * running are then not recorded, and are recorded WorkerLost when their leases expire.
 * The embedded server is stopped on every path (it runs outside the terminal's process
 * group, so nothing else would stop it).
 */
function stopOnSignals(o: { logger: Logger; timeoutMs: number; database: { stop(): Promise<void> } }, drain: () => Promise<void>): void {
  let firstAt: number | null = null;
  let exiting = false;
  const exit = async (code: number, why: string) => {
    if (exiting) {
      // the timeout or another signal while the embedded server stops: it has its SIGINT already
      if (code !== 0) {
        o.logger.error(`${why}: exiting without waiting for the embedded PostgreSQL to finish stopping`);
        process.exit(code);
      }
      return;
    }
    exiting = true;
    if (code !== 0) o.logger.error(`${why}: attempts still running are not recorded now; they are recorded WorkerLost when their leases expire, and retried`);
    await o.database.stop().catch((err: unknown) => o.logger.error({ err }, 'stopping the embedded PostgreSQL failed'));
    o.logger.info({ code }, 'stopped');
    process.exit(code);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (firstAt === null) {
      firstAt = now;
      o.logger.info({ signal, timeoutMs: o.timeoutMs }, 'shutting down: no new work; finishing in-flight attempts');
      setTimeout(() => firstAt !== null && !exiting && o.logger.info('press Ctrl-C again to force an exit'), REPEAT_WINDOW_MS).unref();
      setTimeout(() => void exit(1, `shutdown timed out after ${o.timeoutMs} ms (SHUTDOWN_TIMEOUT_MS)`), o.timeoutMs);
      drain().then(
        () => exit(0, 'drained'),
        (err: unknown) => {
          o.logger.error({ err }, 'shutdown failed');
          return exit(1, 'shutdown failed');
        },
      );
      return;
    }
    if (now - firstAt < REPEAT_WINDOW_MS) return;
    void exit(signal === 'SIGINT' ? 130 : 143, `forcing exit on a second ${signal}`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
