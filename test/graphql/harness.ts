// Shared by the GraphQL specs: a fresh database, the real InvokeService with inline
// runtimes over ./functions, the GraphQL routes mounted at /graphql as app.ts does, and
// helpers that drive async invocations to an end through the one writer.
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { pino } from 'pino';
import type pg from 'pg';
import { graphqlRoutes, type GraphQLDeps, type GraphQLOptions } from '../../apps/api/graphql/index.ts';
import { InvokeService } from '../../apps/api/invoke.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { upsertFunction } from '../../db/functions.ts';
import { loadStates, appendEvents } from '../../db/writer.ts';
import type { Db } from '../../db/schema.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

export const FUNCTIONS_DIR = fileURLToPath(new URL('../../functions/', import.meta.url));
export const silent = pino({ level: 'silent' });

export interface Harness {
  t: TestDatabase;
  deps: GraphQLDeps;
  runtimes: Runtimes;
  app: Hono;
  /** POST a GraphQL operation; returns the parsed body (untyped by default: tests assert the shape) */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  gql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>): Promise<GraphQLBody<T>>;
  close(): Promise<void>;
}

export interface GraphQLBody<T> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown>; path?: (string | number)[] }[];
}

export function mount(deps: GraphQLDeps, options: GraphQLOptions = {}): Hono {
  return new Hono().route('/graphql', graphqlRoutes(deps, options));
}

export async function post<T>(app: Hono, query: string, variables?: Record<string, unknown>): Promise<GraphQLBody<T>> {
  const res = await app.request('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GraphQLBody<T>;
}

export async function createHarness(options: { deps?: Partial<GraphQLDeps>; graphql?: GraphQLOptions } = {}): Promise<Harness> {
  const t = await createTestDatabase();
  const runtimes = createRuntimes({ functionsDir: FUNCTIONS_DIR, poolSize: 1, logger: silent });
  const invoke = new InvokeService({ db: t.db, runtimes, instanceId: 'graphql-test', logger: silent });
  for (const name of ['echo', 'fail', 'sleep']) {
    await upsertFunction(t.db, name, { runtime: 'MODULE', handler: `${name}.ts`, isolation: 'inline' });
  }
  const deps: GraphQLDeps = {
    db: t.db,
    invoke,
    logger: silent,
    functionsDir: FUNCTIONS_DIR,
    databaseUrl: t.ownerUrl,
    ...options.deps,
  };
  const app = mount(deps, options.graphql);
  return {
    t,
    deps,
    runtimes,
    app,
    gql: (query, variables) => post(app, query, variables),
    close: () => runtimes.close(),
  };
}

const failure = { errorType: 'Boom', errorMessage: 'it broke', trace: [] as string[] };

/** Runs one attempt of a queued async invocation to an end, as a worker would. */
export async function finishAsync(db: Db, id: string, outcome: 'succeeded' | 'dead_lettered' | 'retried', durationMs = 5): Promise<void> {
  const prior = (await loadStates(db, [id])).get(id);
  if (!prior) throw new Error(`no invocation ${id}`);
  const attempt = prior.attempts + 1;
  const started = await appendEvents(db, {
    invocationId: id,
    expectedSeq: prior.lastSeq,
    prior,
    events: [{ type: 'started', data: { attempt, workerId: 'graphql-test' } }],
  });
  const events =
    outcome === 'succeeded'
      ? [{ type: 'succeeded' as const, data: { attempt, result: { attempt }, durationMs } }]
      : outcome === 'retried'
        ? [
            { type: 'failed' as const, data: { attempt, error: failure, willRetry: true, durationMs } },
            { type: 'retried' as const, data: { attempt: attempt + 1, runAt: new Date(Date.now() + 3_600_000).toISOString(), delayMs: 3_600_000 } },
          ]
        : [
            { type: 'failed' as const, data: { attempt, error: failure, willRetry: false, durationMs } },
            { type: 'dead_lettered' as const, data: { reason: 'RetriesExhausted' as const } },
          ];
  await appendEvents(db, { invocationId: id, expectedSeq: started.state.lastSeq, prior: started.state, events });
}

/**
 * Counts the statements a pg Pool sends: a spy on the clients Kysely checks out (the
 * queries still run on PostgreSQL; nothing is faked).
 */
export function countQueries(pool: pg.Pool): { count(): number; reset(): void; texts: string[] } {
  const texts: string[] = [];
  const wrapped = new WeakSet<object>();
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  (pool as unknown as { connect: () => Promise<pg.PoolClient> }).connect = async () => {
    const client = await connect();
    if (!wrapped.has(client)) {
      wrapped.add(client);
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const first = args[0];
        texts.push(typeof first === 'string' ? first : String((first as { text?: string })?.text ?? ''));
        return query(...args);
      };
    }
    return client;
  };
  return { count: () => texts.length, reset: () => void (texts.length = 0), texts };
}
