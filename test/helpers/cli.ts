// `invoke-ledger …` in this process, against a test's database, with its output captured.
import { runCli } from '../../apps/cli/program.ts';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export async function cli(argv: string[], env: Record<string, string> = {}): Promise<CliRun> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    out: { write: (s: string) => (out += s) },
    err: { write: (s: string) => (err += s) },
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
  });
  return { code, out, err };
}
