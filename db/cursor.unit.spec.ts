import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { isLedgerError } from './errors.ts';

const DIGITS = /^\d{1,20}$/;

describe('db/cursor.ts: the one cursor format', () => {
  it('decodes what it encoded, whatever the strings', () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 4 }), (parts) => {
        expect(decodeCursor(encodeCursor(parts), parts.map(() => /^[\s\S]*$/))).toEqual(parts);
      }),
    );
  });

  it('is URL-safe: no padding, no + or /', () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { maxLength: 4 }), (parts) => {
        expect(encodeCursor(parts)).toMatch(/^[A-Za-z0-9_-]*$/);
      }),
    );
  });

  const refused = (cursor: string, shape: RegExp[], what?: string) => {
    try {
      decodeCursor(cursor, shape, what);
    } catch (err) {
      expect(isLedgerError(err) && err.code).toBe('InvalidParameter');
      return (err as Error).message;
    }
    throw new Error(`accepted ${cursor}`);
  };

  it('refuses another shape, an older format and garbage with InvalidParameter', () => {
    expect(refused(encodeCursor(['1', '2', '3']), [DIGITS, DIGITS])).toMatch(/^invalid cursor/);
    expect(refused(encodeCursor(['1', 'x']), [DIGITS, DIGITS], 'feed cursor')).toMatch(/^invalid feed cursor/);
    // the dead-letter pages' former `micros|id` and the feed's former `tx:position`
    expect(refused(Buffer.from('1700000000000000|0b0e7a8c-9d8e-4f1a-8b2c-3d4e5f6a7b8c').toString('base64url'), [DIGITS, /^[0-9a-f-]{36}$/])).toMatch(/invalid/);
    expect(refused('12:34', [DIGITS, DIGITS])).toMatch(/invalid/);
    expect(refused('!!!', [DIGITS])).toMatch(/invalid/);
    expect(refused(encodeCursor([]), [DIGITS])).toMatch(/invalid/);
    expect(refused(Buffer.from(JSON.stringify([1, 2])).toString('base64url'), [DIGITS, DIGITS])).toMatch(/invalid/);
  });
});
