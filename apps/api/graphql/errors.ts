// Errors leave GraphQL with `extensions.code` = the LedgerError code; anything unexpected
// is masked (logged here, "Unexpected error." for the client).
import { GraphQLError } from 'graphql';
import { maskError as yogaMaskError } from 'graphql-yoga';
import type { Logger } from 'pino';
import { isDatabaseUnavailable, isLedgerError } from '../../../db/errors.ts';
import { LifecycleViolation } from '../../../db/lifecycle.ts';

/** The typed error behind a resolver error, with the code it travels under. */
function codeOf(e: unknown): { code: string; message: string; details?: Record<string, unknown> } | null {
  if (isLedgerError(e)) return { code: e.code, message: e.message, details: e.details };
  if (e instanceof LifecycleViolation) return { code: 'LifecycleViolation', message: e.message };
  if (isDatabaseUnavailable(e)) return { code: 'ServiceUnavailable', message: 'the database is unavailable; try again' };
  return null;
}

/** Only plain, JSON-safe details travel (never issues objects with functions or secrets). */
function publicDetails(code: string, details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details) return {};
  const out: Record<string, unknown> = {};
  if (code === 'TooManyRequests') {
    if (typeof details.reason === 'string') out.reason = details.reason;
    if (typeof details.retryAfterSeconds === 'number') out.retryAfterSeconds = details.retryAfterSeconds;
  }
  return out;
}

export function createMaskError(logger: Logger) {
  return (error: unknown, message: string, isDev?: boolean): Error => {
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    const typed = codeOf(original);
    if (typed) {
      return new GraphQLError(typed.message, {
        ...(error instanceof GraphQLError ? { nodes: error.nodes, path: error.path, source: error.source, positions: error.positions } : {}),
        extensions: { code: typed.code, ...publicDetails(typed.code, typed.details) },
      });
    }
    // GraphQLErrors we raised on purpose (bad input to a scalar, limits) pass unchanged
    if (error instanceof GraphQLError && (!error.originalError || error.originalError instanceof GraphQLError)) {
      return yogaMaskError(error, message, isDev);
    }
    logger.error({ err: original }, 'GraphQL resolver failed');
    return yogaMaskError(error, message, isDev);
  };
}
