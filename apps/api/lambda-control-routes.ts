// Lambda's control-plane API on the wire (docs/control-plane.md, docs/http-api.md): the
// paths and JSON shapes of `@aws-sdk/client-lambda` and `aws lambda` for functions,
// versions, aliases, concurrency and event invoke configuration. Translation only: every
// operation is one call into db/control-plane.ts, which records it in ledger.changes.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { codePackageInfo, codePackageStats, codeSha256Of, loadCodePackage, sha256FromCodeSha256, CODE_LIMITS, DEFAULT_CODE_STORAGE_BYTES } from '../../db/code/index.ts';
import { decodeCursor, encodeCursor } from '../../db/cursor.ts';
import {
  changeFunction,
  createAlias,
  createManagedFunction,
  deleteAlias,
  deleteManagedFunction,
  functionRevision,
  getAlias,
  listAliases,
  listPublishedVersions,
  publishVersion,
  updateAlias,
  isPublished,
  type Alias,
  type ChangeContext,
} from '../../db/control-plane.ts';
import { LedgerError } from '../../db/errors.ts';
import { getFunction, listFunctions, requireFunction, type FunctionConfigInput, type FunctionVersion } from '../../db/functions.ts';
import type { Db } from '../../db/schema.ts';
import { principalOf } from './auth/index.ts';
import { readBodyLimited } from './body.ts';
import { errorSide, httpErrorOf } from './errors.ts';
import { parseFunctionRef } from './function-ref.ts';

export const ACCOUNT_ID = '000000000000';
/** A 50 MB zip in base64 inside JSON, with room for the other fields. */
export const CONTROL_BODY_LIMIT = Math.ceil((CODE_LIMITS.maxZippedBytes * 4) / 3) + 1024 * 1024;
/** How long a GetFunction Code.Location stays valid. */
const CODE_URL_TTL_S = 600;

export interface ControlRoutesOptions {
  db: Db;
  logger: Logger;
  /** called after a write so this process's invoke caches forget the function */
  forget?: (name: string) => void;
  /** signs Code.Location URLs; a random key per process when absent */
  codeUrlKey?: Uint8Array;
  region?: string;
}

export const invalid = (message: string) => new LedgerError('InvalidParameter', message);

