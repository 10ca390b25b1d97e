// `invoke-ledger schedules …`: the schedule commands, over db/schedule-store.ts. Changes are
// recorded in ledger.changes with the actor `cli:<os user>`.
import { userInfo } from 'node:os';
import { openDatabase } from '../../db/connection.ts';
import { isLedgerError } from '../../db/errors.ts';
import { createSchedule, deleteSchedule, listSchedules, listTicks, requireSchedule, upcomingTicks, updateSchedule, type ScheduleInput, type ScheduleView } from '../../db/schedule-store.ts';
import type { Db } from '../../db/schema.ts';
import { CliError, type Io } from './cli.ts';
import { databaseRole } from './config.ts';

const actor = () => ({ actor: `cli:${(() => { try { return userInfo().username; } catch { return 'unknown'; } })()}` });

async function withDb(url: string, fn: (db: Db) => Promise<number>): Promise<number> {
  const handle = openDatabase(url, { role: databaseRole(), max: 1, applicationName: 'invoke-ledger schedules' });
  try {
    return await fn(handle.db);
  } catch (e) {
    // a refused definition is the user's to fix: one line, exit 1
    if (isLedgerError(e)) throw new CliError(e.message);
    throw e;
  } finally {
    await handle.close();
  }
}

function whole(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new CliError(`${what} must be a whole number, not ${v}`);
  return Number(v);
}

function date(v: string | undefined, what: string): Date | null {
  if (v === undefined) return null;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new CliError(`${what} must be an ISO 8601 time (2026-12-01T09:00:00Z), not ${v}`);
  return d;
}

/** The flags of `schedules create|update` (apps/cli/commands/schedules.ts), as commander hands them over. */
export interface ScheduleOptions {
  expression: string;
  function: string;
  input?: string;
  timezone?: string;
  start?: string;
  end?: string;
  disabled?: boolean;
  flexibleWindow?: string;
  misfire?: string;
  retries?: string;
  maxEventAge?: string;
  deleteAfterCompletion?: boolean;
  group?: string;
  description?: string;
  json?: boolean;
}

function inputOf(name: string, o: ScheduleOptions): ScheduleInput {
  const [fn, qualifier] = o.function.split(':') as [string, string | undefined];
  let misfirePolicy: ScheduleInput['misfirePolicy'] = null;
  if (o.misfire !== undefined) {
    const [mode, cap] = o.misfire.split(':') as [string, string | undefined];
    misfirePolicy = { mode, maxCatchUp: whole(cap, '--misfire all:<n>') ?? null };
  }
  const retries = whole(o.retries, '--retries');
  const age = whole(o.maxEventAge, '--max-event-age');
  const minutes = whole(o.flexibleWindow, '--flexible-window');
  return {
    name,
    groupName: o.group ?? null,
    description: o.description ?? null,
    expression: o.expression,
    timezone: o.timezone ?? null,
    startDate: date(o.start, '--start'),
    endDate: date(o.end, '--end'),
    state: o.disabled ? 'DISABLED' : 'ENABLED',
    flexibleTimeWindow: minutes === undefined ? { mode: 'OFF' } : { mode: 'FLEXIBLE', maximumWindowInMinutes: minutes },
    target: {
      functionName: fn,
      qualifier: qualifier ?? null,
      input: o.input ?? null,
      retryPolicy: { ...(retries !== undefined ? { maximumRetryAttempts: retries } : {}), ...(age !== undefined ? { maximumEventAgeInSeconds: age } : {}) },
    },
    misfirePolicy,
    actionAfterCompletion: o.deleteAfterCompletion ? 'DELETE' : 'NONE',
  };
}

const line = (s: ScheduleView) =>
  [s.groupName === 'default' ? s.name : `${s.groupName}/${s.name}`, s.state, s.expression, s.timezone, `${s.target.functionName}${s.target.qualifier ? `:${s.target.qualifier}` : ''}`, s.nextFireAt?.toISOString() ?? '-'].join('\t');

export async function scheduleWriteCommand(url: string, kind: 'create' | 'update', name: string, o: ScheduleOptions, io: Io): Promise<number> {
  return withDb(url, async (db) => {
    const view = kind === 'create' ? await createSchedule(db, inputOf(name, o), actor()) : await updateSchedule(db, inputOf(name, o), actor());
    io.out.write(o.json ? `${JSON.stringify(view, null, 2)}\n` : `${kind === 'create' ? 'created' : 'updated'} ${view.arn}; next fire ${view.nextFireAt?.toISOString() ?? 'never'}\n`);
    return 0;
  });
}

export async function listSchedulesCommand(url: string, o: { json?: boolean }, io: Io): Promise<number> {
  return withDb(url, async (db) => {
    const all = await listSchedules(db, { limit: 1000 });
    if (o.json) io.out.write(`${JSON.stringify(all, null, 2)}\n`);
    else io.out.write(`${['NAME', 'STATE', 'EXPRESSION', 'ZONE', 'TARGET', 'NEXT FIRE'].join('\t')}\n${all.map((s) => `${line(s)}\n`).join('')}`);
    return 0;
  });
}

export async function scheduleTicksCommand(url: string, name: string, o: { group?: string; next: string; json?: boolean }, io: Io): Promise<number> {
  return withDb(url, async (db) => {
    const recorded = await listTicks(db, o.group ?? null, name, 10_000);
    const view = await requireSchedule(db, o.group ?? null, name).catch(() => null);
    const upcoming = view ? await upcomingTicks(db, view, whole(o.next, '--next') ?? 5) : [];
    if (o.json) {
      io.out.write(`${JSON.stringify({ recorded, upcoming }, null, 2)}\n`);
      return 0;
    }
    io.out.write(`${['SCHEDULED', 'OUTCOME', 'LATE', 'OFFSET', 'INVOCATION', 'STATUS'].join('\t')}\n`);
    for (const t of recorded) {
      io.out.write(`${[t.scheduledTime.toISOString(), t.outcome === 'skipped' ? `skipped:${t.skipReason}` : 'fired', t.late ? 'late' : '-', `${t.flexibleOffsetMs / 1000}s`, t.invocationId ?? '-', t.invocationStatus ?? '-'].join('\t')}\n`);
    }
    for (const t of upcoming) io.out.write(`${[t.scheduledTime.toISOString(), 'upcoming', '-', `${t.flexibleOffsetMs / 1000}s`, '-', '-'].join('\t')}\n`);
    return 0;
  });
}

export async function deleteScheduleCommand(url: string, name: string, o: { group?: string }, io: Io): Promise<number> {
  return withDb(url, async (db) => {
    const view = await deleteSchedule(db, o.group ?? null, name, actor());
    io.out.write(`deleted ${view.arn}\n`);
    return 0;
  });
}
