// The EventBridge Scheduler REST API subset (docs/schedules.md, "The EventBridge Scheduler
// API"): CreateSchedule, GetSchedule, UpdateSchedule, DeleteSchedule and ListSchedules under
// /schedules, as `@aws-sdk/client-scheduler` and `aws scheduler … --endpoint-url` send them
// (restJson1: JSON bodies, timestamps as epoch seconds, errors named by x-amzn-ErrorType).
// Translation only: the rules live in db/schedule-store.ts.
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { decodeCursor, encodeCursor } from '../../db/cursor.ts';
import { LedgerError } from '../../db/errors.ts';
import {
  createSchedule,
  deleteSchedule,
  listSchedules,
  requireSchedule,
  SCHEDULE_NAME,
  updateSchedule,
  type ScheduleInput,
  type ScheduleView,
} from '../../db/schedule-store.ts';
import type { Db } from '../../db/schema.ts';
import { ScheduleValidationError } from '../../db/schedules/expression.ts';
import { principalOf } from './auth/index.ts';
import { readBodyLimited } from './body.ts';
import { httpErrorOf } from './errors.ts';
import { parseFunctionRef } from './function-ref.ts';

const BODY_LIMIT = 64 * 1024;
/** the ARN of a target function, as Lambda names it here (the worker's destinations use the same) */
const FUNCTION_ARN_PREFIX = 'arn:aws:lambda:local:000000000000:function:';

export function schedulerRoutes(db: Db, logger: Logger): Hono {
  const app = new Hono();
  app.post('/schedules/:Name', (c) =>
    schedulerAnswer(c, logger, async () => {
      const view = await createSchedule(db, inputOf(c.req.param('Name'), await bodyOf(c)), actorOf(c));
      return { ScheduleArn: view.arn };
    }),
  );
  app.put('/schedules/:Name', (c) =>
    schedulerAnswer(c, logger, async () => {
      const view = await updateSchedule(db, inputOf(c.req.param('Name'), await bodyOf(c)), actorOf(c));
      return { ScheduleArn: view.arn };
    }),
  );
  app.get('/schedules/:Name', (c) => schedulerAnswer(c, logger, async () => scheduleOut(await requireSchedule(db, c.req.query('groupName') || null, c.req.param('Name')))));
  app.delete('/schedules/:Name', (c) =>
    schedulerAnswer(c, logger, async () => {
      await deleteSchedule(db, c.req.query('groupName') || null, c.req.param('Name'), actorOf(c));
      return {};
    }),
  );
  app.get('/schedules', (c) =>
    schedulerAnswer(c, logger, async () => {
      const max = c.req.query('MaxResults');
      const limit = max === undefined ? 100 : Number(max);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new ScheduleValidationError('MaxResults', 'must be a whole number 1–100', max);
      const state = c.req.query('State') || null;
      if (state !== null && state !== 'ENABLED' && state !== 'DISABLED') throw new ScheduleValidationError('State', 'must be ENABLED or DISABLED', state);
      const token = c.req.query('NextToken');
      const after = token ? decodeCursor(token, [SCHEDULE_NAME, SCHEDULE_NAME], 'NextToken').join('/') : null;
      const page = await listSchedules(db, { groupName: c.req.query('ScheduleGroup') || null, namePrefix: c.req.query('NamePrefix') || null, state, after, limit: limit + 1 });
      const shown = page.slice(0, limit);
      const last = shown.at(-1);
      return {
        Schedules: shown.map((s) => ({
          Arn: s.arn,
          Name: s.name,
          GroupName: s.groupName,
          State: s.state,
          CreationDate: epoch(s.createdAt),
          LastModificationDate: epoch(s.updatedAt),
          Target: { Arn: targetArn(s) },
        })),
        ...(page.length > limit && last ? { NextToken: encodeCursor([last.groupName, last.name]) } : {}),
      };
    }),
  );
  return app;
}

const epoch = (d: Date | null): number | undefined => (d === null ? undefined : d.getTime() / 1000);

function targetArn(s: ScheduleView): string {
  return `${FUNCTION_ARN_PREFIX}${s.target.functionName}${s.target.qualifier ? `:${s.target.qualifier}` : ''}`;
}

function scheduleOut(s: ScheduleView): Record<string, unknown> {
  const retry = s.target.retryPolicy;
  return {
    Arn: s.arn,
    GroupName: s.groupName,
    Name: s.name,
    ScheduleExpression: s.expression,
    ScheduleExpressionTimezone: s.timezone,
    StartDate: epoch(s.startDate),
    EndDate: epoch(s.endDate),
    Description: s.description ?? undefined,
    State: s.state,
    CreationDate: epoch(s.createdAt),
    LastModificationDate: epoch(s.updatedAt),
    FlexibleTimeWindow: s.flexibleTimeWindow.mode === 'OFF' ? { Mode: 'OFF' } : { Mode: 'FLEXIBLE', MaximumWindowInMinutes: s.flexibleTimeWindow.maximumWindowInMinutes },
    Target: {
      Arn: targetArn(s),
      RoleArn: s.target.roleArn ?? undefined,
      Input: s.target.input ?? undefined,
      RetryPolicy: { MaximumRetryAttempts: retry.maximumRetryAttempts, MaximumEventAgeInSeconds: retry.maximumEventAgeInSeconds },
      DeadLetterConfig: s.target.deadLetterArn ? { Arn: s.target.deadLetterArn } : undefined,
    },
    ActionAfterCompletion: s.actionAfterCompletion,
    // not in AWS: this service's misfire policy (docs/schedules.md, "Missed ticks")
    MisfirePolicy: s.misfirePolicy.mode === 'all' ? { Mode: 'all', MaxCatchUp: s.misfirePolicy.maxCatchUp } : { Mode: s.misfirePolicy.mode },
  };
}

