import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('tree-head')
    .description('seal, sign a tree head now with LEDGER_SIGNING_KEY(_FILE), publish it to LEDGER_WITNESSES, and print it')
    .action(
      run(async () => {
        const { hostname } = await import('node:os');
        const { commandContext, withDatabase } = await import('../context.ts');
        const { treeHeadCommand } = await import('../tamper.ts');
        const ctx = commandContext(io);
        return withDatabase(ctx, (url) => treeHeadCommand(ctx.config, url, `cli:${hostname()}:${process.pid}`, ctx.logger, io.out, io.err));
      }),
    );
};
export default register;
