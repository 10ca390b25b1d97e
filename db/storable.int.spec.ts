// The storable check against the real thing: for any JSON value and any string, it says
// "cannot be stored" exactly when PostgreSQL refuses it (jsonb) or would change it (text).
import fc from 'fast-check';
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { MAX_JSON_DEPTH, storableText, whyNotStorableJson, whyNotStorableText } from './storable.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase({ verify: false });
});

/** strings of any UTF-16 code units, NUL, lone surrogates and pairs made likely */
const codeUnit = fc.oneof(
  fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff', '\ud83d\ude00', 'a', '"', '\\'),
  fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)),
);
const anyString = fc.string({ unit: codeUnit, maxLength: 8 });
const anyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    anyString,
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(anyString, tie('value'), { maxKeys: 4 }),
  ),
})).value;

async function jsonbAccepts(json: string): Promise<boolean> {
  try {
    await sql`select ${json}::jsonb`.execute(t.db);
    return true;
  } catch {
    return false;
  }
}

describe('whyNotStorableJson', () => {
  it('property: null exactly when PostgreSQL accepts JSON.stringify(value) as jsonb', async () => {
    await fc.assert(
      fc.asyncProperty(anyJson, async (v) => {
        expect(whyNotStorableJson(v) === null).toBe(await jsonbAccepts(JSON.stringify(v)));
      }),
      { numRuns: 300 },
    );
  });

  it(`refuses nesting past ${MAX_JSON_DEPTH} levels, however deep, without a stack overflow`, () => {
    const nested = (n: number) => JSON.parse(`${'['.repeat(n)}${']'.repeat(n)}`) as unknown;
    expect(whyNotStorableJson(nested(MAX_JSON_DEPTH))).toBeNull();
    expect(whyNotStorableJson({ a: nested(MAX_JSON_DEPTH - 1) })).toBeNull();
    expect(whyNotStorableJson(nested(MAX_JSON_DEPTH + 1))).toMatch(/nested more than/);
    expect(whyNotStorableJson(nested(200_000))).toMatch(/nested more than/);
  });

  it('names where the problem is, and follows JSON.stringify (toJSON, dropped keys)', () => {
    expect(whyNotStorableJson({ a: [1, { 'b c': 'x\u0000' }] })).toBe('a string holds U+0000 (NUL) at $.a[1]["b c"]');
    expect(whyNotStorableJson({ ok: { '\ud800': 1 } })).toBe('a key holds a lone surrogate (U+D800) at $.ok');
    expect(whyNotStorableJson('\udc00')).toBe('a string holds a lone surrogate (U+DC00) at $');
    expect(whyNotStorableJson({ when: new Date(0), emoji: '😀', gone: undefined, '\u0000': undefined })).toBeNull();
    expect(whyNotStorableJson({ custom: { toJSON: () => 'x\u0000' } })).toMatch(/U\+0000 \(NUL\) at \$.custom/);
  });
});

describe('text', () => {
  it('property: whyNotStorableText is null exactly when PostgreSQL stores the text unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(anyString, async (s) => {
        let unchanged: boolean;
        try {
          const { rows } = await sql<{ t: string }>`select ${s}::text as t`.execute(t.db);
          unchanged = rows[0]?.t === s;
        } catch {
          unchanged = false;
        }
        expect(whyNotStorableText(s) === null).toBe(unchanged);
      }),
      { numRuns: 300 },
    );
  });

  it('property: storableText is always storable, and the identity on what already is', () => {
    fc.assert(
      fc.property(anyString, (s) => {
        const kept = storableText(s);
        expect(whyNotStorableText(kept)).toBeNull();
        expect(kept.length).toBe(s.length);
        if (whyNotStorableText(s) === null) expect(kept).toBe(s);
      }),
    );
  });
});
