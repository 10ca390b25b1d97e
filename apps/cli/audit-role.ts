// `invoke-ledger audit-role --login NAME [--password P]`: a LOGIN role that inherits
// ledger_auditor (SELECT on schema `audit` only), and how to connect as it with psql.
import type { Logger } from 'pino';
import { auditorConnectionString, createAuditorLogin, generatePassword } from '../../db/audit.ts';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import type { Config } from './config.ts';
import { resolveDatabase } from './database.ts';

export async function auditRoleCommand(
  config: Config,
  logger: Logger,
  values: { login: string; password?: string | undefined },
  out: (text: string) => void = (t) => process.stdout.write(t),
): Promise<number> {
  const password = values.password ?? generatePassword();
  const database = await resolveDatabase(config, logger);
  try {
    // ledger_auditor and the views come with migration 0002
    await migrate(database.url, (m) => logger.info(m));
    // as the login role (the owner), which may create roles, not as ledger_app
    const handle = openDatabase(database.url, { role: '', max: 1 });
    try {
      const login = await createAuditorLogin(handle.db, values.login, password);
      const url = auditorConnectionString(database.url, login.name, password);
      out(
        `${login.created ? 'created' : 'updated the password of'} login role ${login.name} (member of ledger_auditor: SELECT on schema audit only)\n` +
          (values.password ? '' : `generated password: ${password}\n`) +
          `\nconnect with:\n  psql '${url}'\n` +
          `\nthen, for example:\n  select status, count(*) from audit.invocations group by status;\n` +
          `\nmore queries: docs/audit.md\n`,
      );
      return 0;
    } finally {
      await handle.close();
    }
  } finally {
    await database.stop();
  }
}
