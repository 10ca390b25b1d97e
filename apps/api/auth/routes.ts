// Which scope each HTTP route and each GraphQL root field needs: the one table to read
// (and to extend with every new route; test/security checks that nothing is left out).
import type { Scope } from '../../../db/keys.ts';
import { MAX_PUT_RECORDS_BODY_BYTES } from '../../../db/streams.ts';

/** `open`: no key needed; `graphql`: decided per operation by the GraphQL plugin. */
export type RouteAccess = Scope | 'open' | 'graphql';
/** How refusals are shaped: Lambda-style (x-amzn-ErrorType) or the native JSON error. */
export type ErrorStyle = 'lambda' | 'native';

export interface RouteRule {
  method: string;
  /** a path pattern in Hono's syntax, for documentation and the route-coverage test */
  path: string;
  pattern: RegExp;
  access: RouteAccess;
  style: ErrorStyle;
  /** the largest body read to check a signature (default MAX_SIGNED_BODY_BYTES): code uploads are larger */
  maxBodyBytes?: number;
}

const rule = (method: string, path: string, pattern: RegExp, access: RouteAccess, style: ErrorStyle, maxBodyBytes?: number): RouteRule => ({
  method,
  path,
  pattern,
  access,
  style,
  ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}),
});

/** A code upload: a 50 MB zip in base64 inside JSON (apps/api/lambda-control-routes.ts CONTROL_BODY_LIMIT). */
const CODE_UPLOAD_BYTES = Math.ceil((52_428_800 * 4) / 3) + 1024 * 1024;


