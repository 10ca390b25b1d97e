// An independent statement of AWS cron semantics for the schedule tests: fast-check
// arbitraries that produce an expression's text together with its meaning (the sets and
// day rules it stands for), a matcher over wall times, and a brute-force wall clock. None
// of it uses the parser, croner or db/schedules/zone.ts, so the properties compare two
// separate readings of the AWS documentation.
import fc from 'fast-check';

export type DayRule =
  | { kind: 'domSet'; days: Set<number> }
  | { kind: 'dowSet'; weekdays: Set<number> } // 1 = Sunday
  | { kind: 'lastDay' }
  | { kind: 'lastWeekday' }
  | { kind: 'nearestWeekday'; day: number }
  | { kind: 'lastOfWeekday'; weekday: number }
  | { kind: 'nthWeekday'; weekday: number; nth: number };

export interface CronMeaning {
  minutes: Set<number>;
  hours: Set<number>;
  months: Set<number>;
  years: Set<number>;
  day: DayRule;
}

export interface CronCase {
  text: string;
  meaning: CronMeaning;
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

interface Part {
  text: string;
  values: number[];
}

/**
 * One list element of a field: a value, a range or an increment, with numbers drawn from
 * min..max; `*` and `a/step` reach to the field's own bounds (`top`: 2199 for years).
 */
function element(min: number, max: number, names: string[] | null, steps: boolean, bottom = min, top = max): fc.Arbitrary<Part> {
  const num = (n: number, useName: boolean) => (names && useName ? names[n - min] as string : String(n));
  const value = fc.tuple(fc.integer({ min, max }), fc.boolean()).map(([n, nm]) => ({ text: num(n, nm), values: [n] }));
  const range = fc
    .tuple(fc.integer({ min, max }), fc.integer({ min, max }), fc.boolean())
    .map(([a, b, nm]) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      return { text: `${num(lo, nm)}-${num(hi, nm)}`, values: Array.from({ length: hi - lo + 1 }, (_, i) => lo + i) };
    });
  const arbs: fc.Arbitrary<Part>[] = [value, range];
  if (steps) {
    const span = top - bottom + 1;
    arbs.push(
      fc.tuple(fc.constantFrom('*', 'start', 'range'), fc.integer({ min, max }), fc.integer({ min, max }), fc.integer({ min: 1, max: span })).map(([form, a, b, step]) => {
        const [lo, hi] = form === '*' ? [bottom, top] : form === 'start' ? [a, top] : a <= b ? [a, b] : [b, a];
        const values: number[] = [];
        for (let v = lo; v <= hi; v += step) values.push(v);
        const base = form === '*' ? '*' : form === 'start' ? String(lo) : `${lo}-${hi}`;
        return { text: `${base}/${step}`, values };
      }),
    );
  }
  return fc.oneof(...arbs);
}

function field(min: number, max: number, names: string[] | null, steps: boolean, maxItems = 3, bottom = min, top = max): fc.Arbitrary<Part> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant({ text: '*', values: Array.from({ length: top - bottom + 1 }, (_, i) => bottom + i) }) },
    {
      weight: 4,
      arbitrary: fc.array(element(min, max, names, steps, bottom, top), { minLength: 1, maxLength: maxItems }).map((parts) => ({
        text: parts.map((p) => p.text).join(','),
        values: [...new Set(parts.flatMap((p) => p.values))],
      })),
    },
  );
}

