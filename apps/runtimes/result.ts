// Results leave the runtime as JSON, so check here that they are JSON and fit the limit.
import { ErrorType, MAX_RESULT_BYTES, functionError } from './errors.ts';
import type { FunctionError } from './types.ts';

export type EncodedResult = { ok: true; json: string } | { ok: false; error: FunctionError };

/** `undefined` (and anything JSON drops, like functions) becomes null, as in Lambda. */
export function encodeResult(value: unknown): EncodedResult {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    return { ok: false, error: functionError(ErrorType.InvalidResult, `Result is not JSON-serialisable: ${(err as Error).message}`) };
  }
  if (json === undefined) return { ok: true, json: 'null' };
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the byte count.
  if (json.length * 3 > MAX_RESULT_BYTES) {
    const bytes = Buffer.byteLength(json);
    if (bytes > MAX_RESULT_BYTES) {
      return {
        ok: false,
        error: functionError(
          ErrorType.ResponseSizeTooLarge,
          `Response payload size (${bytes} bytes) exceeded maximum allowed payload size (${MAX_RESULT_BYTES} bytes).`,
        ),
      };
    }
  }
  return { ok: true, json };
}
