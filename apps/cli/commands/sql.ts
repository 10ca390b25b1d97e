import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('sql')
    .summary('run one SQL statement as ledger_auditor, read only, and print a table')
    .description(
      'run one SQL statement as the role ledger_auditor (read only, rolled back) and print a table: the audit views without psql (docs/audit.md)',
    )
    .argument('<query>', 'one statement; $1, $2, … take the PARAMs')
    .argument('[params...]', 'values for $1, $2, …')
    .option('--json', 'print the rows as JSON')
    .addHelpText('after', `\nExamples:\n  invoke-ledger sql "select status, count(*) from audit.invocations group by status"\n  invoke-ledger sql 'select seq, type from audit.invocation_events where invocation_id = $1 order by seq' "$ID"\n`)
    .action(
      run(async (query: string, params: string[], o: { json?: boolean }) => {
        const { commandContext, withDatabase } = await import('../context.ts');
        const { sqlCommand } = await import('../sql.ts');
        const ctx = commandContext(io);
        // no migrate: an auditor's login may use this too, and cannot
        return withDatabase(ctx, (url) => sqlCommand(url, query, params, o, io));
      }),
    );
};
export default register;