const dayRules: fc.Arbitrary<{ dom: string; dow: string; day: DayRule }> = fc.oneof(
  field(1, 31, null, true).map((p) => ({ dom: p.text, dow: '?', day: { kind: 'domSet', days: new Set(p.values) } as DayRule })),
  field(1, 7, DAYS, false).map((p) => ({ dom: '?', dow: p.text, day: { kind: 'dowSet', weekdays: new Set(p.values) } as DayRule })),
  fc.constant({ dom: 'L', dow: '?', day: { kind: 'lastDay' } as DayRule }),
  fc.constant({ dom: 'LW', dow: '?', day: { kind: 'lastWeekday' } as DayRule }),
  fc.integer({ min: 1, max: 31 }).map((d) => ({ dom: `${d}W`, dow: '?', day: { kind: 'nearestWeekday', day: d } as DayRule })),
  fc.constant({ dom: '?', dow: 'L', day: { kind: 'dowSet', weekdays: new Set([7]) } as DayRule }),
  fc
    .tuple(fc.integer({ min: 1, max: 7 }), fc.boolean())
    .map(([w, nm]) => ({ dom: '?', dow: `${nm ? DAYS[w - 1] : w}L`, day: { kind: 'lastOfWeekday', weekday: w } as DayRule })),
  fc
    .tuple(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 5 }), fc.boolean())
    .map(([w, n, nm]) => ({ dom: '?', dow: `${nm ? DAYS[w - 1] : w}#${n}`, day: { kind: 'nthWeekday', weekday: w, nth: n } as DayRule })),
);

/**
 * A valid AWS cron expression and its meaning. `years` is the range the year field is
 * drawn from (a narrow one keeps brute force short); `dense` favours busy minute and hour
 * fields, so that short windows around a daylight-saving change hold many ticks.
 */
export function cronCase(opts: { years: [number, number]; dense?: boolean }): fc.Arbitrary<CronCase> {
  const [y0, y1] = opts.years;
  const minutes = opts.dense
    ? fc.oneof(fc.constant({ text: '*', values: Array.from({ length: 60 }, (_, i) => i) }), fc.integer({ min: 1, max: 20 }).map((s) => stepPart(0, 59, s)), field(0, 59, null, true, 4))
    : field(0, 59, null, true, 2);
  const hours = opts.dense
    ? fc.oneof(fc.constant({ text: '*', values: Array.from({ length: 24 }, (_, i) => i) }), field(0, 23, null, true, 4))
    : field(0, 23, null, true, 2);
  const years = fc.oneof(
    { weight: 3, arbitrary: fc.constant({ text: '*', values: Array.from({ length: 2199 - 1970 + 1 }, (_, i) => 1970 + i) }) },
    { weight: 1, arbitrary: field(y0, y1, null, true, 2, 1970, 2199) },
  );
  const everyDay = fc.constant({ dom: '*', dow: '?', day: { kind: 'domSet', days: new Set(Array.from({ length: 31 }, (_, i) => i + 1)) } as DayRule });
  const days = opts.dense ? fc.oneof({ weight: 3, arbitrary: everyDay }, { weight: 1, arbitrary: dayRules }) : dayRules;
  const allMonths = fc.constant({ text: '*', values: Array.from({ length: 12 }, (_, i) => i + 1) });
  const months = opts.dense ? fc.oneof({ weight: 3, arbitrary: allMonths }, { weight: 1, arbitrary: field(1, 12, MONTHS, true) }) : field(1, 12, MONTHS, true);
  return fc.record({ minutes, hours, days, months, years }).map(({ minutes, hours, days, months, years }) => ({
    text: `cron(${minutes.text} ${hours.text} ${days.dom} ${months.text} ${days.dow} ${years.text})`,
    meaning: {
      minutes: new Set(minutes.values),
      hours: new Set(hours.values),
      months: new Set(months.values),
      years: new Set(years.values),
      day: days.day,
    },
  }));
}

function stepPart(min: number, max: number, step: number): Part {
  const values: number[] = [];
  for (let v = min; v <= max; v += step) values.push(v);
  return { text: `${min}/${step}`, values };
}

const daysIn = (y: number, m: number) => new Date(Date.UTC(y, m, 0)).getUTCDate();
const weekday = (y: number, m: number, d: number) => new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 1; // 1 = Sunday

