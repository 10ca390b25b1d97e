// API keys: creation (secrets shown once), listing, revocation, and the lookup the API's
// authentication runs on every request. The bearer secret is stored as a SHA-256 hash
// (it is 256 random bits, so a fast hash is enough); the SigV4 secret cannot be hashed,
// because the server recomputes the client's HMAC with it: it is sealed with AES-256-GCM
// under LEDGER_SECRET_KEY when one is configured, and stored as is otherwise.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import { appendChange } from './changes.ts';
import { LedgerError } from './errors.ts';
import { inTransaction } from './functions.ts';
import type { ApiKeysTable, Executor } from './schema.ts';

export const SCOPES = ['invoke', 'admin', 'audit'] as const;
export type Scope = (typeof SCOPES)[number];

export const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);

/** Key ids look like AWS access key ids (upper case, no separators), so the SDK and CLI accept them. */
export const KEY_ID = /^IL[A-Z2-7]{18}$/;
const TOKEN = /^il_(IL[A-Z2-7]{18})_([A-Za-z0-9_-]{43})$/;
/** LEDGER_SECRET_KEY must carry at least this many characters (e.g. `openssl rand -base64 32`). */
export const MIN_SECRET_KEY_LENGTH = 32;

export type SigV4SecretFormat = Selectable<ApiKeysTable>['sigv4_secret_format'];

export interface ApiKeyInfo {
  id: string;
  name: string | null;
  scopes: Scope[];
  sigv4SecretFormat: SigV4SecretFormat;
  createdAt: Date;
  revokedAt: Date | null;
}

/** What `keys create` prints once; none of the secrets can be recovered from the API later. */
export interface CreatedApiKey extends ApiKeyInfo {
  /** `Authorization: Bearer <token>` */
  token: string;
  /** AWS_ACCESS_KEY_ID */
  accessKeyId: string;
  /** AWS_SECRET_ACCESS_KEY */
  secretAccessKey: string;
}

/** A key as authentication needs it. */
export interface StoredApiKey extends ApiKeyInfo {
  secretSha256: Buffer;
  sigv4Secret: Buffer;
}

type KeyRow = Selectable<ApiKeysTable>;