export function lambdaControlRoutes(o: ControlRoutesOptions): Hono {
  const app = new Hono();
  const db = o.db;
  const region = o.region ?? 'us-east-1';
  const codeKey = o.codeUrlKey ?? randomBytes(32);
  const arn = (name: string, qualifier?: string) => `arn:aws:lambda:${region}:${ACCOUNT_ID}:function:${name}${qualifier ? `:${qualifier}` : ''}`;
  const forget = (name: string) => o.forget?.(name);

  async function configuration(fn: FunctionVersion, version: '$LATEST' | number, revision?: number): Promise<Record<string, unknown>> {
    const info = fn.codeSha256 ? await codePackageInfo(db, fn.codeSha256) : null;
    return {
      FunctionName: fn.name,
      FunctionArn: arn(fn.name, version === '$LATEST' ? undefined : String(version)),
      Runtime: fn.lambdaRuntime ?? (fn.runtime === 'MODULE' ? 'nodejs20.x' : undefined),
      Role: fn.role ?? `arn:aws:iam::${ACCOUNT_ID}:role/invoke-ledger`,
      Handler: fn.handler ?? undefined,
      CodeSize: info?.zippedSize ?? 0,
      CodeSha256: fn.codeSha256 ? codeSha256Of(fn.codeSha256) : '',
      Description: fn.description,
      Timeout: Math.ceil(fn.timeoutMs / 1000),
      MemorySize: fn.memoryMb,
      LastModified: lambdaTime(fn.createdAt),
      Version: String(version),
      Environment: { Variables: fn.environment },
      RevisionId: String(revision ?? (await functionRevision(db, fn.name))),
      State: 'Active',
      LastUpdateStatus: 'Successful',
      PackageType: 'Zip',
      Architectures: ['x86_64'],
    };
  }

  /** `name`, `name:N`, `name:alias`, ARNs; the version and the Version field it shows. */
  async function resolve(raw: string, qualifier: string | undefined): Promise<{ fn: FunctionVersion; version: '$LATEST' | number }> {
    const ref = parseFunctionRef(raw, qualifier);
    if (ref.alias !== undefined) {
      const alias = await getAlias(db, ref.name, ref.alias);
      return { fn: await requireFunction(db, ref.name, alias.functionVersion), version: alias.functionVersion };
    }
    if (ref.version === undefined) return { fn: await requireFunction(db, ref.name), version: '$LATEST' };
    if (!(await isPublished(db, ref.name, ref.version))) throw new LedgerError('FunctionNotFound', `Function not found: ${arn(ref.name, String(ref.version))}`);
    return { fn: await requireFunction(db, ref.name, ref.version), version: ref.version };
  }

  const nameOnly = (raw: string): string => {
    const ref = parseFunctionRef(raw);
    if (ref.qualifier !== null) throw invalid(`The function name must not carry a qualifier here: ${raw}`);
    return ref.name;
  };

  // ---- functions ----

  app.get('/2015-03-31/functions', (c) => listFunctionsRoute(c));
  app.get('/2015-03-31/functions/', (c) => listFunctionsRoute(c));
  const listFunctionsRoute = (c: Context) =>
    answer(c, o.logger, async () => {
      const all = await listFunctions(db);
      const page = paginate(all, (f) => f.name, c.req.query('Marker'), c.req.query('MaxItems'));
      const Functions = await Promise.all(page.items.map((f) => configuration(f, '$LATEST')));
      return { status: 200, body: { Functions, ...(page.next ? { NextMarker: page.next } : {}) } };
    });

  const createRoute = (c: Context) =>
    answer(c, o.logger, async (ctx) => {
      const body = await jsonBody(c, CONTROL_BODY_LIMIT);
      const name = nameOnly(requiredString(body, 'FunctionName'));
      const code = objectField(body, 'Code') ?? {};
      for (const k of ['S3Bucket', 'S3Key', 'S3ObjectVersion', 'ImageUri']) {
        if (code[k] !== undefined) throw invalid(`Code.${k} is not supported: upload the code as Code.ZipFile`);
      }
      if (body['PackageType'] !== undefined && body['PackageType'] !== 'Zip') throw invalid('PackageType must be Zip');
      const zip = zipOf(code['ZipFile']);
      if (!zip) throw invalid('Code.ZipFile is required');
      const handler = requiredString(body, 'Handler');
      const config = {
        runtime: 'MODULE' as const,
        isolation: 'thread' as const,
        handler: handlerOf(handler),
        lambdaRuntime: runtimeOf(requiredString(body, 'Runtime')),
        role: optionalString(body, 'Role', 2048) ?? null,
        ...configFields(body),
      } satisfies FunctionConfigInput;
      const publish = optionalBoolean(body, 'Publish') ?? false;
      const created = await createManagedFunction(db, ctx, name, config, { zip }, { publish });
      forget(name);
      const shown = created.published === null ? created.fn : await requireFunction(db, name, created.published);
      return { status: 201, body: await configuration(shown, created.published ?? '$LATEST', created.revision) };
    });
  app.post('/2015-03-31/functions', createRoute);
  app.post('/2015-03-31/functions/', createRoute);

  app.get('/2015-03-31/functions/:FunctionName', (c) =>
    answer(c, o.logger, async () => {
      const { fn, version } = await resolve(c.req.param('FunctionName'), c.req.query('Qualifier'));
      const Configuration = await configuration(fn, version);
      const reserved = (await getFunction(db, fn.name))?.reservedConcurrency ?? null;
      return {
        status: 200,
        body: {
          Configuration,
          ...(fn.codeSha256 ? { Code: { RepositoryType: 'S3', Location: codeLocation(c, codeKey, fn.name, fn.codeSha256) } } : {}),
          ...(reserved !== null ? { Concurrency: { ReservedConcurrentExecutions: reserved } } : {}),
        },
      };
    }),
  );

  app.get('/2015-03-31/functions/:FunctionName/configuration', (c) =>
    answer(c, o.logger, async () => {
      const { fn, version } = await resolve(c.req.param('FunctionName'), c.req.query('Qualifier'));
      return { status: 200, body: await configuration(fn, version) };
    }),
  );

  app.put('/2015-03-31/functions/:FunctionName/code', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, CONTROL_BODY_LIMIT);
      for (const k of ['S3Bucket', 'S3Key', 'S3ObjectVersion', 'ImageUri']) {
        if (body[k] !== undefined) throw invalid(`${k} is not supported: upload the code as ZipFile`);
      }
      const zip = zipOf(body['ZipFile']);
      if (!zip) throw invalid('ZipFile is required');
      if (optionalBoolean(body, 'DryRun')) throw invalid('DryRun is not supported');
      const expectedRevision = revisionOf(body['RevisionId']);
      const changed = await changeFunction(db, ctx, name, 'code_updated', {}, { code: { zip }, expectedRevision });
      forget(name);
      if (optionalBoolean(body, 'Publish')) {
        const p = await publishVersion(db, ctx, name, {});
        return { status: 200, body: await configuration(await requireFunction(db, name, p.version), p.version, p.revision) };
      }
      return { status: 200, body: await configuration(changed.fn, '$LATEST', changed.revision) };
    }),
  );

  app.put('/2015-03-31/functions/:FunctionName/configuration', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, 1024 * 1024);
      const patch: Partial<FunctionConfigInput> = { ...configFields(body) };
      if (body['Handler'] !== undefined) patch.handler = handlerOf(requiredString(body, 'Handler'));
      if (body['Runtime'] !== undefined) patch.lambdaRuntime = runtimeOf(requiredString(body, 'Runtime'));
      if (body['Role'] !== undefined) patch.role = optionalString(body, 'Role', 2048) ?? null;
      const changed = await changeFunction(db, ctx, name, 'config_updated', patch, { expectedRevision: revisionOf(body['RevisionId']) });
      forget(name);
      return { status: 200, body: await configuration(changed.fn, '$LATEST', changed.revision) };
    }),
  );

  app.delete('/2015-03-31/functions/:FunctionName', (c) =>
    answer(c, o.logger, async (ctx) => {
      const ref = parseFunctionRef(c.req.param('FunctionName'), c.req.query('Qualifier'));
      if (ref.qualifier !== null) throw invalid('Deleting one version or alias of a function is not supported: DeleteFunction deletes the function');
      await deleteManagedFunction(db, ctx, ref.name);
      forget(ref.name);
      return { status: 204 };
    }),
  );

  // ---- versions ----

  app.post('/2015-03-31/functions/:FunctionName/versions', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, 1024 * 1024);
      const codeSha = optionalString(body, 'CodeSha256', 128);
      const p = await publishVersion(db, ctx, name, {
        codeSha256: codeSha === undefined ? undefined : sha256FromCodeSha256(codeSha),
        description: optionalString(body, 'Description', 256),
        expectedRevision: revisionOf(body['RevisionId']),
      });
      forget(name);
      const fn = await requireFunction(db, name, p.version);
      return { status: 201, body: { ...(await configuration(fn, p.version, p.revision)) } };
    }),
  );

  app.get('/2015-03-31/functions/:FunctionName/versions', (c) =>
    answer(c, o.logger, async () => {
      const name = nameOnly(c.req.param('FunctionName'));
      const latest = await requireFunction(db, name);
      const published = await listPublishedVersions(db, name);
      const all: { key: string; fn: FunctionVersion; version: '$LATEST' | number; description?: string }[] = [
        { key: '$LATEST', fn: latest, version: '$LATEST' },
        ...published.map((p) => ({ key: String(p.version).padStart(10, '0'), fn: p.fn, version: p.version, description: p.description })),
      ];
      const page = paginate(all, (v) => v.key, c.req.query('Marker'), c.req.query('MaxItems'));
      const Versions = await Promise.all(
        page.items.map(async (v) => ({ ...(await configuration(v.fn, v.version)), ...(v.description ? { Description: v.description } : {}) })),
      );
      return { status: 200, body: { Versions, ...(page.next ? { NextMarker: page.next } : {}) } };
    }),
  );

  // ---- aliases ----

  const aliasBody = (a: Alias) => ({
    AliasArn: arn(a.functionName, a.name),
    Name: a.name,
    FunctionVersion: String(a.functionVersion),
    Description: a.description,
    ...(Object.keys(a.additionalWeights).length > 0 ? { RoutingConfig: { AdditionalVersionWeights: a.additionalWeights } } : {}),
    RevisionId: String(a.revision),
  });

  app.post('/2015-03-31/functions/:FunctionName/aliases', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, 1024 * 1024);
      const alias = await createAlias(db, ctx, name, requiredString(body, 'Name'), {
        functionVersion: aliasVersionOf(requiredString(body, 'FunctionVersion')),
        additionalWeights: weightsOf(body['RoutingConfig']),
        description: optionalString(body, 'Description', 256),
      });
      forget(name);
      return { status: 201, body: aliasBody(alias) };
    }),
  );

  app.get('/2015-03-31/functions/:FunctionName/aliases', (c) =>
    answer(c, o.logger, async () => {
      const name = nameOnly(c.req.param('FunctionName'));
      await requireFunction(db, name);
      const v = c.req.query('FunctionVersion');
      const aliases = await listAliases(db, name, v ? aliasVersionOf(v) : undefined);
      const page = paginate(aliases, (a) => a.name, c.req.query('Marker'), c.req.query('MaxItems'));
      return { status: 200, body: { Aliases: page.items.map(aliasBody), ...(page.next ? { NextMarker: page.next } : {}) } };
    }),
  );

  app.get('/2015-03-31/functions/:FunctionName/aliases/:Name', (c) =>
    answer(c, o.logger, async () => {
      const name = nameOnly(c.req.param('FunctionName'));
      return { status: 200, body: aliasBody(await getAlias(db, name, c.req.param('Name'))) };
    }),
  );

  app.put('/2015-03-31/functions/:FunctionName/aliases/:Name', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, 1024 * 1024);
      const v = optionalString(body, 'FunctionVersion', 32);
      const alias = await updateAlias(db, ctx, name, c.req.param('Name'), {
        functionVersion: v === undefined ? undefined : aliasVersionOf(v),
        additionalWeights: body['RoutingConfig'] === undefined ? undefined : weightsOf(body['RoutingConfig']),
        description: optionalString(body, 'Description', 256),
        expectedRevision: revisionOf(body['RevisionId']),
      });
      forget(name);
      return { status: 200, body: aliasBody(alias) };
    }),
  );

  app.delete('/2015-03-31/functions/:FunctionName/aliases/:Name', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      await requireFunction(db, name);
      await deleteAlias(db, ctx, name, c.req.param('Name'));
      forget(name);
      return { status: 204 };
    }),
  );

  // ---- concurrency ----

  app.put('/2017-10-31/functions/:FunctionName/concurrency', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      const body = await jsonBody(c, 64 * 1024);
      const n = body['ReservedConcurrentExecutions'];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 100_000) {
        throw invalid('ReservedConcurrentExecutions must be an integer from 0 to 100000');
      }
      await changeFunction(db, ctx, name, 'concurrency_set', { reservedConcurrency: n });
      forget(name);
      return { status: 200, body: { ReservedConcurrentExecutions: n } };
    }),
  );
  app.get('/2019-09-30/functions/:FunctionName/concurrency', (c) =>
    answer(c, o.logger, async () => {
      const fn = await requireFunction(db, nameOnly(c.req.param('FunctionName')));
      return { status: 200, body: fn.reservedConcurrency === null ? {} : { ReservedConcurrentExecutions: fn.reservedConcurrency } };
    }),
  );
  app.delete('/2017-10-31/functions/:FunctionName/concurrency', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(c.req.param('FunctionName'));
      await changeFunction(db, ctx, name, 'concurrency_deleted', { reservedConcurrency: null });
      forget(name);
      return { status: 204 };
    }),
  );

  // ---- event invoke config: the function's retries, event age and destinations ----

  const eventInvokeBody = (fn: FunctionVersion) => ({
    LastModified: fn.eventInvokeConfigAt ?? Math.floor(fn.createdAt.getTime() / 1000),
    FunctionArn: arn(fn.name, '$LATEST'),
    MaximumRetryAttempts: fn.maxRetries,
    MaximumEventAgeInSeconds: fn.maxEventAgeSeconds,
    DestinationConfig: {
      OnSuccess: fn.onSuccess ? { Destination: destinationArn(fn.onSuccess, arn) } : {},
      OnFailure: fn.onFailure ? { Destination: destinationArn(fn.onFailure, arn) } : {},
    },
  });
  const putEventInvoke = (mode: 'put' | 'update') => (c: Context) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(eventInvokeTarget(c));
      const body = await jsonBody(c, 64 * 1024);
      const patch: Partial<FunctionConfigInput> = { eventInvokeConfigAt: Math.floor(Date.now() / 1000) };
      // Put replaces the whole configuration: what it leaves out goes back to the defaults
      if (mode === 'put') Object.assign(patch, { maxRetries: 2, maxEventAgeSeconds: 21_600, onSuccess: null, onFailure: null });
      if (body['MaximumRetryAttempts'] !== undefined) patch.maxRetries = intIn(body['MaximumRetryAttempts'], 'MaximumRetryAttempts', 0, 2);
      if (body['MaximumEventAgeInSeconds'] !== undefined) patch.maxEventAgeSeconds = intIn(body['MaximumEventAgeInSeconds'], 'MaximumEventAgeInSeconds', 60, 21_600);
      const dc = objectField(body, 'DestinationConfig');
      if (dc) {
        for (const [field, key] of [['OnSuccess', 'onSuccess'], ['OnFailure', 'onFailure']] as const) {
          const d = dc[field];
          if (d === undefined) continue;
          const dest = typeof d === 'object' && d !== null ? (d as Record<string, unknown>)['Destination'] : undefined;
          patch[key] = dest === undefined || dest === null || dest === '' ? null : destinationOf(dest, region);
        }
      }
      const changed = await changeFunction(db, ctx, name, mode === 'put' ? 'event_invoke_config_put' : 'event_invoke_config_updated', patch);
      forget(name);
      return { status: 200, body: eventInvokeBody(changed.fn) };
    });
  app.put('/2019-09-25/functions/:FunctionName/event-invoke-config', putEventInvoke('put'));
  app.post('/2019-09-25/functions/:FunctionName/event-invoke-config', putEventInvoke('update'));
  app.get('/2019-09-25/functions/:FunctionName/event-invoke-config', (c) =>
    answer(c, o.logger, async () => {
      const name = nameOnly(eventInvokeTarget(c));
      const fn = await requireFunction(db, name);
      if (fn.eventInvokeConfigAt === null) throw new LedgerError('FunctionNotFound', `The function ${arn(name)} doesn't have an EventInvokeConfig`);
      return { status: 200, body: eventInvokeBody(fn) };
    }),
  );
  app.delete('/2019-09-25/functions/:FunctionName/event-invoke-config', (c) =>
    answer(c, o.logger, async (ctx) => {
      const name = nameOnly(eventInvokeTarget(c));
      const fn = await requireFunction(db, name);
      if (fn.eventInvokeConfigAt === null) throw new LedgerError('FunctionNotFound', `The function ${arn(name)} doesn't have an EventInvokeConfig`);
      await changeFunction(db, ctx, name, 'event_invoke_config_deleted', {
        eventInvokeConfigAt: null,
        maxRetries: 2,
        maxEventAgeSeconds: 21_600,
        onSuccess: null,
        onFailure: null,
      });
      forget(name);
      return { status: 204 };
    }),
  );

  // ---- GetAccountSettings: this server's real code limits and usage; it has no account-wide concurrency limit ----

  app.get('/2016-08-19/account-settings', (c) =>
    answer(c, o.logger, async () => {
      const stats = await codePackageStats(db);
      const functions = await listFunctions(db);
      return {
        status: 200,
        body: {
          AccountLimit: {
            TotalCodeSize: DEFAULT_CODE_STORAGE_BYTES,
            CodeSizeZipped: CODE_LIMITS.maxZippedBytes,
            CodeSizeUnzipped: CODE_LIMITS.maxUnzippedBytes,
          },
          AccountUsage: { TotalCodeSize: stats.zippedBytes, FunctionCount: functions.length },
        },
      };
    }),
  );

  // ---- Code.Location: the zip, for whoever holds a URL GetFunction signed ----

  app.get('/code/:sha256', async (c) => {
    const sha = c.req.param('sha256');
    const fn = c.req.query('function') ?? '';
    const expires = c.req.query('expires') ?? '';
    const signature = c.req.query('signature') ?? '';
    const expected = signCode(codeKey, fn, sha, expires);
    const ok =
      /^[0-9a-f]{64}$/.test(sha) &&
      /^\d{1,12}$/.test(expires) &&
      Number(expires) * 1000 >= Date.now() &&
      signature.length === expected.length &&
      timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
    if (!ok) return c.json({ error: { code: 'Forbidden', message: 'This code URL is not valid or has expired: call GetFunction for a new one' } }, 403);
    try {
      const zip = await loadCodePackage(db, sha);
      return c.body(new Uint8Array(zip), 200, { 'content-type': 'application/zip', 'content-disposition': `attachment; filename="${fn}.zip"` });
    } catch (e) {
      const err = httpErrorOf(e);
      return c.json({ error: { code: err.code, message: err.message } }, err.status);
    }
  });

  return app;
}

