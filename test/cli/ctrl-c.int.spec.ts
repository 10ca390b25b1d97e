// Ctrl-C the way a user does it: `npm start` on the embedded PostgreSQL, in its own process
// group (as a terminal runs a foreground job), an async attempt running, then SIGINT to the
// whole group. The attempt's outcome is recorded before anything stops, the embedded
// PostgreSQL stops last (it is not in the terminal's group), and the server exits 0. A
// second Ctrl-C forces an exit (130); SHUTDOWN_TIMEOUT_MS bounds a shutdown (exit 1): those
// two start the CLI itself as the group leader, so its exit code is what the test sees.
// Every process started here (each group, the postmasters) is ended by pid in teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../db/connection.ts';
import { startEmbeddedPostgres } from '../../db/embedded.ts';
import { freePort } from '../helpers/pg-admin.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
let dir: string;
const groups = new Set<number>();
const postmasters = new Set<number>();

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-ctrl-c-'));
  await chmod(dir, 0o755); // as root, the embedded server runs as the `postgres` OS user
});

/** A process's state letter and process group, from /proc/PID/stat (the name may hold spaces). */
function procStat(pid: number): { state: string; pgrp: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: state as string, pgrp: Number(pgrp) };
  } catch {
    return null;
  }
}

/**
 * Whether a process (pid) or any process of a group (-pgid) still runs. A zombie does not:
 * it has exited, and one orphaned to an init that does not reap (this machine's does not)
 * stays in the process table, where `kill(pid, 0)` still finds it.
 */
const alive = (pid: number): boolean => {
  if (pid > 0) {
    const s = procStat(pid);
    return s !== null && s.state !== 'Z';
  }
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .some((d) => {
      const s = procStat(Number(d));
      return s !== null && s.pgrp === -pid && s.state !== 'Z';
    });
};

afterAll(async () => {
  for (const pgid of groups) if (alive(pgid)) process.kill(-pgid, 'SIGKILL');
  for (const pid of postmasters) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await rm(dir, { recursive: true, force: true });
}, 60_000);

