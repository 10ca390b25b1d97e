// The control plane through the unmodified AWS SDK v3: create a function from a zip,
// read, list, change code and configuration, publish, alias with weights, concurrency,
// event invoke configuration, delete; refusals with Lambda's error types and nothing
// written; every change in ledger.changes with the key that made it.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateAliasCommand,
  CreateFunctionCommand,
  DeleteFunctionCommand,
  DeleteFunctionConcurrencyCommand,
  GetAccountSettingsCommand,
  GetAliasCommand,
  GetFunctionCommand,
  GetFunctionConfigurationCommand,
  GetFunctionEventInvokeConfigCommand,
  InvokeCommand,
  LambdaClient,
  LambdaServiceException,
  ListAliasesCommand,
  ListFunctionsCommand,
  ListVersionsByFunctionCommand,
  PublishVersionCommand,
  PutFunctionConcurrencyCommand,
  PutFunctionEventInvokeConfigCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda';
import { zipSync, strToU8 } from 'fflate';
import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createWorker } from '../../apps/worker/index.ts';
import { packCodePackage, sha256Hex } from '../../db/code/index.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { waitFor } from '../worker/helpers.ts';
import { FIXTURES, fromBytes, json } from './helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

const silent = pino({ level: 'silent' });
const LAMBDA_HANDLERS = fileURLToPath(new URL('./lambda-handlers/', import.meta.url));
let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let cacheDir: string;
let admin: CreatedApiKey;
let invoker: CreatedApiKey;
let client: LambdaClient;

/** A Lambda-style package: index.js exporting `handler`, answering with what it sees. */
function handlerZip(tag: string): Uint8Array {
  const source = `
exports.handler = async (event, context) => ({
  tag: ${JSON.stringify(tag)},
  event,
  greeting: process.env.GREETING ?? null,
  leaked: ['DATABASE_URL', 'LEDGER_SECRET_KEY', 'PGPASSWORD'].filter((k) => k in process.env),
  functionName: context.functionName,
  awsFunctionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
  taskRoot: process.env.LAMBDA_TASK_ROOT,
});`;
  return zipSync({ 'index.js': strToU8(source) }, { mtime: new Date('2000-01-01T00:00:00Z') });
}

const sdk = (k: CreatedApiKey) =>
  new LambdaClient({ endpoint: server.url, region: 'us-east-1', credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey }, maxAttempts: 1 });

const refusal = (p: Promise<unknown>): Promise<LambdaServiceException> => refusedWith(LambdaServiceException, p);

async function counts(): Promise<{ functions: number; packages: number; changes: number; versions: number }> {
  const { rows } = await sql<{ functions: number; packages: number; changes: number; versions: number }>`
    select (select count(*)::int from ledger.functions) as functions, (select count(*)::int from ledger.code_packages) as packages,
           (select count(*)::int from ledger.changes) as changes, (select count(*)::int from ledger.function_versions) as versions`.execute(t.db);
  return rows[0]!;
}

beforeAll(async () => {
  t = await createTestDatabase();
  cacheDir = mkdtempSync(path.join(tmpdir(), 'control-plane-cache-'));
  const api = composeApi({
    db: t.db,
    instanceId: 'control-plane-test',
    logger: silent,
    functionsDir: FIXTURES,
    runtime: { poolSize: 2, codePackages: { db: t.db, cacheDir } },
    auth: { enabled: true, cacheTtlMs: 0 },
  });
  runtimes = api.runtimes;
  const app = api.app;
  server = await listen(app.fetch);
  admin = await createApiKey(t.db, { name: 'operator', scopes: ['admin', 'invoke'] });
  invoker = await createApiKey(t.db, { name: 'caller', scopes: ['invoke'] });
  client = sdk(admin);
});