/** Put/Get/DeleteFunctionEventInvokeConfig take a Qualifier; only the function itself ($LATEST) has one here. */
function eventInvokeTarget(c: Context): string {
  const q = c.req.query('Qualifier');
  if (q !== undefined && q !== '' && q !== '$LATEST') throw invalid('An event invoke configuration applies to the function ($LATEST); a Qualifier naming a version or alias is not supported');
  return c.req.param('FunctionName') ?? '';
}

function signCode(key: Uint8Array, fn: string, sha: string, expires: string): string {
  return createHmac('sha256', key).update(`${fn}\n${sha}\n${expires}`).digest('hex');
}

function codeLocation(c: Context, key: Uint8Array, fn: string, sha: string): string {
  const expires = String(Math.floor(Date.now() / 1000) + CODE_URL_TTL_S);
  const origin = new URL(c.req.url).origin;
  const q = new URLSearchParams({ function: fn, expires, signature: signCode(key, fn, sha, expires) });
  return `${origin}/code/${sha}?${q.toString()}`;
}

/** Lambda's FunctionConfiguration.LastModified: `2024-01-31T12:00:00.000+0000`. */
export function lambdaTime(d: Date): string {
  return d.toISOString().replace('Z', '+0000');
}

interface RouteAnswer {
  status: 200 | 201 | 202 | 204;
  body?: unknown;
}