interface Started {
  child: ChildProcess;
  port: number;
  pgDir: string;
  pgPort: number;
  postmaster: number;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function waitFor<T>(what: string, probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, out: () => string): Promise<T> {
  const until = Date.now() + 90_000;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`${what}: not within 90 s\n${out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * `npm start` (or `invoke-ledger start` itself) as a terminal starts a foreground job: the
 * leader of a new process group.
 */
async function start(how: 'npm' | 'cli', name: string, env: Record<string, string> = {}): Promise<Started> {
  const port = await freePort();
  const pgPort = await freePort();
  const pgDir = path.join(dir, name);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    EMBEDDED_PG_DIR: pgDir,
    EMBEDDED_PG_PORT: String(pgPort),
    PORT: String(port),
    LEDGER_AUTH: 'off',
    LOG_LEVEL: 'info',
    ...env,
  };
  delete childEnv.DATABASE_URL;
  delete childEnv.TEST_DATABASE_URL;
  const [cmd, args] = how === 'npm' ? ['npm', ['start']] : [process.execPath, ['--import', 'tsx', 'apps/cli/main.ts', 'start']];
  const child = spawn(cmd as string, args as string[], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  groups.add(child.pid as number);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const output = () => out;
  await waitFor('listening', () => out.includes('listening on') || child.exitCode !== null, output);
  if (child.exitCode !== null) throw new Error(`${how} start exited ${child.exitCode}:\n${out}`);
  const postmaster = Number((await readFile(path.join(pgDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  postmasters.add(postmaster);
  return { child, port, pgDir, pgPort, postmaster, output, exited };
}

async function invokeAsync(s: Started, fn: string, payload: unknown): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${s.port}/invoke/${fn}?async=true`, { method: 'POST', body: JSON.stringify(payload) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { invocationId: string }).invocationId;
}

async function waitRunning(s: Started, id: string): Promise<void> {
  await waitFor(
    'attempt running',
    async () => ((await (await fetch(`http://127.0.0.1:${s.port}/invocations/${id}`)).json()) as { status: string }).status === 'running',
    s.output,
  );
}

/** The ledger of a stopped run, read by starting its embedded server again. */
async function eventsAfter(s: Started, id: string): Promise<{ type: string; data: { errorType?: string } }[]> {
  const server = await startEmbeddedPostgres({ dataDir: s.pgDir, port: s.pgPort, persistent: true });
  if (server.pid) postmasters.add(server.pid);
  const handle = openDatabase(server.url, { max: 1 });
  try {
    const { rows } = await sql<{ type: string; data: { errorType?: string } }>`
      select type, data from ledger.events where invocation_id = ${id}::uuid order by seq`.execute(handle.db);
    return rows;
  } finally {
    await handle.close();
    await server.stop();
  }
}

describe('Ctrl-C on `npm start` with the embedded PostgreSQL', () => {
  it('records the running attempt, stops the embedded server last, exits 0', async () => {
    const s = await start('npm', 'clean', { FUNCTIONS_DIR: FIXTURES });
    // long enough to be seen running by a poll on a busy machine, well within SHUTDOWN_TIMEOUT_MS
    // (30 s) and the function's own timeout (`slow`: 120 s; the example `sleep` has Lambda's 3 s)
    const id = await invokeAsync(s, 'slow', { ms: 8_000 });
    await waitRunning(s, id);
    process.kill(-(s.child.pid as number), 'SIGINT');
    // npm waits for the server, then ends itself by the signal it got (as it does for any
    // Ctrl-C): the server's own exit code is in its last log line
    const npm = await s.exited;
    expect(npm.code === 0 || npm.signal === 'SIGINT').toBe(true);
    expect(s.output()).toMatch(/"code":0,"msg":"stopped"/);
    expect(alive(-(s.child.pid as number))).toBe(false); // nothing is left in the group
    expect(s.output()).not.toMatch(/outcomes not recorded/);
    expect(alive(s.postmaster)).toBe(false);
    const events = await eventsAfter(s, id);
    expect(events.map((e) => e.type)).toEqual(['accepted', 'started', 'succeeded']);
  }, 180_000);

  it('a second Ctrl-C forces the exit (and still stops the embedded server)', async () => {
    const s = await start('cli', 'forced', { FUNCTIONS_DIR: FIXTURES });
    const id = await invokeAsync(s, 'slow', { ms: 100_000 });
    await waitRunning(s, id);
    process.kill(-(s.child.pid as number), 'SIGINT');
    await waitFor('armed', () => s.output().includes('Ctrl-C again to force'), s.output);
    process.kill(-(s.child.pid as number), 'SIGINT');
    expect(await s.exited).toEqual({ code: 130, signal: null });
    expect(s.output()).toMatch(/forcing exit on a second SIGINT/);
    expect(alive(s.postmaster)).toBe(false);
    // not recorded: the lease will expire and the attempt be recorded WorkerLost and retried
    expect((await eventsAfter(s, id)).map((e) => e.type)).toEqual(['accepted', 'started']);
  }, 180_000);

  it('SHUTDOWN_TIMEOUT_MS bounds a shutdown that an attempt outlasts', async () => {
    const s = await start('cli', 'bounded', { FUNCTIONS_DIR: FIXTURES, SHUTDOWN_TIMEOUT_MS: '1000' });
    const id = await invokeAsync(s, 'slow', { ms: 100_000 });
    await waitRunning(s, id);
    process.kill(-(s.child.pid as number), 'SIGINT');
    expect(await s.exited).toEqual({ code: 1, signal: null });
    expect(s.output()).toMatch(/shutdown timed out/);
    expect(alive(s.postmaster)).toBe(false);
  }, 180_000);
});
