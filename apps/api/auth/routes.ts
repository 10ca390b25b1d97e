// Which scope each HTTP route and each GraphQL root field needs: the one table to read
// (and to extend with every new route; test/security checks that nothing is left out).
import type { Scope } from '../../../db/keys.ts';

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
}

const rule = (method: string, path: string, pattern: RegExp, access: RouteAccess, style: ErrorStyle): RouteRule => ({
  method,
  path,
  pattern,
  access,
  style,
});

export const ROUTE_RULES: readonly RouteRule[] = [
  rule('GET', '/healthz', /^\/healthz$/, 'open', 'native'),
  rule('GET', '/metrics', /^\/metrics$/, 'open', 'native'),
  rule('POST', '/2015-03-31/functions/:name/invocations', /^\/2015-03-31\/functions\/[^/]+\/invocations\/?$/, 'invoke', 'lambda'),
  rule('POST', '/2014-11-13/functions/:name/invoke-async', /^\/2014-11-13\/functions\/[^/]+\/invoke-async\/?$/, 'invoke', 'lambda'),
  rule('POST', '/invoke/:name', /^\/invoke\/[^/]+\/?$/, 'invoke', 'native'),
  rule('GET', '/invocations/:id', /^\/invocations\/[^/]+\/?$/, 'audit', 'native'),
  rule('POST', '/queues/:name/messages', /^\/queues\/[^/]+\/messages\/?$/, 'invoke', 'native'),
  rule('*', '/graphql', /^\/graphql\/?$/, 'graphql', 'native'),
  // GraphiQL's own scripts and styles: the page is public, the operations it sends are not
  rule('GET', '/graphql/graphiql/:version/:file', /^\/graphql\/graphiql\/[^/]+\/[^/]+$/, 'open', 'native'),
];

/** AWS-style API version prefixes: refusals on these paths use the Lambda error shape. */
const LAMBDA_PATH = /^\/\d{4}-\d{2}-\d{2}\//;

/**
 * The rule for a request. A route missing from the table needs `admin`: a route added
 * without a decision here is closed to invoke- and audit-only keys rather than open.
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
    queues: 'audit',
    queue: 'audit',
    queueDeadLetters: 'audit',
    eventSourceMappings: 'audit',
    eventSourceMapping: 'audit',
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