afterAll(async () => {
  client?.destroy();
  await server?.close();
  await runtimes?.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('functions through the Lambda API', () => {
  it('creates a function from a zip, runs it, changes its code and configuration, and records each change', async () => {
    const zip = handlerZip('one');
    const created = await client.send(
      new CreateFunctionCommand({
        FunctionName: 'greeter',
        Runtime: 'nodejs20.x',
        Role: 'arn:aws:iam::000000000000:role/any',
        Handler: 'index.handler',
        Code: { ZipFile: zip },
        Timeout: 5,
        MemorySize: 256,
        Description: 'says hello',
        Environment: { Variables: { GREETING: 'hello' } },
      }),
    );
    expect(created.FunctionName).toBe('greeter');
    expect(created.Version).toBe('$LATEST');
    expect(created.CodeSha256).toBe(Buffer.from(sha256Hex(zip), 'hex').toString('base64'));
    expect(created.CodeSize).toBe(zip.byteLength);
    expect(created.Timeout).toBe(5);
    expect(created.Environment?.Variables).toEqual({ GREETING: 'hello' });
    expect(typeof created.LastModified).toBe('string');

    const run = await client.send(new InvokeCommand({ FunctionName: 'greeter', Payload: json({ n: 1 }) }));
    const out = fromBytes(run.Payload) as Record<string, unknown>;
    expect(run.FunctionError).toBeUndefined();
    expect(out).toMatchObject({ tag: 'one', event: { n: 1 }, greeting: 'hello', functionName: 'greeter', awsFunctionName: 'greeter' });
    // the handler's environment is Lambda's, not the server's
    expect(out['leaked']).toEqual([]);
    expect(out['taskRoot']).toBe(path.join(cacheDir, sha256Hex(zip)));

    const got = await client.send(new GetFunctionCommand({ FunctionName: 'greeter' }));
    expect(got.Configuration?.Handler).toBe('index.handler');
    expect(got.Code?.Location).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/code\/[0-9a-f]{64}\?/);
    const download = await fetch(got.Code!.Location!);
    expect(download.status).toBe(200);
    expect(sha256Hex(new Uint8Array(await download.arrayBuffer()))).toBe(sha256Hex(zip));
    // a tampered URL downloads nothing
    expect((await fetch(got.Code!.Location!.replace(/signature=[0-9a-f]/, 'signature=z'))).status).toBe(403);

    const zip2 = handlerZip('two');
    const updated = await client.send(new UpdateFunctionCodeCommand({ FunctionName: 'greeter', ZipFile: zip2, RevisionId: got.Configuration?.RevisionId }));
    expect(updated.CodeSha256).toBe(Buffer.from(sha256Hex(zip2), 'hex').toString('base64'));
    expect(fromBytes((await client.send(new InvokeCommand({ FunctionName: 'greeter', Payload: json({}) }))).Payload)).toMatchObject({ tag: 'two' });

    // a stale RevisionId: 412 and nothing written
    const before = await counts();
    const stale = await refusal(client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'greeter', Timeout: 9, RevisionId: got.Configuration?.RevisionId })));
    expect(stale.name).toBe('PreconditionFailedException');
    expect(stale.$metadata.httpStatusCode).toBe(412);
    expect(await counts()).toEqual(before);

    const reconfigured = await client.send(
      new UpdateFunctionConfigurationCommand({ FunctionName: 'greeter', Timeout: 9, Environment: { Variables: { GREETING: 'bonjour' } }, RevisionId: updated.RevisionId }),
    );
    expect(reconfigured.Timeout).toBe(9);
    expect(fromBytes((await client.send(new InvokeCommand({ FunctionName: 'greeter', Payload: json({}) }))).Payload)).toMatchObject({ greeting: 'bonjour' });

    const cfg = await client.send(new GetFunctionConfigurationCommand({ FunctionName: 'greeter' }));
    expect(cfg.RevisionId).toBe(reconfigured.RevisionId);

    const { rows } = await sql<{ action: string; actor: string; request_id: string | null; data: Record<string, unknown> }>`
      select action, actor, request_id, data from audit.changes where resource_type = 'function' and resource_name = 'greeter' order by seq`.execute(t.db);
    expect(rows.map((r) => r.action)).toEqual(['created', 'code_updated', 'config_updated']);
    expect(new Set(rows.map((r) => r.actor))).toEqual(new Set([admin.id]));
    expect(rows.every((r) => typeof r.request_id === 'string')).toBe(true);
    expect(rows[1]!.data['codeSha256']).toBe(sha256Hex(zip2));
    // environment values are recorded as digests, never as they are; the API still answers them
    const digest = (v: string) => `sha256:${createHash('sha256').update(`greeter\0GREETING\0${v}`).digest('hex')}`;
    expect(rows[0]!.data['after']).toMatchObject({ environment: { GREETING: digest('hello') } });
    expect(rows[2]!.data['before']).toMatchObject({ timeoutMs: 5000, environment: { GREETING: digest('hello') } });
    expect(rows[2]!.data['after']).toMatchObject({ timeoutMs: 9000, environment: { GREETING: digest('bonjour') } });
    const { rows: plain } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.changes
      where resource_name = 'greeter' and (data::text like '%"hello"%' or data::text like '%"bonjour"%')`.execute(t.db);
    expect(plain[0]!.n).toBe(0);
    expect(cfg.Environment?.Variables).toEqual({ GREETING: 'bonjour' });
  });

  it('GetAccountSettings: the code limits this server enforces and what is used', async () => {
    const settings = await client.send(new GetAccountSettingsCommand({}));
    expect(settings.AccountLimit).toMatchObject({ CodeSizeZipped: 52_428_800, CodeSizeUnzipped: 262_144_000, TotalCodeSize: 75 * 1024 ** 3 });
    const { rows } = await sql<{ used: string; fns: number }>`
      select (select coalesce(sum(zipped_size), 0)::text from ledger.code_packages) as used, (select count(*)::int from ledger.functions where deleted_at is null) as fns`.execute(t.db);
    expect(settings.AccountUsage).toEqual({ TotalCodeSize: Number(rows[0]!.used), FunctionCount: rows[0]!.fns });
  });

  it('lists functions a page at a time', async () => {
    for (const name of ['list-a', 'list-b', 'list-c']) {
      await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip(name) } }));
    }
    const seen: string[] = [];
    let marker: string | undefined;
    let pages = 0;
    do {
      const page = await client.send(new ListFunctionsCommand({ MaxItems: 2, ...(marker ? { Marker: marker } : {}) }));
      expect(page.Functions!.length).toBeLessThanOrEqual(2);
      seen.push(...page.Functions!.map((f) => f.FunctionName!));
      marker = page.NextMarker;
      pages += 1;
    } while (marker && pages < 10);
    expect(seen.filter((n) => n.startsWith('list-'))).toEqual(['list-a', 'list-b', 'list-c']);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('refuses bad input with Lambda error types and writes nothing', async () => {
    await client.send(new CreateFunctionCommand({ FunctionName: 'taken', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('t') } }));
    const before = await counts();
    const cases: [() => Promise<unknown>, string, number][] = [
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'taken', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('x') } })), 'ResourceConflictException', 409],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'badzip', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: strToU8('not a zip') } })), 'InvalidParameterValueException', 400],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'slip', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: zipSync({ '../evil.js': strToU8('x') }) } })), 'InvalidParameterValueException', 400],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'py', Runtime: 'python3.12', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('p') } })), 'InvalidParameterValueException', 400],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'slow', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Timeout: 901, Code: { ZipFile: handlerZip('s') } })), 'InvalidParameterValueException', 400],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'env', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Environment: { Variables: { AWS_REGION: 'x' } }, Code: { ZipFile: handlerZip('e') } })), 'InvalidParameterValueException', 400],
      [() => client.send(new CreateFunctionCommand({ FunctionName: 'bad name!', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('n') } })), 'InvalidParameterValueException', 400],
      [() => client.send(new UpdateFunctionCodeCommand({ FunctionName: 'missing', ZipFile: handlerZip('m') })), 'ResourceNotFoundException', 404],
      [() => client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'taken', MemorySize: 64 })), 'InvalidParameterValueException', 400],
      [() => client.send(new GetFunctionCommand({ FunctionName: 'missing' })), 'ResourceNotFoundException', 404],
      [() => client.send(new GetFunctionCommand({ FunctionName: 'taken', Qualifier: '7' })), 'ResourceNotFoundException', 404],
      [() => sdk(invoker).send(new CreateFunctionCommand({ FunctionName: 'nokey', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('k') } })), 'AccessDeniedException', 403],
      [() => sdk(invoker).send(new ListFunctionsCommand({})), 'AccessDeniedException', 403],
    ];
    for (const [p, name, status] of cases) {
      const e = await refusal(p());
      expect({ name: e.name, status: e.$metadata.httpStatusCode }).toEqual({ name, status });
    }
    expect(await counts()).toEqual(before);
  });
});

describe('versions and aliases', () => {
  it('publishes versions and splits an alias 90/10 between them, recording the alias and the version run', async () => {
    await client.send(new CreateFunctionCommand({ FunctionName: 'split', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('v-one') }, Publish: true }));
    const again = await client.send(new PublishVersionCommand({ FunctionName: 'split' }));
    const v1 = Number(again.Version); // nothing changed: the same version
    await client.send(new UpdateFunctionCodeCommand({ FunctionName: 'split', ZipFile: handlerZip('v-two') }));
    const v2 = Number((await client.send(new PublishVersionCommand({ FunctionName: 'split', Description: 'second' }))).Version);
    expect(v2).toBeGreaterThan(v1);
    const versions = await client.send(new ListVersionsByFunctionCommand({ FunctionName: 'split' }));
    expect(versions.Versions!.map((v) => v.Version)).toEqual(['$LATEST', String(v1), String(v2)]);

    const alias = await client.send(
      new CreateAliasCommand({ FunctionName: 'split', Name: 'live', FunctionVersion: String(v1), RoutingConfig: { AdditionalVersionWeights: { [String(v2)]: 0.1 } } }),
    );
    expect(alias.AliasArn).toMatch(/:function:split:live$/);
    expect((await client.send(new GetAliasCommand({ FunctionName: 'split', Name: 'live' }))).RoutingConfig?.AdditionalVersionWeights).toEqual({ [String(v2)]: 0.1 });

    const n = 300;
    const executed = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await client.send(new InvokeCommand({ FunctionName: 'split:live', Payload: json({ i }) }));
      const tag = (fromBytes(r.Payload) as { tag: string }).tag;
      expect(tag).toBe(r.ExecutedVersion === String(v1) ? 'v-one' : 'v-two');
      executed.set(r.ExecutedVersion!, (executed.get(r.ExecutedVersion!) ?? 0) + 1);
    }
    // 10% of 300: mean 30, sd 5.2; [10, 55] is beyond 3.8 sd either side
    const second = executed.get(String(v2)) ?? 0;
    expect(second).toBeGreaterThanOrEqual(10);
    expect(second).toBeLessThanOrEqual(55);
    expect((executed.get(String(v1)) ?? 0) + second).toBe(n);

    const { rows } = await sql<{ alias: string; version: number; n: number }>`
      select data ->> 'alias' as alias, (data ->> 'functionVersion')::int as version, count(*)::int as n
      from ledger.events where type = 'accepted' and data ->> 'functionName' = 'split' group by 1, 2 order by 2`.execute(t.db);
    expect(rows).toEqual([...executed.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).map(([v, c]) => ({ alias: 'live', version: Number(v), n: c })));

    // moving all traffic: a stale revision is refused, the current one moves it
    const stale = await refusal(client.send(new UpdateAliasCommand({ FunctionName: 'split', Name: 'live', FunctionVersion: String(v2), RevisionId: '999' })));
    expect(stale.name).toBe('PreconditionFailedException');
    const moved = await client.send(new UpdateAliasCommand({ FunctionName: 'split', Name: 'live', FunctionVersion: String(v2), RoutingConfig: { AdditionalVersionWeights: {} }, RevisionId: alias.RevisionId }));
    expect(moved.FunctionVersion).toBe(String(v2));
    expect((await client.send(new ListAliasesCommand({ FunctionName: 'split' }))).Aliases!.map((a) => a.Name)).toEqual(['live']);
    const r = await client.send(new InvokeCommand({ FunctionName: 'split', Qualifier: 'live', Payload: json({}) }));
    expect(r.ExecutedVersion).toBe(String(v2));

    const history = await sql<{ resource_type: string; action: string; data: Record<string, unknown> }>`
      select resource_type, action, data from audit.changes where resource_type = 'alias' and resource_name = 'split:live' order by seq`.execute(t.db);
    expect(history.rows.map((h) => h.action)).toEqual(['created', 'updated']);
    expect(history.rows[1]!.data['before']).toMatchObject({ additionalWeights: { [String(v2)]: 0.1 } });

    const unknown = await refusal(client.send(new InvokeCommand({ FunctionName: 'split:nope', Payload: json({}) })));
    expect(unknown.name).toBe('ResourceNotFoundException');
  }, 180_000); // 300 sync invokes: generous on a loaded machine
});

describe('handlers written for Lambda run unmodified', () => {
  it('TypeScript with @types/aws-lambda, callback style, ES modules in a subdirectory: context and environment as Lambda gives them', async () => {
    const packed = await packCodePackage(LAMBDA_HANDLERS);
    const create = (name: string, handler: string) =>
      client.send(
        new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs22.x', Role: 'r', Handler: handler, MemorySize: 512, Environment: { Variables: { MODE: 'test' } }, Code: { ZipFile: packed.zip } }),
      );
    await create('typed', 'typed.handler');
    await create('callback', 'callback.handler');
    await create('esm', 'src/app.main');

    const typed = await client.send(new InvokeCommand({ FunctionName: 'typed', Payload: json({ name: 'Ada' }) }));
    expect(typed.FunctionError, new TextDecoder().decode(typed.Payload)).toBeUndefined();
    const out = fromBytes(typed.Payload) as Record<string, unknown>;
    // invoked without a qualifier: Lambda's `$LATEST`, a string, and an ARN without a qualifier
    expect(out).toMatchObject({
      hello: 'Ada',
      functionName: 'typed',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:typed',
      memoryLimitInMB: '512',
      logGroupName: '/aws/lambda/typed',
      remaining: true,
      callbackWaitsForEmptyEventLoop: true,
      env: {
        AWS_LAMBDA_FUNCTION_NAME: 'typed',
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512',
        AWS_REGION: 'us-east-1',
        LAMBDA_TASK_ROOT: path.join(cacheDir, packed.sha256),
        _HANDLER: 'typed.handler',
        MODE: 'test',
      },
      serverSecrets: [],
    });
    expect(out['awsRequestId']).toMatch(/^[0-9a-f-]{36}$/);

    const cb = await client.send(new InvokeCommand({ FunctionName: 'callback', Payload: json({ n: 1 }) }));
    expect(fromBytes(cb.Payload)).toEqual({ callback: true, event: { n: 1 } });
    const esm = await client.send(new InvokeCommand({ FunctionName: 'esm', Payload: json({ n: 2 }) }));
    expect(fromBytes(esm.Payload)).toEqual({ esm: true, event: { n: 2 } });

    // a handler the package does not have: Lambda's Runtime.HandlerNotFound, as an outcome
    await create('missing-handler', 'nope.handler');
    const missing = await client.send(new InvokeCommand({ FunctionName: 'missing-handler', Payload: json({}) }));
    expect(missing.FunctionError).toBe('Unhandled');
    expect(fromBytes(missing.Payload)).toMatchObject({ errorType: 'Runtime.HandlerNotFound' });
  });
});

describe('the version and qualifier a handler sees', () => {
  it('sync and async: $LATEST unqualified, the number through name:N, the alias in invokedFunctionArn through name:alias', async () => {
    const packed = await packCodePackage(LAMBDA_HANDLERS);
    await client.send(new CreateFunctionCommand({ FunctionName: 'qualified', Runtime: 'nodejs22.x', Role: 'r', Handler: 'typed.handler', Code: { ZipFile: packed.zip }, Publish: true }));
    const v = (await client.send(new ListVersionsByFunctionCommand({ FunctionName: 'qualified' }))).Versions!.at(-1)!.Version!;
    expect(v).toMatch(/^\d+$/);
    await client.send(new CreateAliasCommand({ FunctionName: 'qualified', Name: 'live', FunctionVersion: v }));
    const base = 'arn:aws:lambda:us-east-1:000000000000:function:qualified';
    const expected: [string, string, string][] = [
      ['qualified', '$LATEST', base],
      [`qualified:${v}`, v, `${base}:${v}`],
      ['qualified:live', v, `${base}:live`],
      [`${base}:live`, v, `${base}:live`],
    ];
    const seen = (out: Record<string, unknown>) => [out['functionVersion'], out['invokedFunctionArn'], (out['env'] as Record<string, unknown>)['AWS_LAMBDA_FUNCTION_VERSION']];
    for (const [name, version, arn] of expected) {
      const r = await client.send(new InvokeCommand({ FunctionName: name, Payload: json({}) }));
      expect(r.FunctionError, new TextDecoder().decode(r.Payload)).toBeUndefined();
      expect([name, ...seen(fromBytes(r.Payload) as Record<string, unknown>)]).toEqual([name, version, arn, version]);
    }

    // async: the worker reads how the caller named the version from the accepted event
    const ids: string[] = [];
    for (const [name] of expected) {
      const r = await client.send(new InvokeCommand({ FunctionName: name, InvocationType: 'Event', Payload: json({}) }));
      expect(r.StatusCode).toBe(202);
      ids.push(r.$metadata.requestId!);
    }
    const { rows: accepted } = await sql<{ id: string; alias: string | null; qualifier: string | null }>`
      select invocation_id::text as id, data ->> 'alias' as alias, data ->> 'qualifier' as qualifier from ledger.events
      where type = 'accepted' and invocation_id = any(${ids}::uuid[])`.execute(t.db);
    expect(ids.map((id) => accepted.find((a) => a.id === id)).map((a) => [a?.alias ?? null, a?.qualifier ?? null])).toEqual([
      [null, null],
      [null, v],
      ['live', null],
      ['live', null],
    ]);
    const worker = createWorker({ db: t.db, databaseUrl: t.ownerUrl, runtimes, logger: silent, registry: new Registry(), workerId: 'qualifier-worker', concurrency: 4, claimBatchSize: 10, pollIntervalMs: 50, listen: false });
    await worker.start();
    try {
      const results = await waitFor('the async invocations succeeded', async () => {
        const { rows } = await sql<{ id: string; result: Record<string, unknown> }>`
          select invocation_id::text as id, data -> 'result' as result from ledger.events
          where type = 'succeeded' and invocation_id = any(${ids}::uuid[])`.execute(t.db);
        return rows.length === ids.length ? rows : null;
      });
      expect(ids.map((id) => seen(results.find((r) => r.id === id)!.result))).toEqual(expected.map(([, version, arn]) => [version, arn, version]));
    } finally {
      await worker.stop();
    }
  });
});

describe('concurrency and event invoke configuration', () => {
  it('reserved concurrency 0 throttles with 429 until it is deleted', async () => {
    await client.send(new CreateFunctionCommand({ FunctionName: 'throttled', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('c') } }));
    expect((await client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'throttled', ReservedConcurrentExecutions: 0 }))).ReservedConcurrentExecutions).toBe(0);
    expect((await client.send(new GetFunctionCommand({ FunctionName: 'throttled' }))).Concurrency?.ReservedConcurrentExecutions).toBe(0);
    const e = await refusal(client.send(new InvokeCommand({ FunctionName: 'throttled', Payload: json({}) })));
    expect({ name: e.name, status: e.$metadata.httpStatusCode }).toEqual({ name: 'TooManyRequestsException', status: 429 });
    await client.send(new DeleteFunctionConcurrencyCommand({ FunctionName: 'throttled' }));
    expect((await client.send(new InvokeCommand({ FunctionName: 'throttled', Payload: json({}) }))).StatusCode).toBe(200);
  });

  it('maps an event invoke config onto the function’s retries and destinations', async () => {
    await client.send(new CreateFunctionCommand({ FunctionName: 'eic', Runtime: 'nodejs20.x', Role: 'r', Handler: 'index.handler', Code: { ZipFile: handlerZip('e') } }));
    expect((await refusal(client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'eic' })))).name).toBe('ResourceNotFoundException');
    const put = await client.send(
      new PutFunctionEventInvokeConfigCommand({
        FunctionName: 'eic',
        MaximumRetryAttempts: 0,
        MaximumEventAgeInSeconds: 120,
        DestinationConfig: { OnFailure: { Destination: 'arn:aws:lambda:us-east-1:000000000000:function:taken' } },
      }),
    );
    expect(put.LastModified).toBeInstanceOf(Date);
    expect(put.MaximumRetryAttempts).toBe(0);
    const got = await client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'eic' }));
    expect(got.DestinationConfig?.OnFailure?.Destination).toBe('arn:aws:lambda:us-east-1:000000000000:function:taken');
    const { rows } = await sql<{ config: Record<string, unknown> }>`
      select v.config from ledger.functions f join ledger.function_versions v on v.name = f.name and v.version = f.latest_version where f.name = 'eic'`.execute(t.db);
    expect(rows[0]!.config).toMatchObject({ maxRetries: 0, maxEventAgeSeconds: 120, onFailure: 'function:taken' });
    const bad = await refusal(client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'eic', MaximumRetryAttempts: 3 })));
    expect(bad.name).toBe('InvalidParameterValueException');
  });

  it('deletes a function with its aliases; it is gone from every operation', async () => {
    await client.send(new DeleteFunctionCommand({ FunctionName: 'split' }));
    expect((await refusal(client.send(new GetFunctionCommand({ FunctionName: 'split' })))).name).toBe('ResourceNotFoundException');
    expect((await refusal(client.send(new InvokeCommand({ FunctionName: 'split:live', Payload: json({}) })))).name).toBe('ResourceNotFoundException');
    expect((await refusal(client.send(new DeleteFunctionCommand({ FunctionName: 'split' })))).name).toBe('ResourceNotFoundException');
    const { rows } = await sql<{ resource_type: string; action: string }>`
      select resource_type, action from audit.changes where resource_name in ('split', 'split:live') order by position desc limit 2`.execute(t.db);
    expect(rows).toEqual([
      { resource_type: 'function', action: 'deleted' },
      { resource_type: 'alias', action: 'deleted' },
    ]);
  });
});
