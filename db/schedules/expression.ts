// Schedule expressions in the syntax of Amazon EventBridge Scheduler: at(), rate() and
// cron(). Pure: turns the text into a value the tick computation reads, and refuses what
// AWS refuses with an error that names the parameter, the part and the reason
// (docs/schedules.md, "Expressions").

import { LedgerError } from '../errors.ts';

/**
 * A parameter of a schedule that is not acceptable. The code is the project's
 * `InvalidParameter`; the EventBridge Scheduler API answers it as `ValidationException`.
 */
export class ScheduleValidationError extends LedgerError {
  readonly awsErrorType = 'ValidationException';
  constructor(
    /** the parameter, as the EventBridge Scheduler API names it (`ScheduleExpression`, `FlexibleTimeWindow.MaximumWindowInMinutes`, …) */
    readonly field: string,
    /** what is wrong, for a person */
    readonly reason: string,
    readonly value: unknown,
  ) {
    super('InvalidParameter', `Invalid ${field} ${describe(value)}: ${reason}`, { field, reason, value });
  }
}

function describe(value: unknown): string {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (typeof value === 'string') return value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(value) ?? String(value);
}

/** A wall-clock date and time without a zone (what `at()` names; read in the schedule's zone). */
export interface LocalDateTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

export interface AtExpression {
  kind: 'at';
  text: string;
  /** the local date and time, read in ScheduleExpressionTimezone */
  at: LocalDateTime;
}

export const RATE_UNITS = ['minute', 'minutes', 'hour', 'hours', 'day', 'days'] as const;
export type RateUnit = (typeof RATE_UNITS)[number];

export interface RateExpression {
  kind: 'rate';
  text: string;
  value: number;
  unit: RateUnit;
  /** value × unit: a fixed duration (a day is 24 hours, whatever the clocks do) */
  periodMs: number;
}

/** One element of a cron field list: `5`, `1-5`, `*`, `*\/15`, `0/15`, `10-40/5`. */
export type CronItem =
  | { kind: 'value'; value: number }
  | { kind: 'range'; from: number; to: number }
  | { kind: 'step'; from: number; to: number; step: number };

export type DayOfMonthField =
  | { kind: 'any' } // ?
  | { kind: 'items'; items: CronItem[] }
  | { kind: 'last' } // L: the last day of the month
  | { kind: 'lastWeekday' } // LW: the last weekday (Mon–Fri) of the month
  | { kind: 'nearestWeekday'; day: number }; // 15W: the weekday nearest the 15th, within the month

export type DayOfWeekField =
  | { kind: 'any' } // ?
  | { kind: 'items'; items: CronItem[] }
  | { kind: 'last'; weekday: number } // 6L: the last Friday of the month (L alone is Saturday, parsed as items)
  | { kind: 'nth'; weekday: number; nth: number }; // 3#2: the second Tuesday of the month

/** A cron expression; days of the week are AWS's 1–7 with 1 = Sunday. */
export interface CronExpression {
  kind: 'cron';
  text: string;
  minutes: CronItem[];
  hours: CronItem[];
  dayOfMonth: DayOfMonthField;
  months: CronItem[];
  dayOfWeek: DayOfWeekField;
  years: CronItem[];
}

export type ScheduleExpression = AtExpression | RateExpression | CronExpression;

/** AWS's limit on ScheduleExpression. */
export const MAX_EXPRESSION_LENGTH = 256;
/** The years a cron or at expression may name (AWS: 1970–2199). */
export const MIN_YEAR = 1970;
export const MAX_YEAR = 2199;

const FIELD = 'ScheduleExpression';

/**
 * Parses `at(yyyy-mm-ddThh:mm:ss)`, `rate(value unit)` or
 * `cron(minutes hours day-of-month month day-of-week year)`; throws
 * ScheduleValidationError (field `ScheduleExpression`) naming what is wrong.
 */
export function parseScheduleExpression(text: unknown): ScheduleExpression {
  if (typeof text !== 'string') throw new ScheduleValidationError(FIELD, 'must be a string', text);
  if (text.length > MAX_EXPRESSION_LENGTH) {
    throw new ScheduleValidationError(FIELD, `must be at most ${MAX_EXPRESSION_LENGTH} characters`, text);
  }
  const trimmed = text.trim();
  const call = /^(at|rate|cron)\((.*)\)$/s.exec(trimmed);
  if (!call) {
    throw new ScheduleValidationError(FIELD, 'must be at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(minutes hours day-of-month month day-of-week year)', text);
  }
  const [, kind, body] = call as unknown as [string, 'at' | 'rate' | 'cron', string];
  const fail = (reason: string): never => {
    throw new ScheduleValidationError(FIELD, reason, text);
  };
  if (kind === 'at') return { kind, text: trimmed, at: parseAt(body, fail) };
  if (kind === 'rate') return { kind, text: trimmed, ...parseRate(body, fail) };
  return { kind, text: trimmed, ...parseCron(body, fail) };
}

type Fail = (reason: string) => never;

