import type { RegisterCommand } from '../cli.ts';
import { databaseRole } from '../config.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('rebuild-projections')
    .description('rewrite the projection rows that differ from the events (safe while servers run; exit 1 on problems in the events themselves)')
    .action(
      run(async () => {
        const { commandContext, withDatabase } = await import('../context.ts');
        const { openDatabase } = await import('../../../db/connection.ts');
        const { rebuildProjections } = await import('../../../db/replay.ts');
        return withDatabase(commandContext(io), async (url) => {
          const handle = openDatabase(url, { role: databaseRole() });
          try {
            const r = await rebuildProjections(handle.db);
            for (const p of r.problems) io.out.write(`${p.invocationId}: ${p.problem}\n`);
            io.out.write(
              `rebuilt projections of ${r.invocations} invocation(s): ${r.repaired} repaired, ${r.removed} row(s) without events removed` +
                (r.problems.length ? `; ${r.problems.length} problem(s) in the events themselves cannot be rebuilt\n` : '\n'),
            );
            return r.problems.length ? 1 : 0;
          } finally {
            await handle.close();
          }
        });
      }),
    );
};
export default register;
