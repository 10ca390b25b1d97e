import type { RegisterCommand } from '../cli.ts';

// The shape of a command: its name, description, options and arguments here; what it does
// is imported when it runs (so `--help` stays fast); the exit code is what the action returns.
const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('migrate')
    .description('apply pending migrations (start does this too, safely from many processes)')
    .action(
      run(async () => {
        const { commandContext, withDatabase } = await import('../context.ts');
        const { migrate } = await import('../../../db/migrate.ts');
        const ctx = commandContext(io);
        await withDatabase(ctx, async (url) => {
          const applied = await migrate(url, (m) => ctx.logger.info(m));
          ctx.logger.info({ applied }, applied.length ? 'migrated' : 'already up to date');
        });
        return 0;
      }),
    );
};
export default register;
