import { Option } from 'commander';
import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  const keys = program.command('keys').description('API keys: create (printed once), list, revoke (docs/security.md); the tree-head signing key');
  /** keys need the api_keys table: migrate first, as start would */
  const withKeysDatabase = async (fn: (url: string, secretKey: string | null) => Promise<number>) =>
    (await import('../context.ts')).withMigratedDatabase(io, (url, config) => fn(url, config.LEDGER_SECRET_KEY ?? null));
  keys
    .command('create')
    .description('create a key; prints its bearer token and AWS key pair (SigV4) once')
    .requiredOption('--scopes <scopes>', 'comma-separated: invoke, admin, audit')
    .option('--name <name>', 'a label shown by keys list')
    .addOption(new Option('--json', 'print JSON').conflicts('env'))
    .option('--env', 'print `export TOKEN=… AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…` lines, for eval "$(…)"')
    .action(
      run(async (o: { scopes: string; name?: string; json?: boolean; env?: boolean }) => {
        const { createKeyCommand } = await import('../keys.ts');
        const format = o.json ? 'json' : o.env ? 'env' : 'text';
        return withKeysDatabase((url, secretKey) => createKeyCommand(url, { scopes: o.scopes, name: o.name, format, secretKey }, io));
      }),
    );
  keys
    .command('list')
    .description('every key: id, scopes, created, revoked, name (never the secrets)')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }) => {
        const { listKeysCommand } = await import('../keys.ts');
        return withKeysDatabase((url) => listKeysCommand(url, o, io));
      }),
    );
  keys
    .command('revoke')
    .description('revoke keys by id (the ID column of keys list); they stop working at once')
    .argument('<id...>', 'key ids')
    .action(
      run(async (ids: string[]) => {
        const { revokeKeysCommand } = await import('../keys.ts');
        return withKeysDatabase((url) => revokeKeysCommand(url, ids, io));
      }),
    );
  keys
    .command('signing')
    .description('create the Ed25519 key that signs tree heads; prints the public key (docs/tamper-evidence.md)')
    .option('--out <file>', 'the private key file (its public key goes beside it, .pub.pem)', 'ledger-signing-key.pem')
    .option('--force', 'replace existing key files')
    .action(
      run(async (o: { out: string; force?: boolean }) => {
        const { keysSigningCommand } = await import('../tamper.ts');
        return keysSigningCommand(['--out', o.out, ...(o.force ? ['--force'] : [])], io.out, io.err);
      }),
    );
};
export default register;
