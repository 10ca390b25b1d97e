import type { Command } from 'commander';
import type { RegisterCommand } from '../cli.ts';
import type { CreateOptions, UpdateOptions } from '../brokers.ts';

const EXAMPLES = `
Examples:
  invoke-ledger brokers create rabbitmq --url-env RABBITMQ_URL --queue orders --function rmq-orders --batch-size 10 --report-batch-item-failures
  invoke-ledger brokers create nats --url nats://127.0.0.1:4222 --stream ORDERS --subject-filter 'orders.>' --function nats-orders --on-failure-queue orders-failures
  invoke-ledger brokers list --function rmq-orders
  invoke-ledger brokers get 0b9e…                       # one mapping as JSON: state, stateReason, lag
  invoke-ledger brokers update 0b9e… --batch-size 50 --url-env RABBITMQ_URL
  invoke-ledger brokers disable 0b9e…                   # consumption stops within about a second
  invoke-ledger brokers enable 0b9e…
  invoke-ledger brokers delete 0b9e…

The URL holds credentials: --url-env NAME reads it from that environment variable, so it
is not in your shell history or the process list. It is sealed under LEDGER_SECRET_KEY
when that is set, never printed, and ledger.changes records only that it changed.
Changes are recorded with the actor cli:<os user>.
`;

const register: RegisterCommand = (program, { io, run }) => {
  const brokers = program
    .command('brokers')
    .description('broker event source mappings (RabbitMQ queues, NATS JetStream streams): create, list, get, update, enable, disable, delete (docs/brokers.md)')
    .addHelpText('after', EXAMPLES);
  /** mappings need their tables: migrate first, as start would */
  const withDb = async (fn: (url: string, secretKey: string | null) => Promise<number>) =>
    (await import('../context.ts')).withMigratedDatabase(io, (url, config) => fn(url, config.LEDGER_SECRET_KEY ?? null));
  const url = (cmd: Command) =>
    cmd.option('--url <url>', 'amqp://user:password@host:5672 (amqps://) or nats://host:4222 (tls://, user:password@)').option('--url-env <name>', 'read the URL from this environment variable instead');
  const tuning = (cmd: Command) =>
    cmd
      .option('--batch-size <n>', '1 … 10000 (default 100): the prefetch (RabbitMQ), max_ack_pending (NATS)')
      .option('--window-ms <ms>', 'maxBatchingWindowMs, 0 … 300000 (default 500)')
      .option('--report-batch-item-failures', 'the function may answer { batchItemFailures }')
      .option('--json', 'print the mapping as JSON');

  tuning(
    url(
      brokers
        .command('create')
        .description('create a mapping; the worker starts consuming within a second')
        .argument('<broker>', 'rabbitmq or nats')
        .requiredOption('--function <name>', 'the function each batch invokes'),
    )
      .option('--queue <queue>', 'RabbitMQ: the queue (it must exist)')
      .option('--vhost <vhost>', 'RabbitMQ: the virtual host (default /)')
      .option('--max-delivery-count <n>', 'RabbitMQ: deliveries before a failing message is dead-lettered, 1 … 1000 (default 5)')
      .option('--stream <stream>', 'NATS: the JetStream stream')
      .option('--subject-filter <subject>', 'NATS: e.g. orders.eu.>')
      .option('--starting-position <p>', 'NATS: TRIM_HORIZON (default), LATEST or AT_TIMESTAMP')
      .option('--starting-position-timestamp <iso>', 'NATS: with AT_TIMESTAMP')
      .option('--max-retry-attempts <n>', 'NATS: retries of a failed batch, -1 … 10000 (default -1: until it succeeds)')
      .option('--on-failure-queue <queue>', 'NATS: a ledger queue that receives where an exhausted batch was')
      .option('--disabled', 'create it disabled')
      .addHelpText(
        'after',
        `\nExamples:\n  RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672 invoke-ledger brokers create rabbitmq --url-env RABBITMQ_URL --queue orders --function rmq-orders --max-delivery-count 3\n  invoke-ledger brokers create nats --url nats://127.0.0.1:4222 --stream ORDERS --function nats-orders --starting-position LATEST --json\n`,
      ),
  ).action(
    run(async (broker: string, o: CreateOptions) => {
      const { createBrokerMappingCommand } = await import('../brokers.ts');
      return withDb((dbUrl, secretKey) => createBrokerMappingCommand(dbUrl, secretKey, broker, o, io));
    }),
  );
  brokers
    .command('list')
    .description('every mapping: id, broker, function, endpoint, queue or stream, enabled, state, lag')
    .option('--function <name>', 'only the mappings of this function')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { function?: string; json?: boolean }) => {
        const { listBrokerMappingsCommand } = await import('../brokers.ts');
        return withDb((dbUrl) => listBrokerMappingsCommand(dbUrl, o, io));
      }),
    );
  brokers
    .command('get')
    .description('one mapping as JSON, with the state and lag its worker reports (never the URL)')
    .argument('<id>', 'the mapping id (brokers list)')
    .action(
      run(async (id: string) => {
        const { getBrokerMappingCommand } = await import('../brokers.ts');
        return withDb((dbUrl) => getBrokerMappingCommand(dbUrl, id, io));
      }),
    );
  tuning(
    url(brokers.command('update').description('change a mapping; what is not given keeps its value').argument('<id>', 'the mapping id').option('--function <name>', 'another function')),
  )
    .option('--no-report-batch-item-failures', 'the function’s answer is no longer read for batchItemFailures')
    .option('--enable', 'resume consumption')
    .option('--disable', 'stop consumption (the running batch finishes and is acknowledged first)')
    .addHelpText('after', `\nExamples:\n  invoke-ledger brokers update 0b9e… --batch-size 50 --window-ms 1000\n  invoke-ledger brokers update 0b9e… --url-env RABBITMQ_URL        # new credentials; recorded as changed, never shown\n`)
    .action(
      run(async (id: string, o: UpdateOptions) => {
        const { updateBrokerMappingCommand } = await import('../brokers.ts');
        return withDb((dbUrl, secretKey) => updateBrokerMappingCommand(dbUrl, secretKey, id, o, io));
      }),
    );
  for (const [verb, enabled, what] of [
    ['enable', true, 'resume consumption'],
    ['disable', false, 'stop consumption within about a second (the running batch finishes and is acknowledged first)'],
  ] as const) {
    brokers
      .command(verb)
      .description(what)
      .argument('<id>', 'the mapping id')
      .action(
        run(async (id: string) => {
          const { updateBrokerMappingCommand } = await import('../brokers.ts');
          return withDb((dbUrl, secretKey) => updateBrokerMappingCommand(dbUrl, secretKey, id, enabled ? { enable: true } : { disable: true }, io));
        }),
      );
  }
  brokers
    .command('delete')
    .description('delete a mapping (its batches stay in the ledger; a NATS durable consumer stays in the stream)')
    .argument('<id>', 'the mapping id')
    .action(
      run(async (id: string) => {
        const { deleteBrokerMappingCommand } = await import('../brokers.ts');
        return withDb((dbUrl) => deleteBrokerMappingCommand(dbUrl, id, io));
      }),
    );
};
export default register;