export const ROUTE_RULES: readonly RouteRule[] = [
  rule('GET', '/healthz', /^\/healthz$/, 'open', 'native'),
  // function names and counts: read like the audit views (METRICS_PORT serves it without a key)
  rule('GET', '/metrics', /^\/metrics$/, 'audit', 'native'),
  rule('POST', '/2015-03-31/functions/:name/invocations', /^\/2015-03-31\/functions\/[^/]+\/invocations\/?$/, 'invoke', 'lambda'),
  rule('POST', '/2014-11-13/functions/:name/invoke-async', /^\/2014-11-13\/functions\/[^/]+\/invoke-async\/?$/, 'invoke', 'lambda'),
  rule('POST', '/invoke/:name', /^\/invoke\/[^/]+\/?$/, 'invoke', 'native'),
  rule('GET', '/invocations/:id', /^\/invocations\/[^/]+\/?$/, 'audit', 'native'),
  rule('POST', '/queues/:name/messages', /^\/queues\/[^/]+\/messages\/?$/, 'invoke', 'native'),
  // putting records on a stream is to it what sending is to a queue (docs/streams.md)
  rule('POST', '/streams/:name/records', /^\/streams\/[^/]+\/records\/?$/, 'invoke', 'native', MAX_PUT_RECORDS_BODY_BYTES),
  // Kinesis's PutRecord/PutRecords (X-Amz-Target on POST /): the same as putting records above
  rule('POST', '/', /^\/$/, 'invoke', 'lambda', MAX_PUT_RECORDS_BODY_BYTES),
  // tamper evidence (docs/tamper-evidence.md): heads, proofs, and signing a head on demand
  rule('GET', '/audit/tree-heads', /^\/audit\/tree-heads\/?$/, 'audit', 'native'),
  rule('GET', '/audit/tree-heads/latest', /^\/audit\/tree-heads\/latest\/?$/, 'audit', 'native'),
  rule('POST', '/audit/tree-heads', /^\/audit\/tree-heads\/?$/, 'audit', 'native'),
  rule('GET', '/audit/seal', /^\/audit\/seal\/?$/, 'audit', 'native'),
  rule('GET', '/audit/invocations/:id/proof', /^\/audit\/invocations\/[^/]+\/proof\/?$/, 'audit', 'native'),
  rule('GET', '/audit/events/:position/proof', /^\/audit\/events\/[^/]+\/proof\/?$/, 'audit', 'native'),
  rule('GET', '/audit/consistency', /^\/audit\/consistency\/?$/, 'audit', 'native'),
  // the EventBridge Scheduler API (docs/schedules.md): changes need admin, reads audit
  rule('POST', '/schedules/:name', /^\/schedules\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('PUT', '/schedules/:name', /^\/schedules\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('DELETE', '/schedules/:name', /^\/schedules\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('GET', '/schedules/:name', /^\/schedules\/[^/]+\/?$/, 'audit', 'lambda'),
  rule('GET', '/schedules', /^\/schedules\/?$/, 'audit', 'lambda'),
  // the control plane (docs/control-plane.md): Lambda's function, version, alias,
  // concurrency and event invoke configuration operations, all admin
  rule('GET', '/2015-03-31/functions', /^\/2015-03-31\/functions\/?$/, 'admin', 'lambda'),
  rule('POST', '/2015-03-31/functions', /^\/2015-03-31\/functions\/?$/, 'admin', 'lambda', CODE_UPLOAD_BYTES),
  rule('GET', '/2015-03-31/functions/:name', /^\/2015-03-31\/functions\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('DELETE', '/2015-03-31/functions/:name', /^\/2015-03-31\/functions\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('GET', '/2015-03-31/functions/:name/configuration', /^\/2015-03-31\/functions\/[^/]+\/configuration\/?$/, 'admin', 'lambda'),
  rule('PUT', '/2015-03-31/functions/:name/configuration', /^\/2015-03-31\/functions\/[^/]+\/configuration\/?$/, 'admin', 'lambda'),
  rule('PUT', '/2015-03-31/functions/:name/code', /^\/2015-03-31\/functions\/[^/]+\/code\/?$/, 'admin', 'lambda', CODE_UPLOAD_BYTES),
  rule('*', '/2015-03-31/functions/:name/versions', /^\/2015-03-31\/functions\/[^/]+\/versions\/?$/, 'admin', 'lambda'),
  rule('*', '/2015-03-31/functions/:name/aliases', /^\/2015-03-31\/functions\/[^/]+\/aliases\/?$/, 'admin', 'lambda'),
  rule('*', '/2015-03-31/functions/:name/aliases/:alias', /^\/2015-03-31\/functions\/[^/]+\/aliases\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('*', '/2017-10-31/functions/:name/concurrency', /^\/2017-10-31\/functions\/[^/]+\/concurrency\/?$/, 'admin', 'lambda'),
  rule('GET', '/2019-09-30/functions/:name/concurrency', /^\/2019-09-30\/functions\/[^/]+\/concurrency\/?$/, 'admin', 'lambda'),
  rule('*', '/2019-09-25/functions/:name/event-invoke-config', /^\/2019-09-25\/functions\/[^/]+\/event-invoke-config\/?$/, 'admin', 'lambda'),
  rule('*', '/2015-03-31/event-source-mappings', /^\/2015-03-31\/event-source-mappings\/?$/, 'admin', 'lambda'),
  rule('*', '/2015-03-31/event-source-mappings/:uuid', /^\/2015-03-31\/event-source-mappings\/[^/]+\/?$/, 'admin', 'lambda'),
  rule('GET', '/2016-08-19/account-settings', /^\/2016-08-19\/account-settings\/?$/, 'admin', 'lambda'),
  // GetFunction's Code.Location: the URL carries its own signature and expiry (10 minutes)
  rule('GET', '/code/:sha256', /^\/code\/[^/]+$/, 'open', 'native'),
  rule('*', '/graphql', /^\/graphql\/?$/, 'graphql', 'native'),
  // GraphiQL's own scripts and styles: the page is public, the operations it sends are not
  rule('GET', '/graphql/graphiql/:version/:file', /^\/graphql\/graphiql\/[^/]+\/[^/]+$/, 'open', 'native'),
  // a browser is sent to the console; other clients get an index of where things are
  rule('GET', '/', /^\/$/, 'open', 'native'),
  // the web console checks its own session (an API key in an HttpOnly cookie) and reads and
  // acts only through /graphql with that key, which is checked there like any other
  rule('*', '/console/*', /^\/console(\/.*)?$/, 'open', 'native'),
];

/** AWS-style API version prefixes: refusals on these paths use the Lambda error shape. */
const LAMBDA_PATH = /^\/\d{4}-\d{2}-\d{2}\//;

/** A route as Hono registered it: `POST /invoke/:name`, or `ALL /2015-03-31/*` for a middleware. */
export interface RegisteredRoute {
  method: string;
  path: string;
}

/** Middlewares are mounted as `ALL <prefix>*`; they answer nothing themselves. */
export const isMiddleware = (r: RegisteredRoute): boolean => r.method === 'ALL' && r.path.endsWith('*');

/**
 * The rule of a route as registered (`/2015-03-31/functions/:FunctionName/invocations`):
 * a parameter of the route matches a parameter of the rule. Undefined when no rule names it.
 */
export function ruleOfRoute(route: RegisteredRoute): RouteRule | undefined {
  return ROUTE_RULES.find((r) => (r.method === '*' || r.method === route.method) && r.pattern.test(route.path));
}

/** What a request needs, decided from the routes that will run, never from the path as spelt. */
export type AccessDecision =
  | { kind: 'open' }
  | { kind: 'graphql' }
  | { kind: 'scoped'; scopes: Scope[]; style: ErrorStyle; label: string; maxBodyBytes?: number }
  /** a route the table does not know: refused for every key (fail closed) */
  | { kind: 'undecided'; style: ErrorStyle; label: string };

/**
 * `matched`: the routes the router matched for this request, in order (Hono's
 * matchedRoutes), middlewares included. Every route that may answer must allow the key.
 * A request no route answers (it will get 404) needs `admin`, so an unknown path tells a
 * caller without that scope nothing.
 */
export function decideAccess(matched: readonly RegisteredRoute[], routedPath: string): AccessDecision {
  const handlers = matched.filter((r) => !isMiddleware(r));
  const lambdaStyle: ErrorStyle = LAMBDA_PATH.test(routedPath) ? 'lambda' : 'native';
  if (handlers.length === 0) return { kind: 'scoped', scopes: ['admin'], style: lambdaStyle, label: `a path no route answers (${routedPath})` };
  const rules = handlers.map((h) => ({ route: h, rule: ruleOfRoute(h) }));
  const unknown = rules.find((r) => r.rule === undefined);
  if (unknown) return { kind: 'undecided', style: lambdaStyle, label: `${unknown.route.method} ${unknown.route.path}` };
  const known = rules.map((r) => r.rule as RouteRule);
  const scopes = [...new Set(known.flatMap((r) => (r.access === 'open' || r.access === 'graphql' ? [] : [r.access])))];
  const first = known[0] as RouteRule;
  const maxBodyBytes = known.every((r) => r.maxBodyBytes !== undefined) ? Math.min(...known.map((r) => r.maxBodyBytes as number)) : undefined;
  if (scopes.length > 0) return { kind: 'scoped', scopes, style: first.style, label: `${first.method} ${first.path}`, ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}) };
  return known.some((r) => r.access === 'graphql') ? { kind: 'graphql' } : { kind: 'open' };
}

/**
 * The rule for a method and a concrete path, as the table reads (for docs and tests; the
 * gate decides on the matched route, see decideAccess). A path missing from the table
 * needs `admin`.
 */
export function routeRule(method: string, path: string): RouteRule {
  const m = method.toUpperCase();
  const found = ROUTE_RULES.find((r) => (r.method === '*' || r.method === m || (m === 'HEAD' && r.method === 'GET')) && r.pattern.test(path));
  return found ?? rule(m, path, /^$/, 'admin', LAMBDA_PATH.test(path) ? 'lambda' : 'native');
}

export type OperationKind = 'query' | 'mutation' | 'subscription';

/** GraphQL root fields. `__typename` needs nothing; introspection needs any valid key. */
export const GRAPHQL_FIELD_SCOPES: Record<OperationKind, Record<string, Scope>> = {
  query: {
    invocation: 'audit',
    invocations: 'audit',
    deadLetters: 'audit',
    functions: 'audit',
    function: 'audit',
    functionStats: 'audit',
    functionHistory: 'audit',
    queues: 'audit',
    queue: 'audit',
    queueDeadLetters: 'audit',
    eventSourceMappings: 'audit',
    eventSourceMapping: 'audit',
    brokerEventSourceMappings: 'audit',
    brokerEventSourceMapping: 'audit',
    invocationStats: 'audit',
    activity: 'audit',
    deadLetterGroups: 'audit',
    treeHead: 'audit',
    invocationProof: 'audit',
    consistencyProof: 'audit',
    schedules: 'audit',
    schedule: 'audit',
    scheduleTicks: 'audit',
    replay: 'audit',
    replays: 'audit',
    streams: 'audit',
    stream: 'audit',
    streamEventSourceMappings: 'audit',
    changeStreamEventSourceMappings: 'audit',
    changeStreamEventSourceMapping: 'audit',
    streamRecordDeliveries: 'audit',
  },
  mutation: {
    createFunction: 'admin',
    updateFunction: 'admin',
    deleteFunction: 'admin',
    invoke: 'invoke',
    invokeAsync: 'invoke',
    redrive: 'admin',
    cancelInvocation: 'admin',
    createQueue: 'admin',
    // sending is to a queue what invoking is to a function (POST /queues/:name/messages too)
    sendMessage: 'invoke',
    sendMessageBatch: 'invoke',
    redriveQueueDeadLetters: 'admin',
    createEventSourceMapping: 'admin',
    updateEventSourceMapping: 'admin',
    deleteEventSourceMapping: 'admin',
    createSchedule: 'admin',
    updateSchedule: 'admin',
    setScheduleState: 'admin',
    deleteSchedule: 'admin',
    createRabbitMqEventSourceMapping: 'admin',
    createNatsEventSourceMapping: 'admin',
    updateBrokerEventSourceMapping: 'admin',
    deleteBrokerEventSourceMapping: 'admin',
    // replays run code against recorded payloads: an operator's decision (docs/replay.md)
    startReplay: 'admin',
    createStream: 'admin',
    putRecord: 'invoke',
    putRecords: 'invoke',
    createStreamEventSourceMapping: 'admin',
    updateStreamEventSourceMapping: 'admin',
    deleteStreamEventSourceMapping: 'admin',
    createChangeStreamEventSourceMapping: 'admin',
    deleteChangeStreamEventSourceMapping: 'admin',
  },
  subscription: {
    invocationEvents: 'audit',
  },
};

/** For a root field missing from the table: reads are audit, writes admin. */
export const GRAPHQL_DEFAULT_SCOPE: Record<OperationKind, Scope> = { query: 'audit', mutation: 'admin', subscription: 'audit' };

export function graphqlFieldScope(kind: OperationKind, field: string): Scope | 'authenticated' | 'open' {
  if (field === '__typename') return 'open';
  if (field === '__schema' || field === '__type') return 'authenticated';
  return GRAPHQL_FIELD_SCOPES[kind][field] ?? GRAPHQL_DEFAULT_SCOPE[kind];
}
