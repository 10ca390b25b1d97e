// Errors leave GraphQL with `extensions.code` = the LedgerError code (resolvers are
// wrapped so typed errors become GraphQL errors where they are thrown); anything
// unexpected is masked: logged here, "Unexpected error." for the client.
import type { Logger } from 'pino';
import { maskError as yogaMaskError } from 'graphql-yoga';
import { isDatabaseUnavailable, isLedgerError, isTransientConflict, LedgerError } from '../../../db/errors.ts';
import { whyNotStorableJson } from '../../../db/storable.ts';
import { GraphQLError } from './graphql-js.ts';

/** Only plain, JSON-safe details travel (never zod issues or anything with a secret). */
function publicDetails(code: string, details: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (code === 'TooManyRequests') {
    if (typeof details.reason === 'string') out.reason = details.reason;
    if (typeof details.retryAfterSeconds === 'number') out.retryAfterSeconds = details.retryAfterSeconds;
  }
  if (code === 'SubscriberTooSlow') out.resumeAfter = typeof details.resumeAfter === 'string' ? details.resumeAfter : null;
  return out;
}

/** The GraphQL form of a typed error, or null when the error is not one of ours. */
export function toGraphQLError(e: unknown): InstanceType<typeof GraphQLError> | null {
  if (isLedgerError(e)) {
    return new GraphQLError(e.message, { extensions: { code: e.code, ...publicDetails(e.code, e.details) } });
  }
  if (isDatabaseUnavailable(e)) {
    return new GraphQLError('the database is unavailable; try again', { extensions: { code: 'ServiceUnavailable' } });
  }
  if (isTransientConflict(e)) {
    return new GraphQLError('the operation conflicted with a concurrent one and was rolled back; try again', { extensions: { code: 'ServiceUnavailable' } });
  }
  return null;
}

type AnyFn = (...args: unknown[]) => unknown;

/**
 * Arguments that the ledger would store (idempotency keys, function settings) and that
 * PostgreSQL cannot hold are refused before the resolver runs. JSON arguments were
 * already checked by their scalar, with their own depth limit.
 */
function checkArguments(args: unknown): void {
  if (args === null || typeof args !== 'object') return;
  const why = whyNotStorableJson(args, Number.POSITIVE_INFINITY);
  if (why !== null) throw new LedgerError('InvalidParameter', `An argument cannot be stored: ${why}`);
}

function guard(fn: AnyFn): AnyFn {
  return async (...args: unknown[]) => {
    try {
      checkArguments(args[1]);
      return await fn(...args);
    } catch (e) {
      throw toGraphQLError(e) ?? e;
    }
  };
}

/** Wraps every field resolver and subscribe function (scalars and enums are left alone). */
export function guardResolvers<T extends Record<string, unknown>>(resolvers: T): T {
  const out: Record<string, unknown> = {};
  for (const [typeName, fields] of Object.entries(resolvers)) {
    if (typeof fields !== 'object' || fields === null || fields.constructor !== Object) {
      out[typeName] = fields;
      continue;
    }
    const wrapped: Record<string, unknown> = {};
    for (const [name, r] of Object.entries(fields as Record<string, unknown>)) {
      if (typeof r === 'function') wrapped[name] = guard(r as AnyFn);
      else if (r && typeof r === 'object' && 'subscribe' in r) {
        const s = r as { subscribe: AnyFn; resolve?: AnyFn };
        wrapped[name] = { ...s, subscribe: guard(s.subscribe) };
      } else wrapped[name] = r;
    }
    out[typeName] = wrapped;
  }
  return out as T;
}

export function createMaskError(logger: Logger) {
  return (error: unknown, message: string, isDev?: boolean): Error => {
    let original: unknown = error;
    while (original && typeof original === 'object' && (original as { originalError?: unknown }).originalError) {
      original = (original as { originalError: unknown }).originalError;
    }
    if (original === error || original instanceof GraphQLError) return yogaMaskError(error, message, isDev);
    logger.error({ err: original }, 'GraphQL resolver failed');
    return yogaMaskError(error, message, isDev);
  };
}
