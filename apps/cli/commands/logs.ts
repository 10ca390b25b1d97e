import { CliError, type RegisterCommand } from '../cli.ts';
import { databaseRole } from '../config.ts';

/** `10m`, `90s`, `2h`, `1d`, or an ISO timestamp → the instant it names. */
export function parseSince(value: string, now = Date.now()): Date {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(value.trim());
  if (m) return new Date(now - Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd']);
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new CliError(`--since ${value}: give a duration (30s, 10m, 2h, 1d) or a timestamp (2026-01-31T12:00:00Z)`);
  return at;
}

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('logs')
    .description("print what a function's attempts printed (console.* and context.log, up to 64 KB per attempt), as `aws logs tail` does")
    .argument('<function>', 'the function name')
    .option('--since <when>', 'from this long ago (30s, 10m, 2h, 1d) or this timestamp', '10m')
    .option('--follow', 'keep printing new attempts as they are recorded (Ctrl-C stops)')
    .option('--poll-ms <ms>', 'with --follow: how often to look for new attempts', '250')
    .action(
      run(async (name: string, o: { since: string; follow?: boolean; pollMs: string }) => {
        const since = parseSince(o.since);
        const pollMs = Math.max(50, Number(o.pollMs) || 250);
        const { commandContext, withDatabase } = await import('../context.ts');
        const { openDatabase } = await import('../../../db/connection.ts');
        const { functionLogsSince } = await import('../../../db/function-logs.ts');
        return withDatabase(commandContext(io), async (url) => {
          const handle = openDatabase(url, { role: databaseRole(), max: 1 });
          let stop = false;
          const onSignal = () => (stop = true);
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          try {
            // outcomes can commit slightly out of order: look back a little, print each attempt once
            const printed = new Map<string, number>();
            let from = since;
            for (;;) {
              const entries = await functionLogsSince(handle.db, name, from);
              for (const e of entries) {
                const key = `${e.invocationId}/${e.attempt}`;
                if (printed.has(key)) continue;
                printed.set(key, e.recordedAt.getTime());
                const prefix = `${e.invocationId} #${e.attempt} v${e.functionVersion}`;
                const lines = e.log.split('\n').filter((l) => l !== '');
                if (lines.length === 0) io.out.write(`${prefix}\t(no output; ${e.outcome})\n`);
                for (const line of lines) io.out.write(`${prefix}\t${line}\n`);
              }
              if (!o.follow || stop) return 0;
              const last = entries.at(-1);
              if (last && entries.length >= 1000) from = last.recordedAt;
              else from = new Date(Math.max(from.getTime(), Date.now() - 10_000));
              for (const [key, at] of printed) if (at < from.getTime() - 1_000) printed.delete(key);
              await new Promise((r) => setTimeout(r, pollMs));
              if (stop) return 0;
            }
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            await handle.close();
          }
        });
      }),
    );
};
export default register;
