// Typed errors of this part and the error values (FunctionError) attempts report.
import type { FunctionError } from './types.ts';

/** Error types reported in outcomes; names follow AWS Lambda where one exists. */
export const ErrorType = {
  Timedout: 'Sandbox.Timedout',
  ExitError: 'Runtime.ExitError',
  OutOfMemory: 'Runtime.OutOfMemory',
  HandlerNotFound: 'Runtime.HandlerNotFound',
  ImportModuleError: 'Runtime.ImportModuleError',
  /** The result could not be turned into JSON (BigInt, cycles, …). */
  InvalidResult: 'Runtime.InvalidResult',
  /** The caller's AbortSignal fired (e.g. shutdown); the attempt was abandoned. */
  Aborted: 'Runtime.Aborted',
  ResponseSizeTooLarge: 'Function.ResponseSizeTooLarge',
  HttpInvalidResponse: 'HTTP.InvalidResponse',
  HttpConnectionError: 'HTTP.ConnectionError',
  HttpInvalidUrl: 'HTTP.InvalidUrl',
} as const;

/** Lambda's synchronous response limit; results above it are refused. */
export const MAX_RESULT_BYTES = 6 * 1024 * 1024;

/** Thrown by resolveHandlerPath; `run` turns it into Runtime.HandlerNotFound. */
export class HandlerPathError extends Error {
  readonly code = 'InvalidHandlerPath' as const;
  constructor(
    message: string,
    readonly reason: 'outside' | 'missing' | 'invalid',
  ) {
    super(message);
    this.name = 'HandlerPathError';
  }
}

export function functionError(errorType: string, errorMessage: string, trace: string[] = []): FunctionError {
  return { errorType, errorMessage: redactUrlSecrets(errorMessage), trace: trace.map(redactUrlSecrets) };
}

export const REDACTED = '[redacted]';

// scheme://[userinfo@]host[/path][?query][#fragment], as it appears inside free text. The
// userinfo is greedy up to the authority's last `@`, as WHATWG URL parses it.
const URL_IN_TEXT = /\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s"'<>`]*/g;
const URL_PARTS = /^([^:]+:\/\/)([^/?#]*@)?([^?#]*)(\?[^#]*)?(#.*)?$/s;
/** Punctuation that ends a sentence or closes a bracket around a URL, not part of it. */
const TRAILING = /[).,;:!}]+$/;

const redactQuery = (query: string): string =>
  `?${query
    .slice(1)
    .split('&')
    .map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('='))}=${REDACTED}` : p === '' ? '' : REDACTED))
    .join('&')}`;

/**
 * Error texts end up in events, which are never deleted: every URL in them loses its
 * credentials, query values and fragment (they often carry tokens) before it is written.
 * Query names stay, so the text still says what was called.
 */
export function redactUrlSecrets(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_IN_TEXT, (match) => {
    const trailing = TRAILING.exec(match)?.[0] ?? '';
    const url = match.slice(0, match.length - trailing.length);
    const parts = URL_PARTS.exec(url);
    if (!parts) return match;
    const [, scheme, userinfo, rest, query, fragment] = parts as unknown as [string, string, string?, string?, string?, string?];
    return `${scheme}${userinfo ? `${REDACTED}@` : ''}${rest ?? ''}${query ? redactQuery(query) : ''}${fragment ? `#${REDACTED}` : ''}${trailing}`;
  });
}

/** Lambda's wording, which SDK users and dashboards match on. */
export function timeoutError(timeoutMs: number): FunctionError {
  return functionError(ErrorType.Timedout, `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`);
}

const MAX_TRACE_LINES = 50;

/** Turns whatever a handler threw into the {errorType, errorMessage, trace} shape. */
export function toFunctionError(thrown: unknown): FunctionError {
  if (thrown instanceof Error || looksLikeError(thrown)) {
    const err = thrown as Error;
    return functionError(redactUrlSecrets(errorTypeOf(err)), String(err.message ?? ''), stackLines(err.stack));
  }
  return functionError('Error', describeValue(thrown));
}

function errorTypeOf(err: Error): string {
  const name = typeof err.name === 'string' && err.name !== '' ? err.name : 'Error';
  // `class MyError extends Error {}` keeps name 'Error'; the class name says more.
  if (name === 'Error') {
    const ctorName = (err as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof ctorName === 'string' && ctorName !== '' && ctorName !== 'Object') return ctorName;
  }
  return name;
}

function looksLikeError(v: unknown): boolean {
  // Errors from another realm (vm contexts) fail instanceof but still have these.
  return typeof v === 'object' && v !== null && typeof (v as Error).message === 'string' && typeof (v as Error).stack === 'string';
}

function stackLines(stack: unknown): string[] {
  if (typeof stack !== 'string') return [];
  const lines = stack.split('\n').filter((l) => l.trim() !== '');
  return lines.length > MAX_TRACE_LINES ? lines.slice(0, MAX_TRACE_LINES) : lines;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return v;
  try {
    const json = JSON.stringify(v);
    if (json !== undefined) return json;
  } catch {
    // fall through: cycles, BigInt
  }
  return String(v);
}

/** Text for an AbortSignal's reason in "Attempt aborted: …" messages. */
export function describeReason(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (reason === undefined) return 'aborted';
  return String(reason);
}
