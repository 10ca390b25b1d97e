import { Option } from 'commander';
import { KEEP_RUNNING, type RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('start')
    .summary('migrate, then serve the API and/or run the worker')
    .description('migrate, register FUNCTIONS_DIR, then serve the API and/or run the worker until Ctrl-C (SIGINT) or SIGTERM')
    .addOption(new Option('--role <role>', 'api: HTTP and GraphQL only; worker: async work only (its /healthz on a free port unless PORT is set); all: both').choices(['api', 'worker', 'all']).env('LEDGER_ROLE'))
    .action(
      run(async (o: { role?: string }) => {
        const { commandContext } = await import('../context.ts');
        const { start } = await import('../start.ts');
        const ctx = commandContext(io, o.role ? { LEDGER_ROLE: o.role } : {}, 1);
        await start(ctx.config, ctx.logger);
        return KEEP_RUNNING;
      }),
    );
};
export default register;
