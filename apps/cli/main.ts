// `invoke-ledger` entry: run the command line, exit with its code (a server keeps running).
import { KEEP_RUNNING } from './cli.ts';
import { runCli } from './program.ts';

runCli(process.argv.slice(2)).then(
  (code) => {
    if (code !== KEEP_RUNNING) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`invoke-ledger: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
