// The native HTTP routes (docs/graphql.md, docs/audit.md): POST /invoke/:name (sync, or async with
// `Prefer: respond-async` / `?async=true`) and GET /invocations/:id. Same limits and
// error table as the Lambda routes, with the error body {"error": {"code", "message"}}.
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import { getInvocation, type InvocationView } from '../../db/invocations.ts';
import type { Db } from '../../db/schema.ts';
import { parseJsonPayload, readBodyLimited } from './body.ts';
import { clientGoneSignal } from './client-gone.ts';
import { httpErrorOf } from './errors.ts';
import { headerText } from './headers.ts';
import { chainDepthOf, idempotencyKeyOf, parseFunctionRef } from './function-ref.ts';
import { ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT, type InvokeService } from './invoke.ts';

export function nativeRoutes(db: Db, invoke: InvokeService, logger: Logger): Hono {
  const app = new Hono();

  app.post('/invoke/:name', (c) =>
    nativeAnswer(c, logger, async () => {
      const ref = parseFunctionRef(c.req.param('name'), c.req.query('version'));
      const idempotencyKey = idempotencyKeyOf(c.req.raw.headers);
      const chainDepth = chainDepthOf(c.req.raw.headers);
      const async = wantsAsync(c);
      const bytes = await readBodyLimited(c, async ? ASYNC_PAYLOAD_LIMIT : SYNC_PAYLOAD_LIMIT);
      const payload = parseJsonPayload(bytes);
      const { fn, alias, qualifier } = await invoke.resolveTarget(ref);

      if (async) {
        const { invocationId } = await invoke.invokeAsync(fn, payload, { idempotencyKey, chainDepth, alias, qualifier });
        return c.json({ invocationId }, 202, {
          Location: `/invocations/${invocationId}`,
          'Preference-Applied': 'respond-async',
          'x-amzn-RequestId': invocationId,
        });
      }
      const r = await invoke.invokeSync(fn, payload, { idempotencyKey, chainDepth, alias, qualifier, clientSignal: clientGoneSignal(c) });
      const headers: Record<string, string> = {
        'x-amzn-RequestId': r.invocationId,
        'X-Invocation-Id': r.invocationId,
        'X-Function-Version': String(r.functionVersion),
      };
      // the function has run: nothing below may turn into a 5xx
      if (!r.ok) headers['X-Function-Error'] = headerText(r.error?.errorType ?? 'Unhandled');
      return c.body(r.ok ? (JSON.stringify(r.result) ?? 'null') : JSON.stringify(r.error), 200, {
        ...headers,
        'content-type': 'application/json',
      });
    }),
  );

  app.get('/invocations/:id', (c) =>
    nativeAnswer(c, logger, async () => {
      const id = c.req.param('id');
      const view = await getInvocation(db, id);
      if (!view) throw new LedgerError('InvocationNotFound', `Invocation not found: ${id}`);
      return c.json(invocationJson(view), 200, { 'x-amzn-RequestId': view.id });
    }),
  );

  return app;
}

/** `Prefer: respond-async` (RFC 7240, possibly among other preferences) or `?async=true` */
function wantsAsync(c: Context): boolean {
  const q = c.req.query('async');
  if (q === 'true' || q === '1') return true;
  const prefer = c.req.header('prefer') ?? '';
  return prefer.split(',').some((p) => p.split(';')[0]?.trim().toLowerCase() === 'respond-async');
}

/** The JSON shape of GET /invocations/:id; positions are strings (bigint). */
export function invocationJson(v: InvocationView) {
  return {
    id: v.id,
    functionName: v.functionName,
    functionVersion: v.functionVersion,
    type: v.invocationType,
    status: v.status,
    attempts: v.attempts,
    idempotencyKey: v.idempotencyKey,
    payload: v.payload,
    result: v.result,
    error: v.error,
    deadLetterReason: v.deadLetterReason,
    acceptedAt: v.acceptedAt.toISOString(),
    finishedAt: v.finishedAt?.toISOString() ?? null,
    events: v.events.map((e) => ({
      position: String(e.position),
      seq: e.seq,
      type: e.type,
      attempt: e.attempt,
      occurredAt: new Date(e.occurredAt).toISOString(),
      data: e.data,
    })),
  };
}

/** Runs a native route; a thrown error answers from the error table as {"error": {code, message}}. */
export async function nativeAnswer(c: Context, logger: Logger, run: () => Promise<Response>): Promise<Response> {
  try {
    return await run();
  } catch (e) {
    const err = httpErrorOf(e);
    if (err.status >= 500) logger.error({ err: e }, 'native route failed');
    return c.json({ error: { code: err.code, message: err.message, ...err.fields } }, err.status, {
      ...err.headers,
      'x-amzn-RequestId': randomUUID(),
    });
  }
}
