// The control plane with AWS CLI v2 (`/usr/bin/aws`, Debian's awscli) against a real
// API process, and a worker process started in another directory with no FUNCTIONS_DIR
// that runs the uploaded code from the database: create from a zip, list, get (and
// download Code.Location), update code, publish, alias, invoke async through the alias,
// concurrency 0 → 429, bad zip refused with nothing written, delete.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { strToU8, zipSync } from 'fflate';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { once, SLOW_TESTS } from '../helpers/once.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const AWS = '/usr/bin/aws';
const hasCli = existsSync(AWS);
// about 30 CLI calls of a second or more each: once per CI run (test/helpers/once.ts)
const runs = hasCli && SLOW_TESTS;

let t: TestDatabase;
let key: CreatedApiKey;
let api: ServiceProcess;
let worker: ServiceProcess;
let dir: string;
let endpoint: string;

function zipFile(name: string, tag: string): string {
  const source = `exports.handler = async (event, context) => ({ tag: ${JSON.stringify(tag)}, event, version: process.env.AWS_LAMBDA_FUNCTION_VERSION, fn: context.functionName });`;
  const file = path.join(dir, name);
  writeFileSync(file, zipSync({ 'index.js': strToU8(source) }, { mtime: new Date('2000-01-01T00:00:00Z') }));
  return file;
}

interface CliResult {
  code: number;
  out: string;
  err: string;
}

function aws(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      AWS,
      ['lambda', ...args, '--endpoint-url', endpoint, '--output', 'json'],
      {
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: dir,
          AWS_ACCESS_KEY_ID: key.accessKeyId,
          AWS_SECRET_ACCESS_KEY: key.secretAccessKey,
          AWS_REGION: 'us-east-1',
          AWS_PAGER: '',
          AWS_EC2_METADATA_DISABLED: 'true',
          AWS_MAX_ATTEMPTS: '1',
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await aws(args);
  expect(r.code, r.err).toBe(0);
  return r.out.trim() === '' ? {} : (JSON.parse(r.out) as Record<string, unknown>);
}

async function waitFor<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  if (!runs) return;
  t = await createTestDatabase();
  key = await createApiKey(t.db, { name: 'aws-cli', scopes: ['admin', 'invoke'] });
  dir = mkdtempSync(path.join(tmpdir(), 'aws-cli-'));
  const emptyFunctions = path.join(dir, 'no-functions');
  const port = await freePort();
  endpoint = `http://127.0.0.1:${port}`;
  api = await spawnService('api', port, { DATABASE_URL: t.ownerUrl, LEDGER_AUTH: 'on', FUNCTIONS_DIR: emptyFunctions, CODE_CACHE_DIR: path.join(dir, 'api-cache') }, { entry: 'tsx' });
  // another directory, no FUNCTIONS_DIR, its own code cache: everything comes from the database
  const elsewhere = mkdtempSync(path.join(tmpdir(), 'aws-cli-worker-'));
  const env: Record<string, string> = { DATABASE_URL: t.ownerUrl, POLL_INTERVAL_MS: '200' };
  worker = await spawnService('worker', 0, env, { entry: 'tsx', cwd: elsewhere });
  expect(worker.output()).toMatch(/functions come from the database only/);
}, 120_000);

