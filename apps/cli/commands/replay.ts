import { collect, type RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  const replay = program
    .command('replay')
    .summary('run recorded invocations against another version and show what changed')
    .description(
      'run recorded invocations of a function again against another version (as invocations of type replay, run by the workers under their own limit) and report, pair by pair, what changed (docs/replay.md)',
    );

  const database = async <T>(fn: (url: string) => Promise<T>): Promise<T> => (await import('../context.ts')).withMigratedDatabase(io, (url) => fn(url));

  replay
    .command('start')
    .description('start a replay run of recorded invocations of FUNCTION; with --wait, wait for it and print its report')
    .argument('<function>', 'the function whose recorded invocations are replayed')
    .option('--target <target>', '$LATEST (default), a version number, or an alias (each replay routed by its weights)')
    .option('--from <time>', 'originals accepted at or after (ISO 8601)')
    .option('--to <time>', 'originals accepted before (ISO 8601)')
    .option('--status <status>', 'succeeded, failed, dead_lettered (default: all three); repeatable or comma-separated', collect)
    .option('--id <invocationId>', 'exactly these originals; repeatable or comma-separated', collect)
    .option('--sample <n>', 'a random sample of N originals (default: every match, at most 10000)')
    .option('--concurrency <n>', 'replay invocations of this run running at once, across every worker (default 2)')
    .option('--wait', 'wait until every replay has ended, then print the report')
    .option('--timeout <seconds>', 'with --wait: give up after this long (default 600)')
    .option('--examples <n>', 'worst examples shown per kind (default 3)')
    .option('--json', 'print JSON (with --wait: the whole report with every pair)')
    .addHelpText('after', `\nExamples:\n  invoke-ledger replay start echo --target 2 --sample 200 --wait\n  invoke-ledger replay start echo --target live --wait\n  invoke-ledger replay start echo --from 2026-11-23T00:00:00Z --status succeeded\n`)
    .action(
      run(async (fn: string, o: Record<string, string | string[] | boolean | undefined>) => {
        const { replayStartCommand } = await import('../replay.ts');
        return database((url) => replayStartCommand(url, fn, o, io));
      }),
    );

  replay
    .command('show')
    .description("print a replay run's report: counts by kind of difference and the worst examples of each (--json: every pair, the export)")
    .argument('<id>', 'the replay run')
    .option('--examples <n>', 'worst examples shown per kind (default 3)')
    .option('--json', 'the whole report with every pair, as JSON')
    .action(
      run(async (id: string, o: { json?: boolean; examples?: string }) => {
        const { replayShowCommand } = await import('../replay.ts');
        return database((url) => replayShowCommand(url, id, o, io));
      }),
    );

  replay
    .command('list')
    .description('list replay runs, newest first, with their progress')
    .option('--function <name>', 'only runs of this function')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { function?: string; json?: boolean }) => {
        const { replayListCommand } = await import('../replay.ts');
        return database((url) => replayListCommand(url, o, io));
      }),
    );
};
export default register;