function dayMatches(rule: DayRule, y: number, m: number, d: number): boolean {
  const last = daysIn(y, m);
  switch (rule.kind) {
    case 'domSet':
      return rule.days.has(d);
    case 'dowSet':
      return rule.weekdays.has(weekday(y, m, d));
    case 'lastDay':
      return d === last;
    case 'lastWeekday': {
      const wd = weekday(y, m, last);
      return d === (wd === 7 ? last - 1 : wd === 1 ? last - 2 : last);
    }
    case 'nearestWeekday': {
      const n = rule.day;
      if (n > last) return false;
      const wd = weekday(y, m, n);
      // Saturday: the Friday before, unless that leaves the month (the 1st: Monday the 3rd)
      if (wd === 7) return d === (n === 1 ? 3 : n - 1);
      // Sunday: the Monday after, unless that leaves the month (the last day: Friday)
      if (wd === 1) return d === (n === last ? n - 2 : n + 1);
      return d === n;
    }
    case 'lastOfWeekday':
      return weekday(y, m, d) === rule.weekday && d + 7 > last;
    case 'nthWeekday':
      return weekday(y, m, d) === rule.weekday && Math.ceil(d / 7) === rule.nth;
  }
}

/** Whether a wall time (as UTC ms) is one the expression names. */
export function matchesWall(meaning: CronMeaning, wallMs: number): boolean {
  const t = new Date(wallMs);
  if (t.getUTCSeconds() !== 0 || t.getUTCMilliseconds() !== 0) return false;
  const y = t.getUTCFullYear();
  const m = t.getUTCMonth() + 1;
  const d = t.getUTCDate();
  return (
    meaning.years.has(y) &&
    meaning.months.has(m) &&
    meaning.hours.has(t.getUTCHours()) &&
    meaning.minutes.has(t.getUTCMinutes()) &&
    dayMatches(meaning.day, y, m, d)
  );
}

/** The wall times of one local day the expression names, in order (UTC ms). */
export function wallTimesOfDay(meaning: CronMeaning, y: number, m: number, d: number): number[] {
  if (!meaning.years.has(y) || !meaning.months.has(m) || !dayMatches(meaning.day, y, m, d)) return [];
  const out: number[] = [];
  for (const h of [...meaning.hours].sort((a, b) => a - b)) {
    for (const mi of [...meaning.minutes].sort((a, b) => a - b)) out.push(Date.UTC(y, m - 1, d, h, mi));
  }
  return out;
}

const brute = new Map<string, Intl.DateTimeFormat>();
/** The wall reading of an instant, through a formatter of its own (sv-SE prints ISO-like text). */
export function bruteWall(instantMs: number, zone: string): number {
  let f = brute.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('sv-SE', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
    brute.set(zone, f);
  }
  const s = f.format(new Date(instantMs)); // "2026-03-08 01:59:00"
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(s);
  if (!m) throw new Error(`unexpected wall text ${s}`);
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as number[];
  return Date.UTC(y as number, (mo as number) - 1, d, h, mi, se);
}

/**
 * The instants in (after, until] at which a schedule with this meaning fires in `zone`, by
 * brute force: every UTC minute is read on the zone's clock, and a wall time counts the first
 * time the clock shows it (scanning from 3 hours before `after`, more than any zone ever
 * turned its clocks back, so a wall time first shown before `after` does not count when it
 * is shown again after it).
 */
export function bruteForceTicks(meaning: CronMeaning, zone: string, after: number, until: number): number[] {
  const seen = new Set<number>();
  const out: number[] = [];
  const from = Math.floor((after - 3 * 3_600_000) / 60_000) * 60_000;
  for (let u = from; u <= until; u += 60_000) {
    const wall = bruteWall(u, zone);
    if (seen.has(wall)) continue;
    seen.add(wall);
    if (u > after && matchesWall(meaning, wall)) out.push(u);
  }
  return out;
}

/** Offset changes of `zone` between two instants, found by hourly sampling then minute refinement. */
export function transitions(zone: string, fromMs: number, toMs: number): number[] {
  const offset = (u: number) => bruteWall(u, zone) - Math.floor(u / 1000) * 1000;
  const out: number[] = [];
  let prev = offset(fromMs);
  for (let u = fromMs + 3_600_000; u <= toMs; u += 3_600_000) {
    const o = offset(u);
    if (o !== prev) {
      let lo = u - 3_600_000;
      let hi = u;
      while (hi - lo > 60_000) {
        const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
        if (offset(mid) === prev) lo = mid;
        else hi = mid;
      }
      out.push(hi);
      prev = o;
    }
  }
  return out;
}