afterAll(async () => {
  if (worker) await endProcess(worker);
  if (api) await endProcess(api);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.runIf(runs)(once('aws lambda (CLI v2) against the control plane'), () => {
  it('runs the whole workflow; a worker in another directory runs the uploaded code', async () => {
    const version = await aws(['list-functions']);
    expect(version.code, version.err).toBe(0);

    const created = await ok([
      'create-function',
      '--function-name', 'cli-fn',
      '--runtime', 'nodejs20.x',
      '--role', 'arn:aws:iam::000000000000:role/lambda',
      '--handler', 'index.handler',
      '--zip-file', `fileb://${zipFile('one.zip', 'one')}`,
      '--environment', 'Variables={STAGE=test}',
      '--timeout', '10',
    ]);
    expect(created).toMatchObject({ FunctionName: 'cli-fn', Handler: 'index.handler', Version: '$LATEST', Timeout: 10, Environment: { Variables: { STAGE: 'test' } } });

    const listed = await ok(['list-functions']);
    expect((listed['Functions'] as { FunctionName: string }[]).map((f) => f.FunctionName)).toContain('cli-fn');

    const got = await ok(['get-function', '--function-name', 'cli-fn']);
    const location = (got['Code'] as { Location: string }).Location;
    const download = await fetch(location);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).subarray(0, 2).toString()).toBe('PK');

    const v1 = (await ok(['publish-version', '--function-name', 'cli-fn']))['Version'] as string;
    const updated = await ok(['update-function-code', '--function-name', 'cli-fn', '--zip-file', `fileb://${zipFile('two.zip', 'two')}`, '--publish']);
    const v2 = updated['Version'] as string;
    expect(Number(v2)).toBeGreaterThan(Number(v1));
    const versions = await ok(['list-versions-by-function', '--function-name', 'cli-fn']);
    expect((versions['Versions'] as { Version: string }[]).map((v) => v.Version)).toEqual(['$LATEST', v1, v2]);

    const alias = await ok(['create-alias', '--function-name', 'cli-fn', '--name', 'live', '--function-version', v1, '--routing-config', JSON.stringify({ AdditionalVersionWeights: { [v2]: 0.5 } })]);
    expect(alias).toMatchObject({ Name: 'live', FunctionVersion: v1, RoutingConfig: { AdditionalVersionWeights: { [v2]: 0.5 } } });
    expect((await ok(['get-alias', '--function-name', 'cli-fn', '--name', 'live']))['FunctionVersion']).toBe(v1);
    expect(((await ok(['list-aliases', '--function-name', 'cli-fn']))['Aliases'] as unknown[]).length).toBe(1);

    // async through the alias: only the worker runs these, from its own cache
    const outFile = path.join(dir, 'out.json');
    const sent = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        ok(['invoke', '--function-name', 'cli-fn:live', '--invocation-type', 'Event', '--cli-binary-format', 'raw-in-base64-out', '--payload', JSON.stringify({ i }), path.join(dir, `out-${i}.json`)]),
      ),
    );
    expect(sent.map((r) => r['StatusCode'])).toEqual([202, 202, 202, 202]);
    const runs = await waitFor('four async invocations run by the worker', async () => {
      const { rows } = await sql<{ status: string; version: number; alias: string | null; result: { tag: string; version: string } | null; worker: string }>`
        select i.status, i.function_version as version, a.data ->> 'alias' as alias, s.data -> 'result' as result, st.data ->> 'workerId' as worker
        from ledger.invocations i
        join ledger.events a on a.invocation_id = i.id and a.type = 'accepted'
        left join ledger.events s on s.invocation_id = i.id and s.type = 'succeeded'
        left join ledger.events st on st.invocation_id = i.id and st.type = 'started'
        where i.function_name = 'cli-fn'`.execute(t.db);
      return rows.length === 4 && rows.every((r) => r.status === 'succeeded') ? rows : null;
    });
    for (const r of runs) {
      expect(r.alias).toBe('live');
      expect(r.worker).toContain(`:${worker.pid}:`);
      expect(r.result).toMatchObject({ tag: String(r.version) === v1 ? 'one' : 'two', version: String(r.version) });
    }

    // a config change takes effect on the next invoke, in the API process, without restart
    await ok(['update-function-configuration', '--function-name', 'cli-fn', '--timeout', '20']);
    expect((await ok(['get-function-configuration', '--function-name', 'cli-fn']))['Timeout']).toBe(20);

    await ok(['put-function-concurrency', '--function-name', 'cli-fn', '--reserved-concurrent-executions', '0']);
    const throttled = await aws(['invoke', '--function-name', 'cli-fn', '--cli-binary-format', 'raw-in-base64-out', '--payload', '{}', outFile]);
    expect(throttled.code).not.toBe(0);
    expect(throttled.err).toMatch(/TooManyRequestsException/);
    await ok(['delete-function-concurrency', '--function-name', 'cli-fn']);
    const sync = await ok(['invoke', '--function-name', 'cli-fn', '--cli-binary-format', 'raw-in-base64-out', '--payload', '{"sync":true}', outFile]);
    expect(sync['ExecutedVersion']).toBe('$LATEST'); // unqualified, as Lambda answers

    const eic = await ok(['put-function-event-invoke-config', '--function-name', 'cli-fn', '--maximum-retry-attempts', '1', '--maximum-event-age-in-seconds', '300']);
    expect(eic).toMatchObject({ MaximumRetryAttempts: 1, MaximumEventAgeInSeconds: 300 });
    // epoch seconds on the wire (FunctionConfiguration.LastModified is a string): the CLI parsed it as a time
    expect(Number.isNaN(Date.parse(String(eic['LastModified'])))).toBe(false);

    // the event invoke config governs retries: with 0 retries a failure dead-letters at once,
    // without it the same function's failure is retried (scheduled a minute later)
    const failing = path.join(dir, 'fail.zip');
    writeFileSync(failing, zipSync({ 'index.js': strToU8('exports.handler = async () => { throw new Error("always"); };') }));
    await Promise.all(
      ['fails-once', 'fails-retried'].map((name) =>
        ok(['create-function', '--function-name', name, '--runtime', 'nodejs20.x', '--role', 'r', '--handler', 'index.handler', '--zip-file', `fileb://${failing}`]),
      ),
    );
    await ok(['put-function-event-invoke-config', '--function-name', 'fails-once', '--maximum-retry-attempts', '0']);
    await Promise.all(
      ['fails-once', 'fails-retried'].map((name) =>
        ok(['invoke', '--function-name', name, '--invocation-type', 'Event', '--cli-binary-format', 'raw-in-base64-out', '--payload', '{}', path.join(dir, `out-${name}.json`)]),
      ),
    );
    const outcomes = await waitFor('both failures handled by the worker', async () => {
      const { rows } = await sql<{ function_name: string; status: string; attempts: number }>`
        select function_name, status, attempts from ledger.invocations where function_name in ('fails-once', 'fails-retried') order by function_name`.execute(t.db);
      return rows.length === 2 && rows.every((r) => r.attempts === 1 && ['dead_lettered', 'retry_scheduled'].includes(r.status)) ? rows : null;
    });
    expect(outcomes).toEqual([
      { function_name: 'fails-once', status: 'dead_lettered', attempts: 1 },
      { function_name: 'fails-retried', status: 'retry_scheduled', attempts: 1 },
    ]);

    // a hostile zip (zip slip; the CLI itself refuses a file that is not a zip at all): Lambda's error, nothing stored
    const before = await sql<{ n: number }>`select (select count(*) from ledger.code_packages) + (select count(*) from ledger.changes) + (select count(*) from ledger.functions) as n`.execute(t.db);
    const notZip = path.join(dir, 'bad.zip');
    writeFileSync(notZip, zipSync({ '../escape.js': strToU8('exports.handler = () => 1;') }));
    const bad = await aws(['create-function', '--function-name', 'bad', '--runtime', 'nodejs20.x', '--role', 'r', '--handler', 'index.handler', '--zip-file', `fileb://${notZip}`]);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/InvalidParameterValueException/);
    const after = await sql<{ n: number }>`select (select count(*) from ledger.code_packages) + (select count(*) from ledger.changes) + (select count(*) from ledger.functions) as n`.execute(t.db);
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);

    await ok(['delete-function', '--function-name', 'cli-fn']);
    const gone = await aws(['get-function', '--function-name', 'cli-fn']);
    expect(gone.err).toMatch(/ResourceNotFoundException/);

    const { rows: history } = await sql<{ action: string; actor: string }>`
      select action, actor from audit.changes where resource_type = 'function' and resource_name = 'cli-fn' order by seq`.execute(t.db);
    expect(history.map((h) => h.action)).toEqual([
      'created',
      'published',
      'code_updated',
      'published',
      'config_updated',
      'concurrency_set',
      'concurrency_deleted',
      'event_invoke_config_put',
      'deleted',
    ]);
    expect(new Set(history.map((h) => h.actor))).toEqual(new Set([key.id]));
  }, 600_000); // about 30 CLI calls; each starts Python (seconds apiece on a loaded 2-core machine)
});
