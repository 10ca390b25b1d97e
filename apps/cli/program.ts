// `invoke-ledger`: the argument parser (commander) and the commands of apps/cli/commands/.
// Parsing, help and exit codes live here; what a command does lives in its own module.
import { Command, CommanderError } from 'commander';
import { CliError, KEEP_RUNNING, type Cli, type Io } from './cli.ts';
import { COMMANDS } from './commands/index.ts';

const DESCRIPTION = [
  'Lambda-style function invocation on PostgreSQL with an append-only event ledger.',
  '',
  "Every command reads DATABASE_URL (unset: the embedded PostgreSQL in .data/postgres, shared with a running server) and the other variables of the README's Configuration table.",
].join('\n');

export function buildProgram(io: Io, result: { code: number }): Command {
  const program = new Command('invoke-ledger')
    .description(DESCRIPTION)
    .usage('<command> [options]')
    .configureOutput({
      writeOut: (s) => io.out.write(s),
      writeErr: (s) => io.err.write(s),
    })
    .showHelpAfterError('(invoke-ledger --help lists the commands; invoke-ledger COMMAND --help shows one)')
    .exitOverride();
  const cli: Cli = {
    io,
    run:
      (fn) =>
      async (...args) => {
        result.code = await fn(...args);
      },
  };
  for (const register of COMMANDS) register(program, cli);
  // every subcommand throws instead of exiting, and writes where the program writes
  const configure = (cmd: Command) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) });
      configure(sub);
    }
  };
  configure(program);
  return program;
}

/**
 * Runs one command line; resolves to its exit code, or KEEP_RUNNING (-1) when it started a
 * server that keeps the process alive.
 */
export async function runCli(argv: string[], io: Partial<Io> = {}): Promise<number> {
  const full: Io = { out: io.out ?? process.stdout, err: io.err ?? process.stderr, env: io.env ?? process.env };
  const result = { code: 0 };
  const program = buildProgram(full, result);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; usage errors are already printed
      return e.exitCode;
    }
    if (e instanceof CliError) {
      full.err.write(`invoke-ledger: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}

export { KEEP_RUNNING };
