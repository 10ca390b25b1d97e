// API keys in the database: what is stored (a hash, a sealed or plain SigV4 secret), what
// the app role may change, and the `keys` CLI.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { authEnabled } from '../../apps/cli/keys.ts';
import { cli } from '../helpers/cli.ts';
import { Authenticator } from '../../apps/api/auth/index.ts';
import {
  bearerSecretMatches,
  createApiKey,
  findApiKey,
  listApiKeys,
  openSigV4Secret,
  parseBearerToken,
  revokeApiKey,
} from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const SECRET_KEY = 'keys-test-secret-key-0123456789abcdef!';
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});


describe('stored keys', () => {
  it('keeps only a SHA-256 of the bearer secret', async () => {
    const key = await createApiKey(t.db, { name: 'ci', scopes: 'invoke, audit' });
    expect(key.scopes).toEqual(['audit', 'invoke']);
    expect(key.token).toMatch(/^il_IL[A-Z2-7]{18}_[A-Za-z0-9_-]{43}$/);
    const { secret } = parseBearerToken(key.token)!;
    const { rows } = await sql<{ row: string }>`select row_to_json(k)::text as row from ledger.api_keys k where id = ${key.id}`.execute(t.db);
    expect(rows[0]?.row).not.toContain(secret);
    const stored = (await findApiKey(t.db, key.id))!;
    expect(bearerSecretMatches(stored, secret)).toBe(true);
    expect(bearerSecretMatches(stored, `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
  });

  it('seals the SigV4 secret with LEDGER_SECRET_KEY (AES-256-GCM, bound to the key id) when there is one', async () => {
    const sealed = await createApiKey(t.db, { scopes: ['invoke'] }, { secretKey: SECRET_KEY });
    const stored = (await findApiKey(t.db, sealed.id))!;
    expect(stored.sigv4SecretFormat).toBe('aes-256-gcm');
    expect(stored.sigv4Secret.toString('utf8')).not.toContain(sealed.secretAccessKey);
    expect(openSigV4Secret(stored, SECRET_KEY).toString('utf8')).toBe(sealed.secretAccessKey);
    expect(() => openSigV4Secret(stored, null)).toThrow(/LEDGER_SECRET_KEY is not set/);
    expect(() => openSigV4Secret(stored, `${SECRET_KEY}x`)).toThrow(/does not open/);
    // a sealed secret moved to another key's row does not open there
    const other = await createApiKey(t.db, { scopes: ['invoke'] }, { secretKey: SECRET_KEY });
    expect(() => openSigV4Secret({ ...stored, id: other.id }, SECRET_KEY)).toThrow(/does not open/);

    const plain = await createApiKey(t.db, { scopes: ['invoke'] });
    expect((await findApiKey(t.db, plain.id))!.sigv4SecretFormat).toBe('plain');
  });

  it('refuses unknown scopes, no scope, a short LEDGER_SECRET_KEY', async () => {
    await expect(createApiKey(t.db, { scopes: 'invoke,root' })).rejects.toThrow(/unknown scope\(s\): root/);
    await expect(createApiKey(t.db, { scopes: '' })).rejects.toThrow(/at least one scope/);
    await expect(createApiKey(t.db, { scopes: 'invoke' }, { secretKey: 'short' })).rejects.toThrow(/at least 32/);
  });

  it('the app role may revoke but not rewrite a key (scopes, hash) or delete it', async () => {
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    await expect(sql`update ledger.api_keys set scopes = array['admin'] where id = ${key.id}`.execute(t.db)).rejects.toThrow(/permission denied/);
    await expect(sql`delete from ledger.api_keys where id = ${key.id}`.execute(t.db)).rejects.toThrow(/permission denied/);
    const revoked = await revokeApiKey(t.db, key.id);
    expect(revoked.revokedAt).toBeInstanceOf(Date);
    expect((await revokeApiKey(t.db, key.id)).revokedAt).toEqual(revoked.revokedAt);
    await expect(revokeApiKey(t.db, `IL${'Q'.repeat(18)}`)).rejects.toThrow(/no API key/);
  });

  it('the authenticator re-reads a key after its cache time, so a revocation takes effect', async () => {
    let now = 1_000_000;
    const auth = new Authenticator(t.db, { enabled: true, cacheTtlMs: 5_000, now: () => now });
    const key = await createApiKey(t.db, { scopes: ['invoke'] });
    const header = `Bearer ${key.token}`;
    expect((await auth.bearer(header)).keyId).toBe(key.id);
    await revokeApiKey(t.db, key.id);
    expect((await auth.bearer(header)).keyId).toBe(key.id); // still cached
    now += 5_001;
    await expect(auth.bearer(header)).rejects.toThrow(/invalid/);
  });
});

describe('invoke-ledger keys', () => {
  const keys = (...argv: string[]) => cli(['keys', ...argv], { DATABASE_URL: t.ownerUrl });

  it('create prints the secrets once; list shows none of them; revoke marks the key', async () => {
    const created = await keys('create', '--scopes', 'invoke,admin', '--name', 'deploy', '--json');
    expect(created.code).toBe(0);
    const key = JSON.parse(created.out) as { id: string; token: string; secretAccessKey: string; scopes: string[] };
    expect(key.scopes).toEqual(['admin', 'invoke']);

    const listed = await keys('list');
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(new RegExp(`${key.id}\\s+admin,invoke\\s+\\S+\\s+-\\s+deploy`));
    expect(listed.out).not.toContain(key.token.slice(-43));
    expect(listed.out).not.toContain(key.secretAccessKey);

    expect((await keys('revoke', key.id)).code).toBe(0);
    expect((await listApiKeys(t.db)).find((k) => k.id === key.id)?.revokedAt).toBeInstanceOf(Date);
  });

  it('--env prints export lines a shell can eval, and nothing else on stdout', async () => {
    const created = await keys('create', '--scopes', 'invoke', '--env');
    expect(created.code).toBe(0);
    const lines = created.out.trim().split('\n');
    expect(lines.map((l) => l.split('=')[0])).toEqual(['export TOKEN', 'export AWS_ACCESS_KEY_ID', 'export AWS_SECRET_ACCESS_KEY', 'export AWS_DEFAULT_REGION']);
    const id = /AWS_ACCESS_KEY_ID='([^']+)'/.exec(created.out)?.[1] as string;
    expect((await listApiKeys(t.db)).some((k) => k.id === id)).toBe(true);
  });

  it('explains its mistakes with exit code 1', async () => {
    const missing = await keys('create');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/required option '--scopes <scopes>' not specified/);
    const unknown = await keys('create', '--scopes', 'everything');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/unknown scope/);
    const noId = await keys('revoke');
    expect(noId.code).toBe(1);
    expect(noId.err).toMatch(/missing required argument 'id'/);
    const nobody = await keys('revoke', 'IL0000000000000000XX');
    expect(nobody.code).toBe(1);
    expect(nobody.err).toMatch(/^keys: /);
  });

  it('start requires keys unless LEDGER_AUTH=off, or NODE_ENV=development without LEDGER_AUTH', () => {
    expect(authEnabled({ NODE_ENV: 'production' }).enabled).toBe(true);
    expect(authEnabled({ NODE_ENV: 'production', LEDGER_AUTH: 'off' }).enabled).toBe(false);
    expect(authEnabled({ NODE_ENV: 'development' }).enabled).toBe(false);
    expect(authEnabled({ NODE_ENV: 'development', LEDGER_AUTH: 'on' }).enabled).toBe(true);
  });
});
