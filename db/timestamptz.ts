// timestamptz columns as pg returns them in text, parsed without regexes. pg's default
// parser (postgres-date) runs three regexes per value: in a full-scale drain's worker
// profile it was 1.7 % of all samples (about 3 % of the busy ones), some ten timestamps
// per job from the claim and the completion's state reads (docs/benchmarks.md).
// The fast path takes only the shape a UTC session prints, `YYYY-MM-DD HH:MM:SS[.f…]+00`
// with a four-digit year; anything else (other offsets, BC, infinity, wider years) goes to
// postgres-date, so the result is always the one pg would have given.
import pg from 'pg';

const pgParse = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text') as (s: string) => Date | number | null;

const ZERO = 48;

function digits(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

export function parseTimestamptz(s: string): Date | number | null {
  const n = s.length;
  // 2026-11-30 23:35:48+00 is 22 characters; a fraction adds 2 to 7
  if (n >= 22 && n <= 29 && s.charCodeAt(n - 3) === 43 /* + */ && s.charCodeAt(n - 2) === ZERO && s.charCodeAt(n - 1) === ZERO &&
      s.charCodeAt(4) === 45 && s.charCodeAt(7) === 45 && s.charCodeAt(10) === 32 && s.charCodeAt(13) === 58 && s.charCodeAt(16) === 58) {
    const year = digits(s, 0, 4);
    const month = digits(s, 5, 7);
    const day = digits(s, 8, 10);
    const hour = digits(s, 11, 13);
    const minute = digits(s, 14, 16);
    const second = digits(s, 17, 19);
    let ms = 0;
    let ok = year >= 100 && month >= 0 && day >= 0 && hour >= 0 && minute >= 0 && second >= 0;
    if (ok && n > 22) {
      // ".f" to ".ffffff": milliseconds are the first three digits (Date keeps no more)
      const end = n - 3;
      ok = s.charCodeAt(19) === 46 /* . */ && end - 20 >= 1;
      const f = ok ? digits(s, 20, end) : -1;
      ok = ok && f >= 0;
      if (ok) {
        const len = end - 20;
        ms = len >= 3 ? digits(s, 20, 23) : len === 2 ? f * 10 : f * 100;
      }
    } else if (n !== 22) {
      ok = false;
    }
    if (ok) return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
  }
  return pgParse(s);
}

/** Every pg client of this process parses timestamptz with `parseTimestamptz` (db/connection.ts calls it). */
export function useFastTimestamptz(): void {
  pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text', parseTimestamptz);
}
