// Child processes: the product's own CLI (`start --role api|worker`), the peers' drain
// scripts and the bare Hono server. Every process started here is stopped here.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../helpers/pg-admin.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BENCH_DIR = path.join(REPO_ROOT, 'test/bench');
export const FUNCTIONS_DIR = path.join(BENCH_DIR, 'fixtures/functions');

export interface Child {
  proc: ChildProcess;
  /** the last lines of stdout+stderr, for error messages */
  tail(): string;
  /** resolves with the exit code */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs` */
  stop(graceMs?: number): Promise<void>;
}

export function spawnNode(
  args: string[],
  env: Record<string, string>,
  opts: { onLine?: (line: string) => void; nodeArgs?: string[]; plain?: boolean } = {},
): Child {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...(opts.plain ? [] : ['--import', 'tsx']), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      opts.onLine?.(line);
      lines.push(line);
      if (lines.length > 200) lines.shift();
    }
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    tail: () => lines.slice(-30).join('\n'),
    exited,
    async stop(graceMs = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function waitForHttp(url: string, child: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`process exited (${child.proc.exitCode}) before ${url} answered:\n${child.tail()}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${child.tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface LedgerProcess extends Child {
  port: number;
  baseUrl: string;
}

/**
 * `invoke-ledger start --role <role>` against `databaseUrl`, ready when /healthz answers.
 * Run as a user runs it (`npm start`): bin/invoke-ledger.mjs with plain node, which runs the
 * built dist/ (rebuilt first if a source changed), not the sources through tsx, whose
 * compile-on-load would be counted in every drain's CPU.
 */
export async function startLedger(role: 'api' | 'worker' | 'all', databaseUrl: string, env: Record<string, string> = {}): Promise<LedgerProcess> {
  const port = await freePort();
  const child = spawnNode([path.join(REPO_ROOT, 'bin/invoke-ledger.mjs'), 'start', '--role', role], {
    DATABASE_URL: databaseUrl,
    FUNCTIONS_DIR,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LEDGER_AUTH: 'off',
    ...env,
  }, {
    // BENCH_CPU_PROF=<dir>: every product process writes a V8 CPU profile there when it exits
    nodeArgs: process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF)}`] : [],
    plain: true,
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${baseUrl}/healthz`, child);
  } catch (e) {
    await child.stop();
    throw e;
  }
  return { ...child, port, baseUrl };
}

/** Runs a script to completion; its last stdout line that parses as JSON is the result. */
export async function runScript<T>(script: string, env: Record<string, string>, timeoutMs: number): Promise<T> {
  let result: T | undefined;
  const child = spawnNode([path.join(BENCH_DIR, script)], env, {
    onLine: (line) => {
      if (!line.startsWith('{"result"')) return;
      try {
        result = (JSON.parse(line) as { result: T }).result;
      } catch {
        // not ours
      }
    },
  });
  const timer = setTimeout(() => void child.stop(2_000), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  if (code !== 0 || result === undefined) throw new Error(`${script} failed (exit ${code}):\n${child.tail()}`);
  return result;
}

/** What a child script prints as its result (one line). */
export function printResult(result: unknown): void {
  process.stdout.write(`${JSON.stringify({ result })}\n`);
}
