// The EventBridge Scheduler API from the unmodified `@aws-sdk/client-scheduler` and the AWS
// CLI v2, signed with SigV4 by an API key pair: create, read, update, list and delete; each
// change in ledger.changes; refusals with the SDK's exception classes and nothing written.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  ConflictException,
  CreateScheduleCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  ListSchedulesCommand,
  ResourceNotFoundException,
  SchedulerClient,
  UpdateScheduleCommand,
  ValidationException,
} from '@aws-sdk/client-scheduler';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listChanges } from '../../db/changes.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { getSchedule } from '../../db/schedule-store.ts';
import { moduleFn } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cli } from '../helpers/cli.ts';
import { bearer, gql, startSecureApi, type SecureApi } from '../security/helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let admin: CreatedApiKey;
let auditor: CreatedApiKey;

const client = (k: CreatedApiKey) =>
  new SchedulerClient({
    endpoint: api.url,
    region: 'us-east-1',
    credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey },
  });

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  admin = await createApiKey(t.db, { name: 'scheduler-admin', scopes: ['admin', 'audit'] });
  auditor = await createApiKey(t.db, { name: 'scheduler-audit', scopes: ['audit'] });
  api = await startSecureApi(t.db, { auth: { enabled: true, cacheTtlMs: 0 } });
});

afterAll(async () => {
  await api?.close();
});

