// What a resolver sees: the database its db/ reads and changes run on and the one service
// it calls, not the API's wider dependencies. Its own module, so that every resolver
// module names it without importing resolvers.ts, and nothing here names app.ts or deps.ts.
import { randomUUID } from 'node:crypto';
import type { ChangeContext } from '../../../db/control-plane.ts';
import type { RegistryChecks } from '../../../db/functions.ts';
import type { Db } from '../../../db/schema.ts';
import { principalOf, type Principal } from '../auth/index.ts';
import type { InvokeService } from '../invoke.ts';
import type { LedgerFeed } from './feed.ts';
import type { EventsLoader } from './loaders.ts';

/** The part of InvokeService GraphQL calls: invoke, and forget a function it changed. */
export type GraphQLInvoke = Pick<InvokeService, 'resolveFunction' | 'invokeSync' | 'invokeAsync' | 'forgetFunction'>;

export interface GraphQLContext {
  /** what the db/ functions run on: for a query, the replica once it has caught up (db/replica.ts), else the primary */
  db: Db;
  invoke: GraphQLInvoke;
  /** LEDGER_SECRET_KEY, which seals broker credentials (null: stored as given) */
  secretKey: string | null;
  /** registering a function checks its handler path and URL */
  checks: RegistryChecks;
  /** the request's batch loader of invocation events */
  events: EventsLoader;
  feed: LedgerFeed;
  request: Request;
}

/** Who makes a control-plane change over GraphQL: recorded with it in ledger.changes. */
export function changeContext(ctx: GraphQLContext): ChangeContext {
  const principal = (ctx as { principal?: Principal }).principal ?? principalOf(ctx.request);
  return { actor: principal?.keyId ?? 'anonymous', requestId: ctx.request.headers.get('x-request-id') ?? randomUUID() };
}
