// `invoke-ledger keys create|list|revoke`: API key administration from the shell.
import { parseArgs } from 'node:util';
import { openDatabase } from '../../db/connection.ts';
import { createApiKey, listApiKeys, revokeApiKey, type ApiKeyInfo } from '../../db/keys.ts';
import { isLedgerError } from '../../db/errors.ts';

export const KEYS_USAGE = `usage:
  invoke-ledger keys create --scopes invoke,admin,audit [--name NAME] [--json]
  invoke-ledger keys list [--json]
  invoke-ledger keys revoke KEY_ID
`;

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

export async function keysCommand(
  databaseUrl: string,
  argv: string[],
  options: { secretKey?: string | null; out?: Output; err?: Output } = {},
): Promise<number> {
  const out = options.out ?? process.stdout;
  const err = options.err ?? process.stderr;
  const { values, positionals } = parseArgs({
    args: argv,
    options: { scopes: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  const [sub, ...rest] = positionals;
  const handle = openDatabase(databaseUrl, { max: 1, applicationName: 'invoke-ledger keys' });
  try {
    switch (sub) {
      case 'create': {
        if (!values.scopes) {
          err.write(`keys create needs --scopes (invoke, admin, audit)\n${KEYS_USAGE}`);
          return 1;
        }
        const key = await createApiKey(handle.db, { name: values.name ?? null, scopes: values.scopes }, { secretKey: options.secretKey ?? null });
        if (values.json) {
          out.write(`${JSON.stringify({ ...info(key), token: key.token, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }, null, 2)}\n`);
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
      }
      case 'list': {
        const keys = await listApiKeys(handle.db);
        if (values.json) {
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
      }
      case 'revoke': {
        const id = rest[0];
        if (!id) {
          err.write(`keys revoke needs a key id\n${KEYS_USAGE}`);
          return 1;
        }
        const key = await revokeApiKey(handle.db, id);
        out.write(`revoked ${key.id} at ${key.revokedAt?.toISOString()}\n`);
        return 0;
      }
      default:
        err.write(KEYS_USAGE);
        return 1;
    }
  } catch (e) {
    if (!isLedgerError(e)) throw e;
    err.write(`keys: ${e.message}\n`);
    return 1;
  } finally {
    await handle.close();
  }
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