/** Runs a route with its change context; every answer carries x-amzn-RequestId, errors Lambda's shape. */
export async function answer(c: Context, logger: Logger, run: (ctx: ChangeContext) => Promise<RouteAnswer>): Promise<Response> {
  const requestId = randomUUID();
  const ctx: ChangeContext = { actor: principalOf(c.req.raw)?.keyId ?? 'anonymous', requestId };
  try {
    const a = await run(ctx);
    const headers = { 'x-amzn-RequestId': requestId };
    if (a.status === 204 || a.body === undefined) return c.body(null, a.status === 204 ? 204 : a.status, headers);
    return c.body(JSON.stringify(a.body), a.status, { ...headers, 'content-type': 'application/json' });
  } catch (e) {
    const err = httpErrorOf(e);
    if (err.status >= 500) logger.error({ err: e }, 'control-plane request failed');
    const body = JSON.stringify({ Type: errorSide(err.status), message: err.message, ...err.fields });
    return c.body(body, err.status, { ...err.headers, 'content-type': 'application/json', 'x-amzn-ErrorType': err.awsType, 'x-amzn-RequestId': requestId });
  }
}

export async function jsonBody(c: Context, limit: number): Promise<Record<string, unknown>> {
  const bytes = await readBodyLimited(c, limit);
  if (bytes.byteLength === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new LedgerError('InvalidRequestContent', 'Could not parse request body into json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LedgerError('InvalidRequestContent', 'The request body must be a JSON object');
  return value as Record<string, unknown>;
}

export function requiredString(body: Record<string, unknown>, key: string): string {
  const v = body[key];
  if (typeof v !== 'string' || v === '') throw invalid(`1 validation error detected: Value at '${lower(key)}' failed to satisfy constraint: Member must not be null`);
  return v;
}

function optionalString(body: Record<string, unknown>, key: string, max: number): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${key} must be a string`);
  if (v.length > max) throw invalid(`1 validation error detected: Value at '${lower(key)}' failed to satisfy constraint: Member must have length less than or equal to ${max}`);
  return v;
}

export function optionalBoolean(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(`${key} must be true or false`);
  return v;
}

export function objectField(body: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`${key} must be an object`);
  return v as Record<string, unknown>;
}

const lower = (k: string) => k.charAt(0).toLowerCase() + k.slice(1);

export function intIn(v: unknown, key: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`1 validation error detected: Value '${String(v)}' at '${lower(key)}' failed to satisfy constraint: Member must have value between ${min} and ${max}`);
  }
  return v;
}

/** ZipFile as the SDK and the CLI send it: base64 in the JSON body. */
function zipOf(v: unknown): Buffer | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 === 1) throw invalid('ZipFile must be base64');
  const zip = Buffer.from(v, 'base64');
  if (zip.byteLength > CODE_LIMITS.maxZippedBytes) {
    throw new LedgerError('CodePackageTooLarge', `Unzipped size must be smaller than ${CODE_LIMITS.maxUnzippedBytes} bytes and zipped size must be smaller than ${CODE_LIMITS.maxZippedBytes} bytes`);
  }
  return zip;
}

/** Lambda's `file.export` (`index.handler`, `src/app.main`). */
function handlerOf(h: string): string {
  const base = h.slice(h.lastIndexOf('/') + 1);
  const dot = base.indexOf('.');
  if (h.length > 128 || /\s/.test(h) || dot <= 0 || dot === base.length - 1) {
    throw invalid(`Handler '${h}' must be file.export, such as index.handler or src/app.main`);
  }
  return h;
}

/** Only Node.js runs here; other runtimes are refused rather than accepted and never run. */
function runtimeOf(r: string): string {
  if (!/^nodejs\d+\.x$/.test(r)) throw invalid(`Runtime ${r} is not supported: this server runs Node.js handlers (nodejs18.x, nodejs20.x, nodejs22.x, …)`);
  return r;
}

const RESERVED_ENV = /^(AWS_|LAMBDA_|_HANDLER$|_X_AMZN_TRACE_ID$|TZ$)/;

/** Timeout, MemorySize, Description, Environment: present fields only. */
function configFields(body: Record<string, unknown>): Partial<FunctionConfigInput> {
  const out: Partial<FunctionConfigInput> = {};
  if (body['Timeout'] !== undefined) out.timeoutMs = intIn(body['Timeout'], 'Timeout', 1, 900) * 1000;
  if (body['MemorySize'] !== undefined) out.memoryMb = intIn(body['MemorySize'], 'MemorySize', 128, 10_240);
  if (body['Description'] !== undefined) out.description = optionalString(body, 'Description', 256) ?? '';
  const env = objectField(body, 'Environment');
  if (env) {
    const vars = env['Variables'] ?? {};
    if (typeof vars !== 'object' || vars === null || Array.isArray(vars)) throw invalid('Environment.Variables must be an object');
    const entries = Object.entries(vars as Record<string, unknown>);
    for (const [k, v] of entries) {
      if (!/^[a-zA-Z]\w+$/.test(k)) throw invalid(`Environment variable name '${k}' must match [a-zA-Z][a-zA-Z0-9_]+`);
      if (RESERVED_ENV.test(k)) throw invalid(`Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: ${k}`);
      if (typeof v !== 'string') throw invalid(`Environment variable ${k} must be a string`);
    }
    if (Buffer.byteLength(JSON.stringify(vars)) > 4096) throw invalid('Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit');
    out.environment = Object.fromEntries(entries) as Record<string, string>;
  }
  return out;
}

function revisionOf(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || !/^\d{1,9}$/.test(v)) {
    throw new LedgerError('RevisionConflict', 'The Revision Id provided does not match the latest Revision Id. Call the Get operation to get the latest Revision Id');
  }
  return Number(v);
}

function aliasVersionOf(v: string): number {
  if (v === '$LATEST') throw invalid('An alias here points at a published version (PublishVersion first), not $LATEST');
  if (!/^[1-9]\d{0,8}$/.test(v)) throw invalid(`FunctionVersion '${v}' is not a version number`);
  return Number(v);
}

function weightsOf(routing: unknown): Record<string, number> {
  if (routing === undefined || routing === null) return {};
  if (typeof routing !== 'object' || Array.isArray(routing)) throw invalid('RoutingConfig must be an object');
  const w = (routing as Record<string, unknown>)['AdditionalVersionWeights'];
  if (w === undefined || w === null) return {};
  if (typeof w !== 'object' || Array.isArray(w)) throw invalid('RoutingConfig.AdditionalVersionWeights must be an object');
  return w as Record<string, number>;
}

/** A Lambda function ARN → `function:<name>`; plain `function:<name>` and http(s) URLs (this server's own destinations) pass. */
export function destinationOf(v: unknown, _region: string): string {
  if (typeof v !== 'string') throw invalid('Destination must be a string');
  const m = /^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]{1,64})(?::\$LATEST)?$/.exec(v);
  if (m) return `function:${m[1]}`;
  if (/^function:[A-Za-z0-9_-]{1,64}$/.test(v) || /^https?:\/\//.test(v)) return v;
  throw invalid(`Destination ${v} is not supported: use a Lambda function ARN (arn:aws:lambda:…:function:NAME)`);
}

export function destinationArn(d: string, arn: (name: string) => string): string {
  return d.startsWith('function:') ? arn(d.slice('function:'.length)) : d;
}

/** Lambda paging: Marker is the cursor (db/cursor.ts) of the key after which the page starts; MaxItems 1–10000 (default 50). */
export function paginate<T>(items: T[], key: (t: T) => string, marker: string | undefined, maxItems: string | undefined): { items: T[]; next: string | null } {
  let max = 50;
  if (maxItems !== undefined && maxItems !== '') {
    if (!/^\d{1,5}$/.test(maxItems) || Number(maxItems) < 1 || Number(maxItems) > 10_000) throw invalid('MaxItems must be between 1 and 10000');
    max = Number(maxItems);
  }
  const after = marker ? (decodeCursor(marker, [/^[\s\S]+$/], 'Marker')[0] as string) : null;
  items = [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const start = after !== null ? items.findIndex((t) => key(t) > after) : 0;
  const from = start === -1 ? items.length : start;
  const page = items.slice(from, from + max);
  const more = from + max < items.length;
  return { items: page, next: more && page.length > 0 ? encodeCursor([key(page[page.length - 1] as T)]) : null };
}
