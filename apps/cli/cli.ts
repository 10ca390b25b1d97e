// What every command shares, and nothing heavy: a command file imports only this and
// commander, and loads its implementation when it runs, so `--help` and light commands
// do not pay for the server's modules.
import type { Command } from 'commander';

export interface Output {
  write(s: string): unknown;
}

/** Where a command writes and which environment it reads: the process's, or a test's. */
export interface Io {
  out: Output;
  err: Output;
  env: NodeJS.ProcessEnv;
}

/**
 * A failure the user can act on, printed as one line (`invoke-ledger: message`) without a
 * stack trace, exit code 1: a port in use, an invalid setting, a refused argument.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** How a command returns: its exit code, or KEEP_RUNNING for a server. */
export const KEEP_RUNNING = -1;

export interface Cli {
  io: Io;
  /** wraps an action so its result becomes the process's exit code */
  run<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void>;
}

/** One command: a file in apps/cli/commands/ exporting this, listed in commands/index.ts. */
export type RegisterCommand = (program: Command, cli: Cli) => void;

/** `a,b` → ['a', 'b'] for repeatable or comma-separated options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
