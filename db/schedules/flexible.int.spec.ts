// The flexible offset is auditable: PostgreSQL recomputes exactly what the scheduler used,
// with the statement docs/schedules.md prints.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, inject, it } from 'vitest';
import { adminQuery } from '../../test/helpers/pg-admin.ts';
import { FLEXIBLE_OFFSET_SQL, flexibleOffsetMs } from './flexible.ts';

describe('the flexible offset in SQL', () => {
  it('is the statement docs/schedules.md shows', () => {
    const doc = readFileSync(new URL('../../docs/schedules.md', import.meta.url), 'utf8');
    expect(doc).toContain(FLEXIBLE_OFFSET_SQL);
  });

  it('gives the offset the scheduler computes, for any schedule id, tick and window', async () => {
    const samples = fc.sample(
      fc.tuple(fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\u0000'))), fc.integer({ min: 0, max: 7_000_000_000 }), fc.integer({ min: 1, max: 1440 })),
      { numRuns: 300, seed: 19 },
    );
    const ids = samples.map(([id]) => id);
    const times = samples.map(([, s]) => new Date(s * 1000).toISOString());
    const windows = samples.map(([, , w]) => w);
    // one round trip: the statement applied to every sample through unnest
    const sql = `select t.i, o.offset_ms from unnest($1::text[], $2::timestamptz[], $3::int[]) with ordinality as t(id, at, win, i),
                 lateral (${FLEXIBLE_OFFSET_SQL.replace('$1::text', 't.id').replace('$2::timestamptz', 't.at').replace('$3::int', 't.win')}) o order by t.i`;
    const { rows } = await adminQuery(inject('adminUrl'), sql, [ids, times, windows]);
    expect(rows).toHaveLength(samples.length);
    rows.forEach((row: { offset_ms: string }, i: number) => {
      const [id, s, w] = samples[i]!;
      expect(Number(row.offset_ms)).toBe(flexibleOffsetMs(id, new Date(s * 1000), { mode: 'FLEXIBLE', maximumWindowInMinutes: w }));
    });
  });

  it('runs as printed, with parameters', async () => {
    const { rows } = await adminQuery(inject('adminUrl'), FLEXIBLE_OFFSET_SQL, ['s-1', '2022-03-22T18:59:43Z', 15]);
    expect(Number(rows[0].offset_ms)).toBe(895_000);
  });
});
