// `invoke-ledger keys create|list|revoke`: API key administration from the shell.
import { userInfo } from 'node:os';
import { openDatabase } from '../../db/connection.ts';
import { createApiKey, listApiKeys, revokeApiKey, type ApiKeyInfo } from '../../db/keys.ts';
import { isLedgerError } from '../../db/errors.ts';
import { databaseRole } from './config.ts';

interface Output {
  write(s: string): unknown;
}

const info = (k: ApiKeyInfo) => ({
  id: k.id,
  name: k.name,
  scopes: k.scopes,
  sigv4Secret: k.sigv4SecretFormat,
  createdAt: k.createdAt.toISOString(),
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

/** How `keys create` prints the new key: for a person, as JSON, or as shell `export` lines. */
export type KeyFormat = 'text' | 'json' | 'env';

interface KeysIo {
  out?: Output;
  err?: Output;
}

async function withKeysDb(databaseUrl: string, err: Output, fn: (db: ReturnType<typeof openDatabase>['db']) => Promise<number>): Promise<number> {
  const handle = openDatabase(databaseUrl, { role: databaseRole(), max: 1, applicationName: 'invoke-ledger keys' });
  try {
    return await fn(handle.db);
  } catch (e) {
    if (!isLedgerError(e)) throw e;
    err.write(`keys: ${e.message}\n`);
    return 1;
  } finally {
    await handle.close();
  }
}

/** `keys create`: prints the bearer token and the AWS key pair, once. */
export function createKeyCommand(
  databaseUrl: string,
  o: { scopes: string; name?: string | undefined; format?: KeyFormat; secretKey?: string | null },
  io: KeysIo = {},
): Promise<number> {
  const out = io.out ?? process.stdout;
  return withKeysDb(databaseUrl, io.err ?? process.stderr, async (db) => {
    const key = await createApiKey(db, { name: o.name ?? null, scopes: o.scopes }, { secretKey: o.secretKey ?? null, actor: cliActor() });
    if (o.format === 'json') {
      out.write(`${JSON.stringify({ ...info(key), token: key.token, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }, null, 2)}\n`);
    } else if (o.format === 'env') {
      // for `eval "$(invoke-ledger keys create … --env)"`: the values are [A-Za-z0-9+/_=-], quoted anyway
      out.write(
        [
          `export TOKEN='${key.token}'`,
          `export AWS_ACCESS_KEY_ID='${key.accessKeyId}'`,
          `export AWS_SECRET_ACCESS_KEY='${key.secretAccessKey}'`,
          `export AWS_DEFAULT_REGION="\${AWS_DEFAULT_REGION:-us-east-1}"`,
          '',
        ].join('\n'),
      );
    } else {
      out.write(
        [
          `created API key ${key.id}${key.name ? ` (${key.name})` : ''} with scopes ${key.scopes.join(',')}`,
          '',
          `  bearer token:           ${key.token}`,
          `  AWS_ACCESS_KEY_ID:      ${key.accessKeyId}`,
          `  AWS_SECRET_ACCESS_KEY:  ${key.secretAccessKey}`,
          '',
          'Store these now: they are not shown again.',
          key.sigv4SecretFormat === 'plain'
            ? 'Note: LEDGER_SECRET_KEY is not set, so the SigV4 secret is stored unencrypted (see docs/security.md).'
            : 'The SigV4 secret is stored encrypted with LEDGER_SECRET_KEY.',
          '',
        ].join('\n'),
      );
    }
    return 0;
  });
}

/** `keys list`: a table, or JSON. */
export function listKeysCommand(databaseUrl: string, o: { json?: boolean }, io: KeysIo = {}): Promise<number> {
  const out = io.out ?? process.stdout;
  return withKeysDb(databaseUrl, io.err ?? process.stderr, async (db) => {
    const keys = await listApiKeys(db);
    if (o.json) {
      out.write(`${JSON.stringify(keys.map(info), null, 2)}\n`);
      return 0;
    }
    if (keys.length === 0) {
      out.write('no API keys (create one with: invoke-ledger keys create --scopes invoke,admin,audit)\n');
      return 0;
    }
    out.write(`${['ID'.padEnd(20), 'SCOPES'.padEnd(18), 'CREATED'.padEnd(24), 'REVOKED'.padEnd(24), 'NAME'].join('  ')}\n`);
    for (const k of keys) {
      const row = [k.id.padEnd(20), k.scopes.join(',').padEnd(18), k.createdAt.toISOString().padEnd(24), (k.revokedAt?.toISOString() ?? '-').padEnd(24), k.name ?? ''];
      out.write(`${row.join('  ').trimEnd()}\n`);
    }
    return 0;
  });
}

/** `keys revoke ID…`: each key stops working at once. */
export function revokeKeysCommand(databaseUrl: string, ids: string[], io: KeysIo = {}): Promise<number> {
  const out = io.out ?? process.stdout;
  return withKeysDb(databaseUrl, io.err ?? process.stderr, async (db) => {
    for (const id of ids) {
      const key = await revokeApiKey(db, id, { actor: cliActor() });
      out.write(`revoked ${key.id} at ${key.revokedAt?.toISOString()}\n`);
    }
    return 0;
  });
}

/**
 * Whether `start` requires keys: LEDGER_AUTH decides when set; otherwise on, except with
 * NODE_ENV=development (a local playground), which is said loudly at start.
 */
export function authEnabled(config: { LEDGER_AUTH?: 'on' | 'off' | undefined; NODE_ENV: string }): { enabled: boolean; reason: string } {
  if (config.LEDGER_AUTH === 'off') return { enabled: false, reason: 'LEDGER_AUTH=off' };
  if (config.LEDGER_AUTH === 'on') return { enabled: true, reason: 'LEDGER_AUTH=on' };
  if (config.NODE_ENV === 'development') return { enabled: false, reason: 'NODE_ENV=development and LEDGER_AUTH unset' };
  return { enabled: true, reason: 'default' };
}

/** The start-up lines an operator needs about auth. */
export async function logAuthState(
  db: Parameters<typeof listApiKeys>[0],
  mode: { enabled: boolean; reason: string },
  secretKey: string | null | undefined,
  logger: { warn(o: object, m: string): void; info(o: object, m: string): void },
): Promise<void> {
  if (!mode.enabled) {
    logger.warn({ reason: mode.reason }, 'API authentication is OFF: anyone who can reach the port can invoke, administer and read everything');
    return;
  }
  const keys = (await listApiKeys(db)).filter((k) => k.revokedAt === null);
  if (keys.length === 0) {
    logger.warn({}, 'API authentication is on and there is no API key yet: create one with `invoke-ledger keys create --scopes invoke,admin,audit`');
  }
  const plain = keys.filter((k) => k.sigv4SecretFormat === 'plain').length;
  if (!secretKey && plain > 0) {
    logger.info({ keys: plain }, 'LEDGER_SECRET_KEY is not set: SigV4 secrets of API keys are stored unencrypted (docs/security.md)');
  }
}

/** Who runs the CLI, as ledger.changes records it (never a secret). */
function cliActor(): string {
  try {
    return `cli:${userInfo().username || 'unknown'}`;
  } catch {
    return 'cli:unknown';
  }
}