function parseAt(body: string, fail: Fail): LocalDateTime {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(body);
  if (!m) return fail('at() takes a local date and time as yyyy-mm-ddThh:mm:ss, without a zone or fraction (the zone is ScheduleExpressionTimezone)');
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (year < MIN_YEAR || year > MAX_YEAR) fail(`the year must be ${MIN_YEAR}–${MAX_YEAR}`);
  if (month < 1 || month > 12) fail(`there is no month ${month}`);
  if (day < 1 || day > daysInMonth(year, month)) fail(`${year}-${pad(month)} has no day ${day}`);
  if (hour > 23) fail('the hour must be 00–23');
  if (minute > 59) fail('the minute must be 00–59');
  if (second > 59) fail('the second must be 00–59');
  return { year, month, day, hour, minute, second };
}

const UNIT_MS: Record<RateUnit, number> = {
  minute: 60_000,
  minutes: 60_000,
  hour: 3_600_000,
  hours: 3_600_000,
  day: 86_400_000,
  days: 86_400_000,
};

function parseRate(body: string, fail: Fail): Omit<RateExpression, 'kind' | 'text'> {
  const parts = body.trim().split(/\s+/);
  if (parts.length !== 2) return fail('rate() takes a value and a unit, as in rate(5 minutes)');
  const [valueText, unitText] = parts as [string, string];
  if (!/^\d+$/.test(valueText)) fail(`the rate value must be a positive whole number, not ${valueText}`);
  const value = Number(valueText);
  if (value < 1) fail('the rate value must be at least 1');
  if (!(RATE_UNITS as readonly string[]).includes(unitText)) {
    fail(`the rate unit must be one of ${RATE_UNITS.join(', ')}, not ${unitText}`);
  }
  const unit = unitText as RateUnit;
  if (value !== 1 && !unit.endsWith('s')) fail(`a rate of ${value} takes the plural unit ${unit}s`);
  const periodMs = value * UNIT_MS[unit];
  if (!Number.isSafeInteger(periodMs)) fail('the rate is too long');
  return { value, unit, periodMs };
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
  steps: boolean;
}

const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] as const;
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] as const;

// The wildcards each field takes, as AWS's table lists them: `/` everywhere but day-of-week.
const MINUTES: FieldSpec = { name: 'minutes', min: 0, max: 59, steps: true };
const HOURS: FieldSpec = { name: 'hours', min: 0, max: 23, steps: true };
const DAY_OF_MONTH: FieldSpec = { name: 'day-of-month', min: 1, max: 31, steps: true };
const MONTH: FieldSpec = { name: 'month', min: 1, max: 12, names: MONTH_NAMES, steps: true };
const DAY_OF_WEEK: FieldSpec = { name: 'day-of-week', min: 1, max: 7, names: DAY_NAMES, steps: false };
const YEAR: FieldSpec = { name: 'year', min: MIN_YEAR, max: MAX_YEAR, steps: true };

function parseCron(body: string, fail: Fail): Omit<CronExpression, 'kind' | 'text'> {
  const fields = body.trim().split(/\s+/).filter((f) => f !== '');
  if (fields.length !== 6) {
    fail(`cron() takes six fields (minutes hours day-of-month month day-of-week year), not ${fields.length}`);
  }
  const [min, hour, dom, month, dow, year] = fields.map((f) => f.toUpperCase()) as [string, string, string, string, string, string];
  const minutes = parseItems(MINUTES, min, fail);
  const hours = parseItems(HOURS, hour, fail);
  const months = parseItems(MONTH, month, fail);
  const years = parseItems(YEAR, year, fail);
  const dayOfMonth = parseDayOfMonth(dom, fail);
  const dayOfWeek = parseDayOfWeek(dow, fail);
  const domAny = dayOfMonth.kind === 'any';
  const dowAny = dayOfWeek.kind === 'any';
  if (domAny && dowAny) fail('day-of-month and day-of-week cannot both be ?; give one of them');
  if (!domAny && !dowAny) {
    fail('day-of-month and day-of-week cannot both be given; put ? in one of them (as in cron(0 10 * * ? *))');
  }
  return { minutes, hours, dayOfMonth, months, dayOfWeek, years };
}

function parseDayOfMonth(text: string, fail: Fail): DayOfMonthField {
  if (text === '?') return { kind: 'any' };
  if (text === 'L') return { kind: 'last' };
  if (text === 'LW') return { kind: 'lastWeekday' };
  const w = /^(\d+)W$/.exec(text);
  if (w) {
    const day = Number(w[1]);
    if (day < 1 || day > 31) fail(`day-of-month ${text}: W takes a day 1–31`);
    return { kind: 'nearestWeekday', day };
  }
  if (/^L-\d+$/.test(text)) fail(`day-of-month ${text}: offsets from the last day (L-n) are not supported; use L or LW`);
  if (text.includes('L')) fail(`day-of-month ${text}: L and LW stand alone in the field`);
  if (text.includes('W')) fail(`day-of-month ${text}: W takes one day and stands alone in the field, as in 15W`);
  if (text.includes('?')) fail(`day-of-month ${text}: ? stands alone in the field`);
  return { kind: 'items', items: parseItems(DAY_OF_MONTH, text, fail) };
}

