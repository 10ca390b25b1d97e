import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  const retention = program
    .command('retention')
    .description('how long attempt logs, destination deliveries, dead-lettered messages, expired idempotency keys and broker deduplication rows are kept (docs/retention.md)');
  const withUrl = async (fn: (url: string) => Promise<number>) => {
    const { commandContext, withDatabase } = await import('../context.ts');
    return withDatabase(commandContext(io), fn);
  };
  retention
    .command('set')
    .description('keep rows of KIND for PERIOD, then let the worker remove them; "forever" keeps them')
    .argument('<kind>', 'attempt-logs, destination-deliveries, queue-messages, idempotency-keys or broker-messages-done')
    .argument('<period>', 'a PostgreSQL interval ("30 days", "12 hours") or "forever"')
    .option('--by <name>', 'who sets the rule (recorded in ledger.retention_rules; default: the database user)')
    .action(
      run(async (kind: string, period: string, o: { by?: string }) => {
        const { setCommand } = await import('../retention.ts');
        return withUrl((url) => setCommand(url, kind, period, o, io));
      }),
    );
  retention
    .command('show')
    .description('the rule of each kind and the latest purges')
    .action(
      run(async () => {
        const { showCommand } = await import('../retention.ts');
        return withUrl((url) => showCommand(url, io));
      }),
    );
  retention
    .command('purge')
    .description('remove expired rows now, in batches, as the worker does every RETENTION_PURGE_INTERVAL_MS')
    .option('--kind <kind>', 'only this kind')
    .option('--batch-size <n>', 'rows per batch (each its own transaction)', '1000')
    .option('--max-batches <n>', 'at most this many batches per kind', '1000')
    .action(
      run(async (o: { kind?: string; batchSize: string; maxBatches: string }) => {
        const { purgeCommand } = await import('../retention.ts');
        return withUrl((url) => purgeCommand(url, { kind: o.kind, batchSize: Number(o.batchSize), maxBatches: Number(o.maxBatches) }, io));
      }),
    );
};
export default register;
