// SigV4 from the unmodified AWS SDK: a created key pair is accepted, anything else is
// refused with the error the SDK raises for AWS's own refusals.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InvokeCommand, LambdaServiceException } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { countEvents, fromBytes, json, moduleFn } from '../api/helpers.ts';
import { sdkClient, startSecureApi, type SecureApi } from './helpers.ts';

const SECRET_KEY = 'test-ledger-secret-key-0123456789abcdef';

let t: TestDatabase;
let api: SecureApi;
let invokeKey: CreatedApiKey;
let auditKey: CreatedApiKey;
let sealedKey: CreatedApiKey;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  invokeKey = await createApiKey(t.db, { name: 'sdk', scopes: ['invoke'] });
  auditKey = await createApiKey(t.db, { name: 'sdk-audit', scopes: ['audit'] });
  sealedKey = await createApiKey(t.db, { name: 'sealed', scopes: ['invoke'] }, { secretKey: SECRET_KEY });
  api = await startSecureApi(t.db, { auth: { enabled: true, cacheTtlMs: 0, secretKey: SECRET_KEY } });
});

afterAll(async () => {
  await api?.close();
});

const pair = (k: CreatedApiKey) => ({ accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey });

async function refusal(credentials: { accessKeyId: string; secretAccessKey: string }, url = api.url): Promise<LambdaServiceException> {
  const client = sdkClient(url, credentials);
  const before = await countEvents(t.db);
  try {
    const err = await client.send(new InvokeCommand({ FunctionName: 'echo', Payload: json({ n: 1 }) })).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LambdaServiceException);
    expect(await countEvents(t.db)).toBe(before);
    return err as LambdaServiceException;
  } finally {
    client.destroy();
  }
}

describe('AWS SDK InvokeCommand with an API key pair', () => {
  it('is accepted with the key id and its SigV4 secret', async () => {
    const client = sdkClient(api.url, pair(invokeKey));
    try {
      const out = await client.send(new InvokeCommand({ FunctionName: 'echo', Payload: json({ signed: true }) }));
      expect(out.StatusCode).toBe(200);
      expect(fromBytes(out.Payload)).toEqual({ signed: true });
      // a qualifier in the name: the path the SDK signs is encoded twice
      const qualified = await client.send(new InvokeCommand({ FunctionName: 'echo:1', Qualifier: '1', Payload: json({ q: 1 }) }));
      expect(fromBytes(qualified.Payload)).toEqual({ q: 1 });
      const arn = await client.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:echo', InvocationType: 'DryRun' }));
      expect(arn.StatusCode).toBe(204);
    } finally {
      client.destroy();
    }
  });

  it('works for a key whose SigV4 secret is sealed with LEDGER_SECRET_KEY', async () => {
    expect(sealedKey.sigv4SecretFormat).toBe('aes-256-gcm');
    const client = sdkClient(api.url, pair(sealedKey));
    try {
      const out = await client.send(new InvokeCommand({ FunctionName: 'echo', Payload: json({ sealed: 1 }) }));
      expect(fromBytes(out.Payload)).toEqual({ sealed: 1 });
    } finally {
      client.destroy();
    }
  });

  it('a wrong secret → 401 InvalidSignatureException', async () => {
    const s = invokeKey.secretAccessKey;
    const wrong = `${s.slice(0, -1)}${s.endsWith('x') ? 'y' : 'x'}`;
    const e = await refusal({ accessKeyId: invokeKey.accessKeyId, secretAccessKey: wrong });
    expect(e.name).toBe('InvalidSignatureException');
    expect(e.$metadata.httpStatusCode).toBe(401);
    expect(e.message).toMatch(/signature we calculated does not match/);
  });

  it('the bearer secret is not the SigV4 secret', async () => {
    const e = await refusal({ accessKeyId: invokeKey.accessKeyId, secretAccessKey: invokeKey.token });
    expect(e.name).toBe('InvalidSignatureException');
  });

  it('an unknown or revoked access key id → 401 UnrecognizedClientException', async () => {
    const unknown = await refusal({ accessKeyId: `IL${'Z'.repeat(18)}`, secretAccessKey: invokeKey.secretAccessKey });
    expect(unknown.name).toBe('UnrecognizedClientException');
    expect(unknown.$metadata.httpStatusCode).toBe(401);
    const notOurs = await refusal({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });
    expect(notOurs.name).toBe('UnrecognizedClientException');
    const doomed = await createApiKey(t.db, { scopes: ['invoke'] });
    await revokeApiKey(t.db, doomed.id);
    expect((await refusal(pair(doomed))).name).toBe('UnrecognizedClientException');
  });

  it('a valid pair without the invoke scope → 403 AccessDeniedException', async () => {
    const e = await refusal(pair(auditKey));
    expect(e.name).toBe('AccessDeniedException');
    expect(e.$metadata.httpStatusCode).toBe(403);
  });

  it('a sealed secret cannot be used by a server with another LEDGER_SECRET_KEY (refused, not crashed)', async () => {
    const other = await startSecureApi(t.db, { auth: { enabled: true, cacheTtlMs: 0, secretKey: 'a-different-server-key-0123456789abcdef' } });
    try {
      expect((await refusal(pair(sealedKey), other.url)).name).toBe('InvalidSignatureException');
      // plain-stored secrets keep working there
      const client = sdkClient(other.url, pair(invokeKey));
      expect((await client.send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'DryRun' }))).StatusCode).toBe(204);
      client.destroy();
    } finally {
      await other.close();
    }
  });

  it('a request signed more than 15 minutes ago is refused', async () => {
    const late = await startSecureApi(t.db, { auth: { enabled: true, cacheTtlMs: 0, now: () => Date.now() + 20 * 60_000 } });
    try {
      const e = await refusal(pair(invokeKey), late.url);
      expect(e.name).toBe('InvalidSignatureException');
      expect(e.message).toMatch(/^Signature expired/);
    } finally {
      await late.close();
    }
  });
});

// the Debian package's v2 CLI; an `aws` on PATH may be another (a pyenv shim of v1)
const AWS = existsSync('/usr/bin/aws') ? '/usr/bin/aws' : 'aws';
const awsCli = (() => {
  try {
    execFileSync(AWS, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!awsCli)('the AWS CLI (botocore signer), when installed', () => {
  const cli = (args: string[], secret: string) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: invokeKey.accessKeyId, AWS_SECRET_ACCESS_KEY: secret, AWS_DEFAULT_REGION: 'us-east-1' };
      delete env.AWS_PROFILE;
      delete env.AWS_SESSION_TOKEN;
      execFile(AWS, ['lambda', 'invoke', '--endpoint-url', api.url, ...args], { env }, (err, _stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });

  it('invokes with the key pair and is refused with a wrong secret', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ledger-cli-'));
    try {
      const out = path.join(dir, 'out.json');
      const payload = path.join(dir, 'payload.json');
      writeFileSync(payload, '{"cli":1}');
      // fileb:// sends the bytes as they are with CLI v1 and v2 alike
      const ok = await cli(['--function-name', 'echo:1', '--payload', `fileb://${payload}`, out], invokeKey.secretAccessKey);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ cli: 1 });
      const bad = await cli(['--function-name', 'echo', out], 'wrong-secret');
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/InvalidSignatureException/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
