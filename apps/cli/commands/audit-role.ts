import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('audit-role')
    .summary('create a read-only SQL login for the audit views (docs/audit.md)')
    .description('create (or set the password of) a read-only SQL login that inherits ledger_auditor, and print how to connect (docs/audit.md)')
    .requiredOption('--login <name>', 'the login role to create')
    .option('--password <password>', 'its password (default: a generated one, printed once)')
    .action(
      run(async (o: { login: string; password?: string }) => {
        const { commandContext } = await import('../context.ts');
        const { auditRoleCommand } = await import('../audit-role.ts');
        const ctx = commandContext(io);
        return auditRoleCommand(ctx.config, ctx.logger, o, (s) => io.out.write(s));
      }),
    );
};
export default register;
