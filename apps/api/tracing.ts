// One SERVER span per HTTP request, continuing the caller's W3C traceparent/tracestate
// (docs/observability.md). Mounted on every route, so invokes through the Lambda routes,
// the native routes and GraphQL all start where the caller's trace is. A no-op when
// tracing is off.
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { contextFrom, inSpan, SpanKind, tracingOn } from '../telemetry/tracing.ts';

export function traceRequests(): MiddlewareHandler {
  return async (c, next) => {
    if (!tracingOn()) return next();
    const traceparent = c.req.header('traceparent');
    const tracestate = c.req.header('tracestate');
    const parent = contextFrom(traceparent ? { traceparent, ...(tracestate ? { tracestate } : {}) } : undefined);
    const method = c.req.method;
    await inSpan(method, { kind: SpanKind.SERVER, parent, attributes: { 'http.request.method': method, 'url.path': c.req.path } }, async (span) => {
      await next();
      const route = routePath(c, -1);
      if (span) {
        span.updateName(`${method} ${route}`);
        span.setAttribute('http.route', route);
        span.setAttribute('http.response.status_code', c.res.status);
        if (c.res.status >= 500) span.setStatus({ code: 2 });
        const id = c.res.headers.get('x-invocation-id') ?? c.res.headers.get('x-amzn-requestid');
        if (id) span.setAttribute('faas.invocation_id', id);
      }
    });
  };
}
