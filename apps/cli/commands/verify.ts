import { collect, type RegisterCommand } from '../cli.ts';
import { databaseRole } from '../config.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('verify')
    .description(
      "check every invocation's events and projections: seq, lifecycle, projection = replay, and orphaned change stream slots (exit 1 on a problem; safe while servers run); " +
        'with --tree-head, check the events against signed tree heads instead (docs/tamper-evidence.md)',
    )
    .option('--tree-head <file>', 'a signed tree head (JSON, or JSON lines); repeatable', collect)
    .option('--public-key <file>', 'the public key that signed the tree heads (with --tree-head)')
    .option('--archive <manifest>', 'with --tree-head: an archived month dropped from the database (docs/retention.md); repeatable', collect)
    .option('--json', 'print the tree-head check as JSON (with --tree-head)')
    .action(
      run(async (o: { treeHead?: string[]; publicKey?: string; archive?: string[]; json?: boolean }) => {
        const { commandContext, withDatabase } = await import('../context.ts');
        if (o.treeHead) {
          const { verifyTreeHeadsCommand } = await import('../tamper.ts');
          const argv = [...o.treeHead.flatMap((f) => ['--tree-head', f]), ...(o.publicKey ? ['--public-key', o.publicKey] : []), ...(o.archive ?? []).flatMap((f) => ['--archive', f]), ...(o.json ? ['--json'] : [])];
          return withDatabase(commandContext(io), (url) => verifyTreeHeadsCommand(url, argv, io.out, io.err));
        }
        const { openDatabase } = await import('../../../db/connection.ts');
        const { verifyLedger } = await import('../../../db/replay.ts');
        return withDatabase(commandContext(io), async (url) => {
          const handle = openDatabase(url, { role: databaseRole() });
          try {
            const problems = await verifyLedger(handle.db);
            for (const p of problems) io.out.write(`${p.invocationId}: ${p.problem}\n`);
            io.out.write(problems.length ? `verify: ${problems.length} problem(s)\n` : 'verify: ledger is consistent\n');
            const { droppedPartitions } = await import('../../../db/retention/partitions.ts');
            const dropped = await droppedPartitions(handle.db);
            if (dropped.length) io.out.write(`verify: archived and dropped, not in the database: ${dropped.join(', ')} (audit.archives says where)\n`);
            // a slot no mapping owns holds the server's WAL forever (docs/streams.md, change streams)
            const { findOrphanedChangeSlots } = await import('../../../db/change-streams.ts');
            // with LEDGER_SECRET_KEY, the source databases of mappings are looked at too ("<name> on <host:port/db>")
            const orphaned = await findOrphanedChangeSlots(handle.db, { secretKey: process.env['LEDGER_SECRET_KEY'] || null });
            for (const o of orphaned.orphans) {
              const why = o.kind === 'slot' ? 'no mapping; it holds WAL' : 'no mapping';
              io.out.write(`verify: orphaned change stream ${o.kind} ${o.label} (${why}): ${o.repair}\n`);
            }
            return problems.length || orphaned.slots.length ? 1 : 0;
          } finally {
            await handle.close();
          }
        });
      }),
    );
};
export default register;
