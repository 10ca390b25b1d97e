// How a caller names a function: bare name, `name:qualifier`, a full or partial ARN, plus
// an optional separate qualifier (Lambda's `?Qualifier=`). Pure parsing; the lookup is
// InvokeService.resolveFunction.
import { LedgerError } from '../../db/errors.ts';
import { FUNCTION_NAME } from '../../db/functions.ts';
import { CHAIN_DEPTH_HEADER } from '../runtimes/index.ts';

export interface FunctionRef {
  name: string;
  /** a version number; undefined = latest (`$LATEST` or no qualifier) */
  version: number | undefined;
  /** the qualifier as written, for messages */
  qualifier: string | null;
  /** an alias qualifier (`name:live`): the version is picked by the alias's weights */
  alias?: string;
}

const FULL_ARN = /^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:([^:]+)(?::([^:]*))?$/;
const PARTIAL_ARN = /^\d{12}:function:([^:]+)(?::([^:]*))?$/;
const PLAIN = /^([^:]+)(?::([^:]*))?$/;
const QUALIFIER = /^(\$LATEST|[A-Za-z0-9_-]{1,128})$/;
/** versions are positive int4 in the database */
const VERSION = /^[1-9]\d{0,8}$/;

const invalid = (message: string) => new LedgerError('InvalidParameter', message);

export function parseFunctionRef(raw: string, separateQualifier?: string | null): FunctionRef {
  const m = FULL_ARN.exec(raw) ?? PARTIAL_ARN.exec(raw) ?? PLAIN.exec(raw);
  if (!m) throw invalid(`1 validation error detected: Value '${raw}' at 'functionName' failed to satisfy constraint: Member must be a function name or ARN`);
  const name = m[1] as string;
  if (!FUNCTION_NAME.test(name)) {
    throw invalid(`1 validation error detected: Value '${name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: ${FUNCTION_NAME.source}`);
  }
  const inName = m[2];
  if (inName !== undefined && !QUALIFIER.test(inName)) throw invalid(`Invalid qualifier in the function name: '${inName}'`);
  const separate = separateQualifier || undefined; // an empty ?Qualifier= is no qualifier
  if (separate !== undefined && !QUALIFIER.test(separate)) throw invalid(`Invalid Qualifier: '${separate}'`);
  if (inName !== undefined && separate !== undefined && inName !== separate) {
    throw invalid(`The derived qualifier from the function name does not match the specified qualifier.`);
  }
  const qualifier = inName ?? separate ?? null;
  if (qualifier === null || qualifier === '$LATEST') return { name, version: undefined, qualifier };
  if (!VERSION.test(qualifier)) {
    // a version number never matches an alias name (aliases cannot be all digits)
    if (/^\d+$/.test(qualifier)) throw new LedgerError('FunctionNotFound', `Function not found: ${name}:${qualifier}`);
    return { name, version: undefined, qualifier, alias: qualifier };
  }
  return { name, version: Number(qualifier), qualifier };
}

/** `Idempotency-Key` or `X-Idempotency-Key`; null when absent. */
export function idempotencyKeyOf(headers: Headers): string | null {
  const key = headers.get('idempotency-key') ?? headers.get('x-idempotency-key');
  if (key === null) return null;
  if (key.length === 0 || key.length > 256) throw invalid('Idempotency-Key must be 1 to 256 characters');
  return key;
}

const DEPTH = /^\d{1,6}$/;

/**
 * The chain depth of an invocation this request makes: one more than the caller's, which
 * a handler sends as `X-Ledger-Chain-Depth` (its context.chainHeaders); 0 from outside.
 */
export function chainDepthOf(headers: Headers): number {
  const caller = headers.get(CHAIN_DEPTH_HEADER);
  if (caller === null || caller === '') return 0;
  if (!DEPTH.test(caller.trim())) throw invalid(`${CHAIN_DEPTH_HEADER} must be a non-negative integer (the calling invocation's context.chainDepth)`);
  return Number(caller.trim()) + 1;
}
