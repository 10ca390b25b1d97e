// The composition root of the API: the one place its parts are built and wired — the
// handler runtimes, the InvokeService, the metrics registry and the Hono app (routes,
// GraphQL, auth, CORS, tracing). `start` (start.ts) builds the process's API from the
// settings config.ts reads; the test helpers and benchmarks build theirs here too, and
// vary only the settings they pass.
import type { Hono } from 'hono';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { materializeCodePackage } from '../../db/code/index.ts';
import type { Db } from '../../db/schema.ts';
import { createApp } from '../api/app.ts';
import type { AppDeps } from '../api/deps.ts';
import { InvokeService, type InvokeServiceOptions } from '../api/invoke.ts';
import { withUrlAllowlist, type UrlAllowlist } from '../runtimes/allowlist.ts';
import { createRuntimes } from '../runtimes/index.ts';
import type { Runtimes } from '../runtimes/types.ts';

export interface RuntimeSettings {
  /** FUNCTIONS_DIR: module handlers resolve inside it */
  functionsDir: string;
  logger: Logger;
  /** RUNTIME_THREADS: threads per memory size */
  poolSize?: number;
  /** RUNTIME_WARM_THREADS */
  warmThreads?: number;
  /** code deployed through the control plane is loaded from this database by hash and cached in cacheDir (docs/code.md) */
  codePackages?: { db: Db; cacheDir?: string };
  /** HTTP_ALLOWLIST: an HTTP function's URL must be allowed */
  allowlist?: UrlAllowlist;
}

/** The handler runtimes, shared by the API and the worker of one process. */
export function composeRuntimes(s: RuntimeSettings): Runtimes {
  const code = s.codePackages;
  const runtimes = createRuntimes({
    functionsDir: s.functionsDir,
    logger: s.logger,
    ...(s.poolSize !== undefined ? { poolSize: s.poolSize } : {}),
    ...(s.warmThreads !== undefined ? { warmThreads: s.warmThreads } : {}),
    ...(code ? { codePackageDir: async (sha256: string) => (await materializeCodePackage(code.db, sha256, code.cacheDir ? { cacheDir: code.cacheDir } : {})).dir } : {}),
  });
  return s.allowlist ? withUrlAllowlist(runtimes, s.allowlist) : runtimes;
}

export interface ApiSettings extends Omit<AppDeps, 'invoke' | 'registry'> {
  /** names this process in `started.workerId` and sync leases */
  instanceId: string;
  /** the process's registry (the worker's metrics go there too); a fresh one when absent */
  registry?: Registry;
  /** runtimes the caller owns (the worker of the same process, a test's poller share them); else built from `runtime` and closed by close() */
  runtimes?: Runtimes;
  /** how the runtimes are built when `runtimes` is absent (functionsDir, logger and httpAllowlist come from above) */
  runtime?: Omit<RuntimeSettings, 'functionsDir' | 'logger' | 'allowlist'>;
  /** InvokeService tuning: WORKER_LEASE_GRACE_MS, MAX_CHAIN_DEPTH, group commit */
  invoke?: Pick<InvokeServiceOptions, 'coalesce' | 'functionCacheMs' | 'leaseGraceMs' | 'maxChainDepth'>;
}

export interface ComposedApi {
  app: Hono;
  invoke: InvokeService;
  runtimes: Runtimes;
  registry: Registry;
  /** closes what was built here (the runtimes, unless they were passed in) */
  close(): Promise<void>;
}

/** The API of one process: runtimes (unless given), the InvokeService and the app around them. */
export function composeApi(s: ApiSettings): ComposedApi {
  const { instanceId, registry: given, runtimes: shared, runtime, invoke: tuning, ...deps } = s;
  const registry = given ?? new Registry();
  const runtimes =
    shared ??
    composeRuntimes({ functionsDir: s.functionsDir, logger: s.logger, ...runtime, ...(s.httpAllowlist ? { allowlist: s.httpAllowlist } : {}) });
  const invoke = new InvokeService({
    db: s.db,
    runtimes,
    instanceId,
    logger: s.logger,
    registry,
    ...(s.notifications ? { notifications: s.notifications } : {}),
    ...tuning,
  });
  const app = createApp({ ...deps, invoke, registry });
  return {
    app,
    invoke,
    runtimes,
    registry,
    close: async () => {
      if (!shared) await runtimes.close();
    },
  };
}