const toInfo = (r: KeyRow): ApiKeyInfo => ({
  id: r.id,
  name: r.name,
  scopes: r.scopes.filter(isScope),
  sigv4SecretFormat: r.sigv4_secret_format,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function newKeyId(): string {
  // 32 symbols: the low 5 bits of a random byte are uniform
  return `IL${[...randomBytes(18)].map((b) => BASE32[b & 31]).join('')}`;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function encryptionKey(secretKey: string): Buffer {
  if (secretKey.length < MIN_SECRET_KEY_LENGTH) {
    throw new LedgerError('InvalidParameter', `LEDGER_SECRET_KEY must be at least ${MIN_SECRET_KEY_LENGTH} characters`);
  }
  return Buffer.from(hkdfSync('sha256', secretKey, 'invoke-ledger', 'api-key sigv4 secret', 32));
}

function sealSigV4Secret(id: string, secret: string, secretKey: string | null | undefined): { format: SigV4SecretFormat; sealed: Buffer } {
  if (!secretKey) return { format: 'plain', sealed: Buffer.from(secret, 'utf8') };
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', encryptionKey(secretKey), iv);
  cipher.setAAD(Buffer.from(id, 'utf8')); // a sealed secret copied onto another key's row does not open
  const ct = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return { format: 'aes-256-gcm', sealed: Buffer.concat([iv, cipher.getAuthTag(), ct]) };
}

/**
 * The SigV4 secret of a stored key; throws when it is sealed and LEDGER_SECRET_KEY is
 * missing or different from the one it was sealed with.
 */
export function openSigV4Secret(key: Pick<StoredApiKey, 'id' | 'sigv4SecretFormat' | 'sigv4Secret'>, secretKey: string | null | undefined): Buffer {
  if (key.sigv4SecretFormat === 'plain') return key.sigv4Secret;
  if (!secretKey) throw new Error(`the SigV4 secret of key ${key.id} is sealed, and LEDGER_SECRET_KEY is not set`);
  const iv = key.sigv4Secret.subarray(0, 12);
  const tag = key.sigv4Secret.subarray(12, 28);
  const decipher = createDecipheriv('aes-256-gcm', encryptionKey(secretKey), iv);
  decipher.setAAD(Buffer.from(key.id, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(key.sigv4Secret.subarray(28)), decipher.final()]);
  } catch {
    throw new Error(`the SigV4 secret of key ${key.id} does not open with this LEDGER_SECRET_KEY`);
  }
}

export function parseScopes(input: string | readonly string[]): Scope[] {
  const list = (typeof input === 'string' ? input.split(',') : [...input]).map((s) => s.trim()).filter(Boolean);
  const unknown = list.filter((s) => !isScope(s));
  if (unknown.length > 0) throw new LedgerError('InvalidParameter', `unknown scope(s): ${unknown.join(', ')} (known: ${SCOPES.join(', ')})`);
  if (list.length === 0) throw new LedgerError('InvalidParameter', `a key needs at least one scope (${SCOPES.join(', ')})`);
  return [...new Set(list as Scope[])].sort();
}

export async function createApiKey(
  db: Executor,
  input: { name?: string | null; scopes: string | readonly string[] },
  options: { secretKey?: string | null; actor?: string } = {},
): Promise<CreatedApiKey> {
  const scopes = parseScopes(input.scopes);
  const name = input.name ?? null;
  if (name !== null && name.length > 200) throw new LedgerError('InvalidParameter', 'a key name is at most 200 characters');
  const id = newKeyId();
  const secret = randomBytes(32).toString('base64url');
  const secretAccessKey = randomBytes(30).toString('base64'); // 40 characters, like AWS's
  const { format, sealed } = sealSigV4Secret(id, secretAccessKey, options.secretKey);
  // the key and its change in ledger.changes (docs/changes.md) together; never a secret in the change
  const row = await inTransaction(db, async (tx) => {
    const inserted = await tx
      .insertInto('ledger.api_keys')
      .values({ id, name, scopes, secret_sha256: sha256(secret), sigv4_secret_format: format, sigv4_secret: sealed })
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendChange(tx, { resourceType: 'api_key', resourceName: id, action: 'created', actor: options.actor ?? 'cli', data: { after: { name, scopes } } });
    return inserted;
  });
  return { ...toInfo(row), token: `il_${id}_${secret}`, accessKeyId: id, secretAccessKey };
}

export async function listApiKeys(db: Executor, options: { includeRevoked?: boolean } = {}): Promise<ApiKeyInfo[]> {
  let query = db.selectFrom('ledger.api_keys').selectAll();
  if (options.includeRevoked === false) query = query.where('revoked_at', 'is', null);
  const rows = await query.orderBy('created_at').orderBy('id').execute();
  return rows.map(toInfo);
}

/** Revokes a key; revoking an already revoked key returns it unchanged. */
export async function revokeApiKey(db: Executor, id: string, options: { actor?: string } = {}): Promise<ApiKeyInfo> {
  return inTransaction(db, async (tx) => {
    const before = await tx.selectFrom('ledger.api_keys').select('revoked_at').where('id', '=', id).forUpdate().executeTakeFirst();
    if (!before) throw new LedgerError('InvalidParameter', `no API key with id ${id}`);
    const row = await tx
      .updateTable('ledger.api_keys')
      .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', sql<Date>`now()`) }))
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    // revoking a revoked key changes nothing, and records nothing
    if (before.revoked_at === null) await appendChange(tx, { resourceType: 'api_key', resourceName: id, action: 'revoked', actor: options.actor ?? 'cli' });
    return toInfo(row);
  });
}

/** The key with this id, revoked or not; null when there is none. */
export async function findApiKey(db: Executor, id: string): Promise<StoredApiKey | null> {
  if (!KEY_ID.test(id)) return null;
  const r = await db.selectFrom('ledger.api_keys').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? { ...toInfo(r), secretSha256: r.secret_sha256, sigv4Secret: r.sigv4_secret } : null;
}

/** Splits `il_<id>_<secret>`; null when the token does not have that shape. */
export function parseBearerToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN.exec(token);
  return m ? { id: m[1] as string, secret: m[2] as string } : null;
}

/** Constant-time comparison of a presented bearer secret with the stored hash. */
export function bearerSecretMatches(key: Pick<StoredApiKey, 'secretSha256'>, secret: string): boolean {
  const presented = sha256(secret);
  return presented.length === key.secretSha256.length && timingSafeEqual(presented, key.secretSha256);
}
