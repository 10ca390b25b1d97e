// A signal that fires when the caller's connection closes before its answer was sent, so
// a sync invoke stops waiting for a runtime when nobody is left to answer. Under
// @hono/node-server it watches Node's ServerResponse (`c.env.outgoing`): reading
// `c.req.raw.signal` instead would build a full WHATWG Request per request, the largest
// CPU cost of an accept (see body.ts). Elsewhere (app.request() in tests) there is none.
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';

export function clientGoneSignal(c: Context): AbortSignal | undefined {
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  if (outgoing === undefined || typeof outgoing.once !== 'function') return undefined;
  const controller = new AbortController();
  outgoing.once('close', () => {
    if (!outgoing.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  return controller.signal;
}
