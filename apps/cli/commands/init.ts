import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('init')
    .description('scaffold a TypeScript function NAME (types from @types/aws-lambda) and its test, in FUNCTIONS_DIR or --dir')
    .argument('<name>', 'the function name, [A-Za-z0-9_-]{1,64}; the file is NAME.ts')
    .option('--dir <dir>', 'where to write it (default: FUNCTIONS_DIR, ./functions)')
    .option('--force', 'overwrite existing files')
    .action(
      run(async (name: string, o: { dir?: string; force?: boolean }) => {
        const path = await import('node:path');
        const { initCommand } = await import('../init.ts');
        const functionsDir = path.resolve(io.env.FUNCTIONS_DIR || './functions');
        return initCommand(name, o.dir ? path.resolve(o.dir) : functionsDir, functionsDir, o, io.out);
      }),
    );
};
export default register;