function parseDayOfWeek(text: string, fail: Fail): DayOfWeekField {
  if (text === '?') return { kind: 'any' };
  // L alone is the last day of the week, Saturday (Quartz reads it as 7)
  if (text === 'L') return { kind: 'items', items: [{ kind: 'value', value: 7 }] };
  if (text.includes('#')) {
    if (text.includes(',')) fail(`day-of-week ${text}: with # the field holds one expression only (3#1,6#3 is two)`);
    const m = /^([A-Z]+|\d+)#(\d+)$/.exec(text);
    if (!m) fail(`day-of-week ${text}: # takes a weekday and an occurrence, as in 3#2 (the second Tuesday)`);
    const weekday = fieldNumber(DAY_OF_WEEK, m[1] as string, text, fail);
    const nth = Number(m[2]);
    if (nth < 1 || nth > 5) fail(`day-of-week ${text}: the occurrence after # must be 1–5`);
    return { kind: 'nth', weekday, nth };
  }
  const last = /^([A-Z]+|\d+)L$/.exec(text);
  if (last) return { kind: 'last', weekday: fieldNumber(DAY_OF_WEEK, last[1] as string, text, fail) };
  // no day name holds an L, so any L left is misplaced
  if (text.includes('L')) fail(`day-of-week ${text}: L stands alone, or after one weekday (6L: the last Friday of the month)`);
  if (text.includes('?')) fail(`day-of-week ${text}: ? stands alone in the field`);
  if (text.replace(/WED/g, '').includes('W')) fail(`day-of-week ${text}: W belongs in day-of-month`);
  return { kind: 'items', items: parseItems(DAY_OF_WEEK, text, fail) };
}

function parseItems(spec: FieldSpec, text: string, fail: Fail): CronItem[] {
  if (text === '*') return [{ kind: 'range', from: spec.min, to: spec.max }];
  if (text === '?') fail(`${spec.name} ${text}: ? is only for day-of-month or day-of-week`);
  const parts = text.split(',');
  return parts.map((part) => {
    if (part === '') fail(`${spec.name} ${text}: empty element in the list`);
    const slash = part.split('/');
    if (slash.length > 2) fail(`${spec.name} ${part}: one / per element`);
    if (slash.length === 2) {
      if (!spec.steps) fail(`${spec.name} ${part}: increments (/) are not allowed in ${spec.name}`);
      const [base, stepText] = slash as [string, string];
      if (!/^\d+$/.test(stepText)) fail(`${spec.name} ${part}: the increment after / must be a whole number`);
      const step = Number(stepText);
      const span = spec.max - spec.min + 1;
      if (step < 1 || step > span) fail(`${spec.name} ${part}: the increment must be 1–${span}`);
      if (base === '*') return { kind: 'step', from: spec.min, to: spec.max, step };
      const range = base.split('-');
      if (range.length === 2) {
        const [from, to] = bounds(spec, range as [string, string], part, fail);
        return { kind: 'step', from, to, step };
      }
      if (range.length > 2) fail(`${spec.name} ${part}: a range has one -`);
      return { kind: 'step', from: fieldNumber(spec, base, part, fail), to: spec.max, step };
    }
    if (part === '*') fail(`${spec.name} ${text}: * stands alone in the field`);
    const range = part.split('-');
    if (range.length === 2) {
      const [from, to] = bounds(spec, range as [string, string], part, fail);
      return { kind: 'range', from, to };
    }
    if (range.length > 2) fail(`${spec.name} ${part}: a range has one -`);
    return { kind: 'value', value: fieldNumber(spec, part, part, fail) };
  });
}

function bounds(spec: FieldSpec, [a, b]: [string, string], part: string, fail: Fail): [number, number] {
  const from = fieldNumber(spec, a, part, fail);
  const to = fieldNumber(spec, b, part, fail);
  if (from > to) fail(`${spec.name} ${part}: a range runs from low to high`);
  return [from, to];
}

function fieldNumber(spec: FieldSpec, text: string, part: string, fail: Fail): number {
  if (spec.names && /^[A-Z]+$/.test(text)) {
    const i = spec.names.indexOf(text);
    if (i < 0) fail(`${spec.name} ${part}: ${text} is not a name; use ${spec.names[0]}–${spec.names[spec.names.length - 1]}`);
    return i + 1;
  }
  if (!/^\d+$/.test(text)) {
    const extra = spec.names ? ` or ${spec.names[0]}–${spec.names[spec.names.length - 1]}` : '';
    return fail(`${spec.name} ${part}: ${text === '' ? 'a number is missing' : `${text} is not a number`} (${spec.min}–${spec.max}${extra})`);
  }
  const n = Number(text);
  if (n < spec.min || n > spec.max) {
    const extra = spec.names ? ` or ${spec.names[0]}–${spec.names[spec.names.length - 1]}` : '';
    fail(`${spec.name} ${part}: ${n} is out of range (${spec.min}–${spec.max}${extra})`);
  }
  return n;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

const pad = (n: number) => String(n).padStart(2, '0');
