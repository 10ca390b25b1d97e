// HTTP functions: the event is POSTed as JSON to the function's URL and a 2xx JSON body is
// the result. The body is signed so the endpoint can tell the ledger from anyone else.
import { createHmac } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AttemptLog, formatLogLine } from './attempt-log.ts';
import { CHAIN_DEPTH_HEADER } from './context.ts';
import { ErrorType, describeReason, MAX_RESULT_BYTES, REDACTED, functionError, timeoutError } from './errors.ts';
import type { AttemptOutcome, AttemptRequest, FunctionError, RunnableFunction } from './types.ts';
import { outgoingTraceHeaders } from '../telemetry/tracing.ts';

/** How much of a failing response body goes into errorMessage. */
const ERROR_BODY_CHARS = 1024;

export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

export async function runHttp(fn: RunnableFunction, req: AttemptRequest, graceMs: number, signal?: AbortSignal): Promise<AttemptOutcome> {
  const startedAt = performance.now();
  const log = new AttemptLog();
  const hide = secretsOfUrl(fn.url);
  const fail = (unsafe: FunctionError, httpStatus?: number): AttemptOutcome => {
    const error = withoutSecrets(unsafe, hide);
    log.append(formatLogLine('ERROR', [`${error.errorType}: ${error.errorMessage}`]));
    const outcome: AttemptOutcome = { ok: false, error, durationMs: elapsed(startedAt), log: log.toString() };
    if (httpStatus !== undefined) outcome.httpStatus = httpStatus;
    return outcome;
  };

  let url: URL;
  try {
    url = new URL(fn.url ?? '');
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    return fail(functionError(ErrorType.HttpInvalidUrl, 'Function URL is missing or not an http(s) URL'));
  }
  // Never echo credentials or query strings (they may carry tokens) into logs and errors.
  const target = `${url.protocol}//${url.host}${url.pathname}`;

  let body: string;
  try {
    body = JSON.stringify(req.payload ?? null);
  } catch (err) {
    return fail(functionError(ErrorType.InvalidResult, `Payload is not JSON-serialisable: ${(err as Error).message}`));
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-ledger-invocation-id': req.invocationId,
    'x-ledger-attempt': String(req.attempt),
    // passed back on invokes the function makes: the loop guard counts the chain through it
    [CHAIN_DEPTH_HEADER]: String(req.chainDepth ?? 0),
    // W3C traceparent/tracestate of the attempt's span (nothing when tracing is off)
    ...outgoingTraceHeaders(),
  };
  // a replayed attempt (docs/replay.md): the function can stub its own outbound calls
  if (req.replay) {
    headers['x-ledger-replay-id'] = req.replay.replayId;
    headers['x-ledger-replay-of'] = req.replay.originalInvocationId;
  }
  if (fn.secret !== null && fn.secret !== '') headers['x-ledger-signature'] = signBody(fn.secret, body);

  const timeout = AbortSignal.timeout(fn.timeoutMs + graceMs);
  const combined = signal === undefined ? timeout : AbortSignal.any([timeout, signal]);

  try {
    // Redirects are not followed: the signed body must only reach the configured endpoint.
    const res = await fetch(url, { method: 'POST', headers, body, signal: combined, redirect: 'manual' });
    const text = await readBody(res);
    log.append(formatLogLine('INFO', [`POST ${target} -> ${res.status} (${elapsed(startedAt)} ms)`]));
    if (text === null) {
      return fail(functionError(ErrorType.ResponseSizeTooLarge, `Response payload exceeded maximum allowed payload size (${MAX_RESULT_BYTES} bytes).`), res.status);
    }
    if (res.status < 200 || res.status > 299) {
      const excerpt = text.length > ERROR_BODY_CHARS ? `${text.slice(0, ERROR_BODY_CHARS)}…` : text;
      const message = `${target} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${excerpt ? `: ${excerpt}` : ''}`;
      return fail(functionError(`HTTP.Status${res.status}`, message), res.status);
    }
    if (text.trim() === '') return { ok: true, result: null, durationMs: elapsed(startedAt), log: log.toString() };
    try {
      return { ok: true, result: JSON.parse(text), durationMs: elapsed(startedAt), log: log.toString() };
    } catch {
      const excerpt = text.length > ERROR_BODY_CHARS ? `${text.slice(0, ERROR_BODY_CHARS)}…` : text;
      return fail(functionError(ErrorType.HttpInvalidResponse, `${target} answered ${res.status} with a body that is not JSON: ${excerpt}`), res.status);
    }
  } catch (err) {
    if (signal?.aborted) return fail(functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal.reason)}`));
    if (timeout.aborted) return fail(timeoutError(fn.timeoutMs));
    return fail(functionError(ErrorType.HttpConnectionError, `POST ${target} failed: ${connectionCause(err)}`));
  }
}

/** The body as text, or null when it exceeds the result limit (read no further than that). */
async function readBody(res: Response): Promise<string | null> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_RESULT_BYTES) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

function connectionCause(err: unknown): string {
  // undici reports "fetch failed" and puts the useful part (ECONNREFUSED, ENOTFOUND) in cause.
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause !== undefined && typeof cause.code === 'string') return cause.code;
  if (cause !== undefined && typeof cause.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** Values in a function URL that may be secrets: credentials and query values (6+ characters). */
export function secretsOfUrl(url: string | null | undefined): string[] {
  let u: URL;
  try {
    u = new URL(url ?? '');
  } catch {
    return [];
  }
  const raw = [u.username, u.password, ...u.search.slice(1).split('&').map((p) => p.slice(p.indexOf('=') + 1))];
  const values = raw.flatMap((v) => {
    try {
      return [v, decodeURIComponent(v.replace(/\+/g, ' '))];
    } catch {
      return [v];
    }
  });
  return [...new Set(values.filter((v) => v.length >= 6))].sort((a, b) => b.length - a.length);
}

/** An endpoint may echo its request line (query included) into its error page: those values go. */
function withoutSecrets(error: FunctionError, secrets: readonly string[]): FunctionError {
  if (secrets.length === 0) return error;
  const clean = (text: string) => secrets.reduce((t, s) => t.split(s).join(REDACTED), text);
  return { ...error, errorMessage: clean(error.errorMessage), trace: error.trace.map(clean) };
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}