describe('@aws-sdk/client-scheduler', () => {
  it('creates, reads, updates, lists and deletes a schedule', async () => {
    const c = client(admin);
    try {
      const created = await c.send(
        new CreateScheduleCommand({
          Name: 'nightly',
          ScheduleExpression: 'cron(0 3 * * ? *)',
          ScheduleExpressionTimezone: 'Europe/Berlin',
          FlexibleTimeWindow: { Mode: 'FLEXIBLE', MaximumWindowInMinutes: 15 },
          Target: {
            Arn: 'arn:aws:lambda:us-east-1:000000000000:function:echo',
            RoleArn: 'arn:aws:iam::000000000000:role/scheduler',
            Input: '{"at": "<aws.scheduler.scheduled-time>"}',
            RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 600 },
          },
          EndDate: new Date('2030-01-01T00:00:00Z'),
        }),
      );
      expect(created.ScheduleArn).toBe('arn:aws:scheduler:local:000000000000:schedule/default/nightly');

      const got = await c.send(new GetScheduleCommand({ Name: 'nightly' }));
      expect(got).toMatchObject({
        Name: 'nightly',
        GroupName: 'default',
        State: 'ENABLED',
        ScheduleExpression: 'cron(0 3 * * ? *)',
        ScheduleExpressionTimezone: 'Europe/Berlin',
        FlexibleTimeWindow: { Mode: 'FLEXIBLE', MaximumWindowInMinutes: 15 },
        Target: { Arn: 'arn:aws:lambda:local:000000000000:function:echo', Input: '{"at": "<aws.scheduler.scheduled-time>"}', RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 600 } },
        ActionAfterCompletion: 'NONE',
      });
      expect(got.EndDate?.toISOString()).toBe('2030-01-01T00:00:00.000Z');
      expect(got.CreationDate).toBeInstanceOf(Date);

      await c.send(
        new UpdateScheduleCommand({
          Name: 'nightly',
          ScheduleExpression: 'rate(2 hours)',
          State: 'DISABLED',
          FlexibleTimeWindow: { Mode: 'OFF' },
          Target: { Arn: 'arn:aws:lambda:us-east-1:000000000000:function:echo:1', RoleArn: 'arn:aws:iam::000000000000:role/scheduler' },
        }),
      );
      const updated = await c.send(new GetScheduleCommand({ Name: 'nightly', GroupName: 'default' }));
      expect(updated).toMatchObject({ ScheduleExpression: 'rate(2 hours)', State: 'DISABLED', FlexibleTimeWindow: { Mode: 'OFF' }, ScheduleExpressionTimezone: 'UTC' });
      expect(updated.Target?.Arn).toBe('arn:aws:lambda:local:000000000000:function:echo:1');
      expect(updated.EndDate).toBeUndefined();

      const listed = await c.send(new ListSchedulesCommand({ NamePrefix: 'night' }));
      expect(listed.Schedules?.map((s) => [s.Name, s.State, s.Target?.Arn])).toEqual([['nightly', 'DISABLED', 'arn:aws:lambda:local:000000000000:function:echo:1']]);

      await c.send(new DeleteScheduleCommand({ Name: 'nightly' }));
      expect(await getSchedule(t.db, null, 'nightly')).toBeNull();
      const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/nightly' });
      expect(changes.map((ch) => [ch.action, ch.actor])).toEqual([
        ['deleted', admin.id],
        ['updated', admin.id],
        ['created', admin.id],
      ]);
      expect((changes[1]?.data.before as { expression: string }).expression).toBe('cron(0 3 * * ? *)');
      expect((changes[1]?.data.after as { expression: string }).expression).toBe('rate(2 hours)');
    } finally {
      c.destroy();
    }
  });

  it('pages through ListSchedules with NextToken', async () => {
    const c = client(admin);
    try {
      for (const n of [1, 2, 3]) {
        await c.send(new CreateScheduleCommand({ Name: `page-${n}`, ScheduleExpression: 'rate(1 hour)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r' } }));
      }
      const first = await c.send(new ListSchedulesCommand({ NamePrefix: 'page-', MaxResults: 2 }));
      expect(first.Schedules?.map((s) => s.Name)).toEqual(['page-1', 'page-2']);
      const second = await c.send(new ListSchedulesCommand({ NamePrefix: 'page-', MaxResults: 2, NextToken: first.NextToken }));
      expect(second.Schedules?.map((s) => s.Name)).toEqual(['page-3']);
      expect(second.NextToken).toBeUndefined();
    } finally {
      c.destroy();
    }
  });

  it('refuses bad input, duplicates and unknown names with the SDK exception classes, writing nothing', async () => {
    const c = client(admin);
    try {
      const before = (await listChanges(t.db, { resourceType: 'schedule' })).length;
      const bad = await c
        .send(new CreateScheduleCommand({ Name: 'bad', ScheduleExpression: 'cron(0 10 * * * *)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r' } }))
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(ValidationException);
      expect((bad as Error).message).toMatch(/day-of-month and day-of-week/);
      const badInput = await c
        .send(new CreateScheduleCommand({ Name: 'bad', ScheduleExpression: 'rate(1 hour)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r', Input: 'not json' } }))
        .catch((e: unknown) => e);
      expect(badInput).toBeInstanceOf(ValidationException);
      await c.send(new CreateScheduleCommand({ Name: 'twice', ScheduleExpression: 'rate(1 hour)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r' } }));
      const dup = await c
        .send(new CreateScheduleCommand({ Name: 'twice', ScheduleExpression: 'rate(1 hour)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r' } }))
        .catch((e: unknown) => e);
      expect(dup).toBeInstanceOf(ConflictException);
      const missing = await c.send(new GetScheduleCommand({ Name: 'nope' })).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ResourceNotFoundException);
      const gone = await c.send(new DeleteScheduleCommand({ Name: 'nope' })).catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(ResourceNotFoundException);
      expect((await listChanges(t.db, { resourceType: 'schedule' })).length).toBe(before + 1);
    } finally {
      c.destroy();
    }
  });

  it('an audit key reads schedules and may not change them', async () => {
    const c = client(auditor);
    try {
      const listed = await c.send(new ListSchedulesCommand({}));
      expect(listed.Schedules?.length).toBeGreaterThan(0);
      const refused = await c
        .send(new CreateScheduleCommand({ Name: 'audit-made', ScheduleExpression: 'rate(1 hour)', FlexibleTimeWindow: { Mode: 'OFF' }, Target: { Arn: 'echo', RoleArn: 'r' } }))
        .catch((e: unknown) => e);
      expect((refused as { name?: string }).name).toBe('AccessDeniedException');
      expect((refused as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(403);
      expect(await getSchedule(t.db, null, 'audit-made')).toBeNull();
    } finally {
      c.destroy();
    }
  });
});

