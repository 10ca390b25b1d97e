// The Lambda-compatible Invoke API (docs/http-api.md):
// what `@aws-sdk/client-lambda` InvokeCommand and `aws lambda invoke --endpoint-url`
// send and expect. Translation only: the lifecycle lives in InvokeService.
import { randomUUID } from 'node:crypto';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import { attemptLogTail } from '../../db/invocations.ts';
import type { Db } from '../../db/schema.ts';
import { tailBytes } from '../runtimes/index.ts';
import { parseJsonPayload, readBodyLimited } from './body.ts';
import { clientGoneSignal } from './client-gone.ts';
import { errorSide, httpErrorOf } from './errors.ts';
import { chainDepthOf, idempotencyKeyOf, parseFunctionRef } from './function-ref.ts';
import { ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT, type InvokeService } from './invoke.ts';

type InvocationType = 'RequestResponse' | 'Event' | 'DryRun';

const INVOCATION_TYPES = new Set<string>(['RequestResponse', 'Event', 'DryRun']);
const LOG_TAIL_BYTES = 4096;
/** Lambda's limit on the decoded client context */
const CLIENT_CONTEXT_LIMIT = 3583;

export function lambdaRoutes(db: Db, invoke: InvokeService, logger: Logger): Hono {
  const app = new Hono();
  // every answer under the Lambda paths has a request id, even a 404 for an unknown route
  const requestId: MiddlewareHandler = async (c, next) => {
    await next();
    if (!c.res.headers.has('x-amzn-RequestId')) c.res.headers.set('x-amzn-RequestId', randomUUID());
  };
  app.use('/2015-03-31/*', requestId);
  app.use('/2014-11-13/*', requestId);
  app.post('/2015-03-31/functions/:FunctionName/invocations', (c) =>
    invokeAnswer(c, logger, () => handleInvoke(c, db, invoke, invocationTypeOf(c.req.header('x-amz-invocation-type')))),
  );
  // InvokeAsync (deprecated in AWS, still sent by old clients): an Event invoke
  const legacy = (c: Context) => invokeAnswer(c, logger, () => handleInvoke(c, db, invoke, 'Event'));
  app.post('/2014-11-13/functions/:FunctionName/invoke-async', legacy);
  app.post('/2014-11-13/functions/:FunctionName/invoke-async/', legacy);
  return app;
}

interface Answer {
  status: 200 | 202 | 204;
  requestId: string;
  headers?: Record<string, string>;
  body?: string;
}

async function handleInvoke(c: Context, db: Db, invoke: InvokeService, type: InvocationType): Promise<Answer> {
  const ref = parseFunctionRef(c.req.param('FunctionName') ?? '', c.req.query('Qualifier'));
  const logType = logTypeOf(c.req.header('x-amz-log-type'));
  const clientContext = clientContextOf(c.req.header('x-amz-client-context'));
  const idempotencyKey = idempotencyKeyOf(c.req.raw.headers);
  const chainDepth = chainDepthOf(c.req.raw.headers);
  const bytes = await readBodyLimited(c, type === 'Event' ? ASYNC_PAYLOAD_LIMIT : SYNC_PAYLOAD_LIMIT);
  const payload = parseJsonPayload(bytes);
  const { fn, alias, qualifier } = await invoke.resolveTarget(ref);

  if (type === 'DryRun') return { status: 204, requestId: randomUUID() };
  if (type === 'Event') {
    const accepted = await invoke.invokeAsync(fn, payload, { idempotencyKey, chainDepth, alias, qualifier });
    // an empty string rather than no body: @hono/node-server writes a string body
    // straight to the socket, while a null one makes it build a full WHATWG Response
    return { status: 202, requestId: accepted.invocationId, body: '' };
  }

  const r = await invoke.invokeSync(fn, payload, { idempotencyKey, clientContext, chainDepth, alias, qualifier, clientSignal: clientGoneSignal(c) });
  // from here on the function has run: nothing below may turn into a 5xx
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-amz-executed-version': executedVersion(r.functionVersion, alias, qualifier),
  };
  if (!r.ok) headers['x-amz-function-error'] = 'Unhandled';
  if (logType === 'Tail') {
    const log = r.duplicate ? await attemptLogTail(db, r.invocationId, 1, LOG_TAIL_BYTES).catch(() => '') : r.log;
    headers['x-amz-log-result'] = Buffer.from(tailBytes(log, LOG_TAIL_BYTES), 'utf8').toString('base64');
  }
  const body = r.ok ? (JSON.stringify(r.result) ?? 'null') : JSON.stringify(r.error);
  return { status: 200, requestId: r.invocationId, headers, body };
}

/**
 * Lambda's X-Amz-Executed-Version: `$LATEST` for an unqualified (or `$LATEST`) invoke, the
 * version number for a numbered or alias invoke (docs/http-api.md). The ledger records the
 * number either way.
 */
export function executedVersion(version: number, alias: string | undefined, qualifier: string | undefined): string {
  return alias === undefined && qualifier === undefined ? '$LATEST' : String(version);
}

/** Runs a route; every outcome, errors included, carries x-amzn-RequestId. */
async function invokeAnswer(c: Context, logger: Logger, run: () => Promise<Answer>): Promise<Response> {
  try {
    const a = await run();
    const headers = { ...a.headers, 'x-amzn-RequestId': a.requestId };
    return a.body === undefined ? c.body(null, a.status, headers) : c.body(a.body, a.status as 200, headers);
  } catch (e) {
    const err = httpErrorOf(e);
    if (err.status >= 500) logger.error({ err: e }, 'invoke failed');
    const body = JSON.stringify({ Type: errorSide(err.status), message: err.message, ...err.fields });
    return c.body(body, err.status, {
      ...err.headers,
      'content-type': 'application/json',
      'x-amzn-ErrorType': err.awsType,
      'x-amzn-RequestId': randomUUID(),
    });
  }
}

function invocationTypeOf(header: string | undefined): InvocationType {
  if (header === undefined || header === '') return 'RequestResponse';
  if (!INVOCATION_TYPES.has(header)) {
    throw new LedgerError(
      'InvalidParameter',
      `1 validation error detected: Value '${header}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]`,
    );
  }
  return header as InvocationType;
}

function logTypeOf(header: string | undefined): 'None' | 'Tail' {
  if (header === undefined || header === '' || header === 'None') return 'None';
  if (header === 'Tail') return 'Tail';
  throw new LedgerError(
    'InvalidParameter',
    `1 validation error detected: Value '${header}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]`,
  );
}

/** base64 of a JSON object, handed to the handler as context.clientContext */
function clientContextOf(header: string | undefined): unknown {
  if (header === undefined || header === '') return undefined;
  const bad = () => new LedgerError('InvalidRequestContent', 'Client context must be a valid Base64-encoded JSON object.');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(header) || header.length % 4 === 1) throw bad();
  const decoded = Buffer.from(header, 'base64');
  if (decoded.byteLength > CLIENT_CONTEXT_LIMIT) {
    throw new LedgerError('InvalidRequestContent', `Client context must be at most ${CLIENT_CONTEXT_LIMIT} bytes when decoded.`);
  }
  try {
    const value: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(decoded));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad();
    return value;
  } catch {
    throw bad();
  }
}
