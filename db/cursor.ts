// One cursor format for every page the ledger hands out: the row's position in the
// page's order (its sort key values, as strings), as a JSON array in base64url. Opaque to
// clients; each page says which parts it expects, so a cursor from another page, or an
// older format, is refused with InvalidParameter rather than read as something else.
import { LedgerError } from './errors.ts';

/** The cursor of a row whose sort key is `parts` (strings, so no precision is lost). */
export function encodeCursor(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');
}

/**
 * The sort key a cursor holds, one part per pattern in `shape`; anything else (another
 * page's cursor, an older format, garbage) is an InvalidParameter naming `what`.
 */
export function decodeCursor(cursor: string, shape: readonly RegExp[], what = 'cursor'): string[] {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === shape.length && parsed.every((p, i) => typeof p === 'string' && (shape[i] as RegExp).test(p))) {
      return parsed as string[];
    }
  } catch {
    // fall through to the typed error
  }
  throw new LedgerError('InvalidParameter', `invalid ${what}: ${JSON.stringify(cursor.slice(0, 80))}`);
}
