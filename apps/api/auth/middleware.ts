// The HTTP gate: every request except /healthz, the GraphiQL page and /graphql (checked per
// operation by the GraphQL plugin) needs a key with the route's scope. The route is the
// one the router matched (after it decoded and normalised the path), so no spelling of a
// path reaches a handler under another route's rule.
//   401: no key, unknown/revoked key, bad signature   403: the key lacks the scope
// Lambda routes answer like AWS (x-amzn-ErrorType, so the SDK raises its own error
// classes); native routes answer with the native JSON error.
import { randomUUID } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Logger } from 'pino';
import { isLedgerError } from '../../../db/errors.ts';
import { readBodyLimited } from '../body.ts';
import { AuthenticationError, Authenticator, type Principal } from './authenticator.ts';
import { decideAccess, type ErrorStyle } from './routes.ts';

/** The largest body any route accepts (a sync invoke); a signed body is read up to this. */
export const MAX_SIGNED_BODY_BYTES = 6 * 1024 * 1024;

const principals = new WeakMap<Request, Principal>();

/** The authenticated caller of a request (undefined when auth is off or the route is open). */
export function principalOf(request: Request): Principal | undefined {
  return principals.get(request);
}

export type RefusalCode =
  | 'UnrecognizedClientException'
  | 'InvalidSignatureException'
  | 'AccessDeniedException'
  | 'RequestEntityTooLargeException';

const NATIVE_CODES: Record<RefusalCode, string> = {
  UnrecognizedClientException: 'Unauthorized',
  InvalidSignatureException: 'Unauthorized',
  AccessDeniedException: 'Forbidden',
  RequestEntityTooLargeException: 'PayloadTooLarge',
};

function refuse(c: Context, style: ErrorStyle, status: 401 | 403 | 413, code: RefusalCode, message: string): Response {
  const requestId = randomUUID();
  if (style === 'lambda') {
    return c.json({ Type: 'User', message }, status, { 'x-amzn-ErrorType': code, 'x-amzn-RequestId': requestId });
  }
  const headers: Record<string, string> = {};
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer realm="invoke-ledger"';
  return c.json({ error: { code: NATIVE_CODES[code], message } }, status, headers);
}

/** Path and query as on the request line (still percent-encoded), which SigV4 signs. */
function requestTarget(url: string): string {
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  return slash < 0 ? '/' : url.slice(slash);
}

export function authMiddleware(auth: Authenticator, logger?: Logger): MiddlewareHandler {
  return async (c, next) => {
    const access = decideAccess(matchedRoutes(c), c.req.path);
    if (access.kind === 'open' || access.kind === 'graphql') return next();
    if (access.kind === 'undecided') {
      // a route added without an entry in ROUTE_RULES: closed to every key until it has one
      logger?.error({ route: access.label }, 'refused a request: its route has no entry in ROUTE_RULES (apps/api/auth/routes.ts)');
      return refuse(c, access.style, 403, 'AccessDeniedException', `No access rule covers ${access.label}; the server refuses it to every key.`);
    }
    const target = requestTarget(c.req.url);

    let principal: Principal;
    try {
      principal = await auth.request({
        method: c.req.method,
        target,
        header: (name) => c.req.header(name),
        // kept with the request: the route reads the same bytes again under its own limit
        body: () => readBodyLimited(c, access.maxBodyBytes ?? MAX_SIGNED_BODY_BYTES),
      });
    } catch (e) {
      if (isLedgerError(e) && e.code === 'PayloadTooLarge') {
        return refuse(c, access.style, 413, 'RequestEntityTooLargeException', e.message);
      }
      if (!(e instanceof AuthenticationError)) throw e;
      const code = e.reason === 'signature' ? 'InvalidSignatureException' : 'UnrecognizedClientException';
      return refuse(c, access.style, 401, code, e.message);
    }
    const missing = access.scopes.filter((s) => !principal.scopes.has(s));
    if (missing.length > 0) {
      return refuse(c, access.style, 403, 'AccessDeniedException', `Key ${principal.keyId} does not have the ${missing.join(', ')} scope needed for ${access.label}.`);
    }
    principals.set(c.req.raw, principal);
    return next();
  };
}
