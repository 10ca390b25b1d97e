import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('deploy')
    .summary('pack PATH, store it by its SHA-256 and make it the code of function NAME (docs/control-plane.md)')
    .description(
      'pack PATH (a file, or a directory with its node_modules) into a zip, check it, store it in the database by its SHA-256 (docs/code.md) ' +
        'and make it the code of NAME: the function is created, or gets a new version when the content changed (docs/control-plane.md).',
    )
    .argument('<path>', 'a file or directory')
    .requiredOption('--name <name>', 'the function the code is for')
    .option('--handler <file.export>', "Lambda-style handler, checked against the package's files (needed to create a function)")
    .option('--publish', 'also publish a version (PublishVersion)')
    .option('--json', 'print JSON')
    .action(
      run(async (source: string, o: { name: string; handler?: string; publish?: boolean; json?: boolean }) => {
        const { commandContext, withDatabase } = await import('../context.ts');
        const { migrate } = await import('../../../db/migrate.ts');
        const { deployCommand } = await import('../deploy.ts');
        const ctx = commandContext(io);
        return withDatabase(ctx, async (url) => {
          await migrate(url, (m) => ctx.logger.info(m));
          return deployCommand(url, source, o, io);
        });
      }),
    );
};
export default register;