describe('GraphQL', () => {
  it('createSchedule, schedules, scheduleTicks with the next computed ticks, updateSchedule, deleteSchedule', async () => {
    const h = bearer(admin.token);
    const created = await gql(
      api.url,
      `mutation { createSchedule(input: {name: "gql", expression: "cron(30 2 * * ? *)", timezone: "America/New_York", targetFunction: "echo",
        input: "{\\"t\\": \\"<aws.scheduler.scheduled-time>\\"}", misfirePolicy: "all", maxCatchUp: 5, startDate: "2099-03-07T00:00:00Z"}) {
        name arn misfirePolicy maxCatchUp upcomingTicks(count: 3) { scheduledTime } } }`,
      h,
    );
    expect(created.body.errors).toBeUndefined();
    expect(created.body.data?.createSchedule).toMatchObject({ name: 'gql', misfirePolicy: 'all', maxCatchUp: 5 });
    // 2099-03-08 is the spring-forward day in New York: 02:30 does not exist, and is skipped
    const ticks = await gql(api.url, 'query { scheduleTicks(name: "gql", upcoming: 3) { recorded { outcome } upcoming { scheduledTime fireAt } } }', h);
    expect((ticks.body.data?.scheduleTicks as { upcoming: { scheduledTime: string }[] }).upcoming.map((x) => x.scheduledTime)).toEqual([
      '2099-03-07T07:30:00.000Z',
      '2099-03-09T06:30:00.000Z',
      '2099-03-10T06:30:00.000Z',
    ]);
    const updated = await gql(api.url, 'mutation { updateSchedule(input: {name: "gql", expression: "rate(1 day)", targetFunction: "echo", state: "DISABLED"}) { state expression misfirePolicy } }', h);
    expect(updated.body.data?.updateSchedule).toEqual({ state: 'DISABLED', expression: 'rate(1 day)', misfirePolicy: 'once' });
    const listed = await gql(api.url, 'query { schedules(namePrefix: "gql") { name state } }', h);
    expect(listed.body.data?.schedules).toEqual([{ name: 'gql', state: 'DISABLED' }]);
    const bad = await gql(api.url, 'mutation { createSchedule(input: {name: "gql-bad", expression: "rate(0 minutes)", targetFunction: "echo"}) { name } }', h);
    expect(bad.body.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const deleted = await gql(api.url, 'mutation { deleteSchedule(name: "gql") { name } }', h);
    expect(deleted.body.data?.deleteSchedule).toEqual({ name: 'gql' });
    const gone = await gql(api.url, 'query { schedule(name: "gql") { name } }', h);
    expect(gone.body.errors?.[0]?.extensions?.code).toBe('ScheduleNotFound');
  });
});

describe('invoke-ledger schedules', () => {
  it('create, list, ticks (with the next computed ones), update, delete; a refused definition exits 1 with one line', async () => {
    const env = { DATABASE_URL: t.ownerUrl };
    const made = await cli(['schedules', 'create', 'cli-sched', '--expression', 'cron(0 9 ? * MON-FRI *)', '--timezone', 'Europe/Berlin', '--function', 'echo', '--input', '{"at":"<aws.scheduler.scheduled-time>"}', '--misfire', 'all:3'], env);
    expect(made.err).toBe('');
    expect(made.code).toBe(0);
    expect(made.out).toMatch(/^created arn:aws:scheduler:local:000000000000:schedule\/default\/cli-sched; next fire 20\d\d-/);
    const listed = await cli(['schedules', 'list'], env);
    expect(listed.out).toMatch(/cli-sched\tENABLED\tcron\(0 9 \? \* MON-FRI \*\)\tEurope\/Berlin\techo\t/);
    const ticks = await cli(['schedules', 'ticks', 'cli-sched', '--next', '3', '--json'], env);
    const upcoming = (JSON.parse(ticks.out) as { upcoming: { scheduledTime: string }[] }).upcoming;
    expect(upcoming).toHaveLength(3);
    // 09:00 in Berlin is 07:00 or 08:00 UTC, on weekdays
    for (const u of upcoming) {
      expect(['07:00:00', '08:00:00']).toContain(u.scheduledTime.slice(11, 19));
      expect([1, 2, 3, 4, 5]).toContain(new Date(u.scheduledTime).getUTCDay());
    }
    expect((await cli(['schedules', 'update', 'cli-sched', '--expression', 'rate(10 minutes)', '--function', 'echo:1', '--disabled'], env)).code).toBe(0);
    expect((await getSchedule(t.db, null, 'cli-sched'))).toMatchObject({ expression: 'rate(10 minutes)', state: 'DISABLED', target: { qualifier: '1' } });
    const bad = await cli(['schedules', 'create', 'cli-bad', '--expression', 'rate(5 minute)', '--function', 'echo'], env);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/a rate of 5 takes the plural unit minutes/);
    expect((await cli(['schedules', 'delete', 'cli-sched'], env)).code).toBe(0);
    expect(await getSchedule(t.db, null, 'cli-sched')).toBeNull();
    const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/cli-sched' });
    expect(changes.map((c) => c.action)).toEqual(['deleted', 'updated', 'created']);
    expect(changes[0]?.actor).toMatch(/^cli:/);
  });
});