async function bodyOf(c: Context): Promise<Record<string, unknown>> {
  const bytes = await readBodyLimited(c, BODY_LIMIT);
  if (bytes.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new LedgerError('InvalidRequestContent', 'The request body is not JSON.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new LedgerError('InvalidRequestContent', 'The request body must be a JSON object.');
  return parsed as Record<string, unknown>;
}

function obj(v: unknown, field: string): Record<string, unknown> | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ScheduleValidationError(field, 'must be an object', v);
  return v as Record<string, unknown>;
}

function str(v: unknown, field: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new ScheduleValidationError(field, 'must be a string', v);
  return v;
}

/** Epoch seconds (what the SDK and CLI send) or an ISO 8601 string. */
function date(v: unknown, field: string): Date | null {
  if (v === undefined || v === null) return null;
  const d = typeof v === 'number' ? new Date(v * 1000) : typeof v === 'string' ? new Date(v) : null;
  if (!d || Number.isNaN(d.getTime())) throw new ScheduleValidationError(field, 'must be a timestamp', v);
  return d;
}

function inputOf(name: string, b: Record<string, unknown>): ScheduleInput {
  const target = obj(b.Target, 'Target');
  if (!target) throw new ScheduleValidationError('Target', 'is required', undefined);
  const arn = str(target.Arn, 'Target.Arn');
  if (!arn) throw new ScheduleValidationError('Target.Arn', 'is required', undefined);
  // a Lambda function ARN (with an optional version), or a bare function name
  let ref: { name: string; qualifier: string | null };
  try {
    ref = parseFunctionRef(arn);
  } catch (e) {
    throw new ScheduleValidationError('Target.Arn', `must be a Lambda function ARN: ${(e as Error).message}`, arn);
  }
  const expression = str(b.ScheduleExpression, 'ScheduleExpression');
  if (!expression) throw new ScheduleValidationError('ScheduleExpression', 'is required', undefined);
  const ftw = obj(b.FlexibleTimeWindow, 'FlexibleTimeWindow');
  if (!ftw) throw new ScheduleValidationError('FlexibleTimeWindow', 'is required', undefined);
  const retry = obj(target.RetryPolicy, 'Target.RetryPolicy');
  const dlc = obj(target.DeadLetterConfig, 'Target.DeadLetterConfig');
  const misfire = obj(b.MisfirePolicy, 'MisfirePolicy');
  const retryPolicy: ScheduleInput['target']['retryPolicy'] = {};
  if (retry?.MaximumRetryAttempts !== undefined) retryPolicy.maximumRetryAttempts = retry.MaximumRetryAttempts as number;
  if (retry?.MaximumEventAgeInSeconds !== undefined) retryPolicy.maximumEventAgeInSeconds = retry.MaximumEventAgeInSeconds as number;
  return {
    name,
    groupName: str(b.GroupName, 'GroupName'),
    description: str(b.Description, 'Description'),
    expression,
    timezone: str(b.ScheduleExpressionTimezone, 'ScheduleExpressionTimezone'),
    startDate: date(b.StartDate, 'StartDate'),
    endDate: date(b.EndDate, 'EndDate'),
    state: str(b.State, 'State') as ScheduleInput['state'],
    flexibleTimeWindow: { mode: str(ftw.Mode, 'FlexibleTimeWindow.Mode') as string, maximumWindowInMinutes: ftw.MaximumWindowInMinutes as number | null },
    target: {
      functionName: ref.name,
      qualifier: ref.qualifier,
      input: str(target.Input, 'Target.Input'),
      roleArn: str(target.RoleArn, 'Target.RoleArn'),
      retryPolicy,
      deadLetterArn: dlc ? str(dlc.Arn, 'Target.DeadLetterConfig.Arn') : null,
    },
    misfirePolicy: misfire ? { mode: str(misfire.Mode, 'MisfirePolicy.Mode') as string, maxCatchUp: misfire.MaxCatchUp as number | null } : null,
    actionAfterCompletion: str(b.ActionAfterCompletion, 'ActionAfterCompletion') as ScheduleInput['actionAfterCompletion'],
  };
}

function actorOf(c: Context): { actor: string; requestId: string } {
  const p = principalOf(c.req.raw);
  return { actor: p ? p.keyId : 'anonymous', requestId: c.get('requestId' as never) ?? randomUUID() };
}

/** EventBridge Scheduler's error names for this service's codes. */
function awsTypeOf(e: unknown, fallback: string): string {
  if (e instanceof LedgerError) {
    if (e.code === 'InvalidParameter' || e.code === 'InvalidRequestContent' || e.code === 'PayloadTooLarge') return 'ValidationException';
    if (e.code === 'ScheduleNotFound') return 'ResourceNotFoundException';
    if (e.code === 'ScheduleExists' || e.code === 'RevisionConflict') return 'ConflictException';
  }
  return fallback === 'ServiceException' ? 'InternalServerException' : fallback;
}

async function schedulerAnswer(c: Context, logger: Logger, run: () => Promise<Record<string, unknown>>): Promise<Response> {
  const requestId = randomUUID();
  try {
    const body = await run();
    return c.body(JSON.stringify(body), 200, { 'content-type': 'application/json', 'x-amzn-RequestId': requestId });
  } catch (e) {
    const err = httpErrorOf(e);
    if (err.status >= 500) logger.error({ err: e }, 'scheduler API failed');
    const type = awsTypeOf(e, err.awsType);
    const status = type === 'ConflictException' ? 409 : err.status;
    return c.body(JSON.stringify({ Message: err.message }), status, {
      ...err.headers,
      'content-type': 'application/json',
      'x-amzn-ErrorType': type,
      'x-amzn-RequestId': requestId,
    });
  }
}
