import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  const archive = program
    .command('archive')
    .description('retention: monthly event partitions, exported to verifiable archives, then dropped, restorable (docs/retention.md)');
  /** as the owner role: partitions are DDL, which the application role may not do */
  const withOwner = async (fn: (url: string) => Promise<number>) => {
    const { commandContext, withDatabase } = await import('../context.ts');
    return withDatabase(commandContext(io), fn);
  };
  archive
    .command('partitions')
    .description('make the partitions of this month and the next ones, then list every partition and what was archived')
    .option('--months-ahead <n>', 'months to make ahead of the current one', '3')
    .action(
      run(async (o: { monthsAhead: string }) => {
        const { partitionsCommand } = await import('../archive.ts');
        return withOwner((url) => partitionsCommand(url, Number(o.monthsAhead), io));
      }),
    );
  archive
    .command('export')
    .description('write each past month partition before DATE to DIR: <partition>.ndjson.gz and <partition>.manifest.json')
    .option('--before <date>', 'archive the months that end on or before this date (YYYY-MM-DD, UTC)')
    .option('--partition <name>', 'archive this partition (events_yYYYYmMM); repeatable', (v: string, p: string[] = []) => [...p, v])
    .requiredOption('--dir <dir>', 'where to write the archive files')
    .option('--by <name>', 'who archives (recorded in ledger.archive_log; default: the database user)')
    .action(
      run(async (o: { before?: string; partition?: string[]; dir: string; by?: string }) => {
        const { exportCommand } = await import('../archive.ts');
        return withOwner((url) => exportCommand(url, o, io));
      }),
    );
  archive
    .command('verify')
    .description('check archives offline, with no database: file hash, every line, every leaf hash, against the manifest')
    .argument('<manifest...>', 'manifest files (<partition>.manifest.json)')
    .option('--json', 'print the result as JSON')
    .action(
      run(async (manifests: string[], o: { json?: boolean }) => {
        const { verifyCommand } = await import('../archive.ts');
        return verifyCommand(manifests, o, io);
      }),
    );
  archive
    .command('drop')
    .description("detach and drop the partition an archive holds; refused unless the archive verifies and matches the partition's events")
    .argument('<manifest>', 'the manifest export wrote')
    .option('--by <name>', 'who drops (recorded in ledger.archive_log; default: the database user)')
    .action(
      run(async (manifest: string, o: { by?: string }) => {
        const { dropCommand } = await import('../archive.ts');
        return withOwner((url) => dropCommand(url, manifest, o, io));
      }),
    );
  archive
    .command('restore')
    .description('load an archive into ledger_archive.<partition>, a detached partition of ledger.events kept outside the ledger, read-only, for investigation')
    .argument('<manifest>', 'the manifest export wrote')
    .option('--table <name>', 'the table in schema ledger_archive (default: the partition name)')
    .option('--by <name>', 'who restores (recorded in ledger.archive_log; default: the database user)')
    .action(
      run(async (manifest: string, o: { table?: string; by?: string }) => {
        const { restoreCommand } = await import('../archive.ts');
        return withOwner((url) => restoreCommand(url, manifest, o, io));
      }),
    );
};
export default register;