// AWS CLI v2 (CI installs it at /usr/bin/aws; the `aws` on PATH may be a v1 shim without `scheduler`)
const AWS_V2 = '/usr/bin/aws';

describe.skipIf(!existsSync(AWS_V2))('aws scheduler (AWS CLI v2) --endpoint-url', () => {
  const aws = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: admin.accessKeyId, AWS_SECRET_ACCESS_KEY: admin.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_PAGER: '' };
      delete env.AWS_PROFILE;
      delete env.AWS_SESSION_TOKEN;
      execFile(AWS_V2, ['scheduler', ...args, '--endpoint-url', api.url, '--output', 'json'], { env }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('create-schedule, get-schedule, update-schedule, list-schedules, delete-schedule', { timeout: 60_000 }, async () => {
    const target = JSON.stringify({ Arn: 'arn:aws:lambda:us-east-1:000000000000:function:echo', RoleArn: 'arn:aws:iam::000000000000:role/r', Input: '{"n": 1}' });
    const created = await aws(['create-schedule', '--name', 'cli-made', '--schedule-expression', 'rate(5 minutes)', '--flexible-time-window', 'Mode=OFF', '--target', target]);
    expect(created.stderr).toBe('');
    expect(JSON.parse(created.stdout)).toEqual({ ScheduleArn: 'arn:aws:scheduler:local:000000000000:schedule/default/cli-made' });
    const got = await aws(['get-schedule', '--name', 'cli-made']);
    expect(JSON.parse(got.stdout)).toMatchObject({ Name: 'cli-made', ScheduleExpression: 'rate(5 minutes)', State: 'ENABLED' });
    const updated = await aws(['update-schedule', '--name', 'cli-made', '--schedule-expression', 'cron(0 12 * * ? *)', '--schedule-expression-timezone', 'America/New_York', '--flexible-time-window', 'Mode=OFF', '--target', target]);
    expect(updated.code).toBe(0);
    const listed = await aws(['list-schedules', '--name-prefix', 'cli-']);
    expect(JSON.parse(listed.stdout).Schedules.map((s: { Name: string }) => s.Name)).toEqual(['cli-made']);
    expect((await getSchedule(t.db, null, 'cli-made'))?.expression).toBe('cron(0 12 * * ? *)');
    const deleted = await aws(['delete-schedule', '--name', 'cli-made']);
    expect(deleted.code).toBe(0);
    expect(await getSchedule(t.db, null, 'cli-made')).toBeNull();
    const missing = await aws(['get-schedule', '--name', 'cli-made']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/ResourceNotFoundException/);
  });
});
