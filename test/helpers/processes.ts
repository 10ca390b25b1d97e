// Spawning and ending the service's own processes (`invoke-ledger start --role …`) in
// tests. Every process is tracked by pid and ended by the test that started it.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServiceProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  output(): string;
}

/**
 * entry: how the service is started: the `invoke-ledger` binary (default: the built dist/,
 * what `npm start` and `npx invoke-ledger` run), or `node --import tsx apps/cli/main.ts`
 * (the sources, as in development). cwd: the process's working directory (default: the checkout).
 */
export async function spawnService(
  role: 'api' | 'worker' | 'all',
  port: number,
  env: Record<string, string>,
  options: { entry?: 'tsx' | 'bin'; cwd?: string } = {},
): Promise<ServiceProcess> {
  // absolute paths (tsx too): another working directory stands for another host (test/scale, test/cli/aws-cli)
  const entry = options.entry === 'tsx' ? ['--import', import.meta.resolve('tsx'), `${ROOT}apps/cli/main.ts`] : [`${ROOT}bin/invoke-ledger.mjs`];
  const child = spawn(process.execPath, [...entry, 'start', '--role', role], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', LEDGER_AUTH: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // the start (what started, with which settings) and the newest 100 KB: a busy process logs
  // a line per outcome, which must not push its start-up lines out
  let head = '';
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (process.env.PROCESS_TRACE) appendFileSync(`${process.env.PROCESS_TRACE}.${role}.${child.pid}`, d);
    if (out.length > 200_000) {
      if (head === '') head = `${out.slice(0, 50_000)}\n[…]\n`;
      out = out.slice(-100_000);
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const ready = role === 'worker' ? 'worker started' : 'listening on';
  const until = Date.now() + 60_000;
  while (!out.includes(ready)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${role} exited early:\n${out}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`${role} did not start in 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, pid: child.pid as number, port, output: () => head + out };
}

/** Ends a process by its pid: `signal` (SIGTERM: graceful), SIGKILL if it lingers 15 s. */
export function endProcess(p: ServiceProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => process.kill(p.pid, 'SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(p.pid, signal);
  });
}
