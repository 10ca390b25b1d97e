// What the API is built from: the one bag createApp (app.ts) takes, assembled by the
// composition root. Only app.ts reads it whole; each route gets its own part (GraphQL its
// GraphQLDeps, graphql/index.ts), so nothing under graphql/ names this module.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { LedgerNotifications } from '../../db/notifications.ts';
import type { ReplicaReads } from '../../db/replica.ts';
import type { Db } from '../../db/schema.ts';
import type { UrlAllowlist } from '../runtimes/allowlist.ts';
import type { TreeHeadSigner } from './audit-routes.ts';
import type { AuthOptions } from './auth/index.ts';
import type { LedgerFeed } from './graphql/feed.ts';
import type { InvokeService } from './invoke.ts';

export interface AppDeps {
  db: Db;
  invoke: InvokeService;
  logger: Logger;
  registry: Registry;
  functionsDir: string;
  /** the database URL (a LISTEN connection is made from it when `notifications` is not given) */
  databaseUrl?: string;
  /** the process's one LISTEN connection (db/notifications.ts): the feed and idempotent waiters use it */
  notifications?: LedgerNotifications;
  /** the process's live feed; main passes it to close it at shutdown */
  feed?: LedgerFeed;
  /** GRAPHQL_INTROSPECTION=off turns schema introspection off (default on) */
  graphqlIntrospection?: boolean;
  /** API keys and scopes (docs/security.md); off when absent, as in tests that build the app directly */
  auth?: AuthOptions;
  /** HTTP_ALLOWLIST, checked when GraphQL registers a function's url or URL destinations */
  httpAllowlist?: UrlAllowlist;
  /** signs tree heads on demand (POST /audit/tree-heads); absent when this process has no signing key */
  treeHeadSigner?: TreeHeadSigner;
  /** CORS_ORIGINS: browser origins that may call the API (exact origins); none by default */
  corsOrigins?: readonly string[];
  /** DATABASE_READ_URL: GraphQL queries (the console's too) and audit reads from a replica, never staler than the primary at the request (docs/scale.md) */
  reads?: ReplicaReads;
  /** TRACE_URL_TEMPLATE: the console links a trace id to this URL, `{traceId}` replaced (docs/observability.md) */
  traceUrlTemplate?: string;
  /** signs GetFunction's Code.Location URLs (docs/control-plane.md); random per process when absent */
  codeUrlKey?: Uint8Array;
}
