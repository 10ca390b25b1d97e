// AWS cron dialect → croner. croner (npm `croner`) knows the calendar rules AWS uses (L, W,
// #, a year field, Quartz's 1–7 weekdays with Sunday = 1); this module renders a parsed AWS
// expression into croner's pattern and asks croner for the next matching wall time.
//
// croner runs here with a UTC offset of 0 on wall times, never in the schedule's zone: its
// own daylight-saving rules differ from EventBridge Scheduler's (it moves a fixed time that
// falls in a spring-forward gap to the end of the gap, and runs interval patterns on both
// passes of a repeated hour). What a wall time means in the zone is decided in ticks.ts.

import { Cron } from 'croner';
import type { CronExpression, CronItem } from './expression.ts';

/** A field's list; the whole range of the field is written `*` (years keep AWS's 1970–2199, which croner would widen). */
function items(list: readonly CronItem[], min?: number, max?: number): string {
  const only = list[0];
  if (list.length === 1 && only?.kind === 'range' && only.from === min && only.to === max) return '*';
  return list
    .map((i) => {
      switch (i.kind) {
        case 'value':
          return String(i.value);
        case 'range':
          return `${i.from}-${i.to}`;
        case 'step':
          return `${i.from}-${i.to}/${i.step}`;
      }
    })
    .join(',');
}

/**
 * croner's seven-part pattern (second minute hour day-of-month month day-of-week year) for
 * an AWS expression, to be read with `alternativeWeekdays` (1 = Sunday) and AND-ed day
 * fields. `?` becomes `*`: AWS requires it in exactly one day field, so AND is what it means.
 */
export function toCronerPattern(cron: CronExpression): string {
  const dom = cron.dayOfMonth;
  const dow = cron.dayOfWeek;
  const dayOfMonth =
    dom.kind === 'any'
      ? '*'
      : dom.kind === 'last'
        ? 'L'
        : dom.kind === 'lastWeekday'
          ? 'LW'
          : dom.kind === 'nearestWeekday'
            ? `${dom.day}W`
            : items(dom.items, 1, 31);
  const dayOfWeek =
    dow.kind === 'any' ? '*' : dow.kind === 'last' ? `${dow.weekday}L` : dow.kind === 'nth' ? `${dow.weekday}#${dow.nth}` : items(dow.items, 1, 7);
  return ['0', items(cron.minutes, 0, 59), items(cron.hours, 0, 23), dayOfMonth, items(cron.months, 1, 12), dayOfWeek, items(cron.years)].join(' ');
}

const compiled = new WeakMap<CronExpression, Cron>();

function croner(cron: CronExpression): Cron {
  let c = compiled.get(cron);
  if (!c) {
    c = new Cron(toCronerPattern(cron), {
      utcOffset: 0,
      mode: '7-part',
      alternativeWeekdays: true,
      domAndDow: true,
      paused: true,
    });
    compiled.set(cron, c);
  }
  return c;
}

/** The first wall time after `wallMs` (exclusive) that the expression names, or null if none is left (the year field ends). */
export function nextCronWallTime(cron: CronExpression, wallMs: number): number | null {
  const next = croner(cron).nextRun(new Date(wallMs));
  return next ? next.getTime() : null;
}
