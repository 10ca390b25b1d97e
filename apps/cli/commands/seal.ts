import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('seal')
    .description('seal every committed event into the Merkle log now and print how far sealing is (docs/tamper-evidence.md)')
    .action(
      run(async () => {
        const { hostname } = await import('node:os');
        const { commandContext, withDatabase } = await import('../context.ts');
        const { sealCommand } = await import('../tamper.ts');
        return withDatabase(commandContext(io), (url) => sealCommand(url, `cli:${hostname()}:${process.pid}`, io.out));
      }),
    );
};
export default register;
