import type { RegisterCommand } from '../cli.ts';
import type { CreateStreamOptions, PutOptions } from '../streams.ts';

const EXAMPLES = `
Examples:
  invoke-ledger streams create clicks --shards 4 --retention-hours 48
  invoke-ledger streams list
  invoke-ledger streams put clicks --partition-key user-42 --data '{"page":"/"}'
  echo '{"page":"/cart"}' | invoke-ledger streams put clicks --partition-key user-42
  invoke-ledger streams describe clicks          # shards, sequence ranges, each mapping's checkpoints and lag
  invoke-ledger streams describe clicks --json
  invoke-ledger streams delete clicks            # refused while a mapping reads it

Mappings that read a stream are made through GraphQL (createStreamEventSourceMapping) or
the Lambda API (aws lambda create-event-source-mapping): docs/streams.md.
`;

const register: RegisterCommand = (program, { io, run }) => {
  const streams = program
    .command('streams')
    .description('native streams with Kinesis semantics: create, list, describe, put, delete (docs/streams.md)')
    .addHelpText('after', EXAMPLES);
  /** streams need their tables: migrate first, as start would */
  const withDb = async (fn: (url: string) => Promise<number>) => (await import('../context.ts')).withMigratedDatabase(io, (url) => fn(url));
  streams
    .command('create')
    .description('create a stream; its shards split the MD5 space of partition keys evenly')
    .argument('<name>', 'the stream name (1–128 of A-Z a-z 0-9 . _ -)')
    .option('--shards <n>', 'shard count, 1 … 64 (default 1); fixed once created')
    .option('--retention-hours <h>', 'how long records are kept, 1 … 8760 (default 24)')
    .option('--json', 'print the stream as JSON')
    .action(
      run(async (name: string, o: CreateStreamOptions) => {
        const { createStreamCommand } = await import('../streams.ts');
        return withDb((url) => createStreamCommand(url, name, o, io));
      }),
    );
  streams
    .command('list')
    .description('every stream: name, shards, retention, records ever put, mappings, created')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }) => {
        const { listStreamsCommand } = await import('../streams.ts');
        return withDb((url) => listStreamsCommand(url, o, io));
      }),
    );
  streams
    .command('describe')
    .description("a stream's shards (hash key range, first retained and last sequence number) and each mapping's checkpoint and lag per shard and lane")
    .argument('<name>', 'the stream name')
    .option('--json', 'print JSON')
    .action(
      run(async (name: string, o: { json?: boolean }) => {
        const { describeStreamCommand } = await import('../streams.ts');
        return withDb((url) => describeStreamCommand(url, name, o, io));
      }),
    );
  streams
    .command('put')
    .description('put one record; prints its shard and sequence number')
    .argument('<name>', 'the stream name')
    .requiredOption('--partition-key <key>', '1–256 characters; its MD5 picks the shard')
    .option('--data <text>', 'the data, as UTF-8 text; without it, every byte of stdin (at most 1 MB with the key)')
    .option('--json', 'print {"shardId", "sequenceNumber"}')
    .action(
      run(async (name: string, o: PutOptions) => {
        const { putRecordCommand } = await import('../streams.ts');
        return withDb((url) => putRecordCommand(url, name, o, io));
      }),
    );
  streams
    .command('delete')
    .description('delete a stream and its records; refused while an event source mapping reads it (its batches stay in the ledger)')
    .argument('<name>', 'the stream name')
    .action(
      run(async (name: string) => {
        const { deleteStreamCommand } = await import('../streams.ts');
        return withDb((url) => deleteStreamCommand(url, name, io));
      }),
    );
};
export default register;
