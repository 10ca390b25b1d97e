// `invoke-ledger start` with no DATABASE_URL: the embedded PostgreSQL default serves
// /healthz, a SIGTERM exits 0 after stopping it, and a second start reuses the data.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/pg-admin.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
let pgPort: number;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-start-'));
  await chmod(dir, 0o755); // as root, the embedded server runs as the `postgres` OS user
  pgPort = await freePort();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EMBEDDED_PG_DIR: path.join(dir, 'pg'),
    EMBEDDED_PG_PORT: String(pgPort),
    PORT: String(port),
    LEDGER_AUTH: 'off',
    LOG_LEVEL: 'info',
  };
  delete env.DATABASE_URL;
  delete env.TEST_DATABASE_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/cli/main.ts', 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const until = Date.now() + 60_000;
  while (!out.includes('listening on')) {
    if (child.exitCode !== null) throw new Error(`start exited ${child.exitCode}:\n${out}`);
    if (Date.now() > until) throw new Error(`start did not listen in 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, port, output: () => out };
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    process.kill(child.pid as number, 'SIGTERM');
  });
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

describe('invoke-ledger start on the embedded default', () => {
  it('serves /healthz, exits 0 on SIGTERM with the embedded server stopped, and reuses the data next time', async () => {
    const first = await start();
    expect(first.output()).toContain(`postgres://postgres:postgres@127.0.0.1:${pgPort}/ledger`);
    const health = await fetch(`http://127.0.0.1:${first.port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    const invoked = await fetch(`http://127.0.0.1:${first.port}/invoke/echo`, { method: 'POST', body: '{"n":1}' });
    expect(await invoked.json()).toEqual({ n: 1 });
    expect(await stop(first.child)).toBe(0);
    expect(first.output()).toContain('"msg":"stopped"');
    expect(await portOpen(pgPort)).toBe(false);

    const second = await start();
    expect(second.output()).not.toContain('applied migration'); // same data directory, already migrated
    const functions = await fetch(`http://127.0.0.1:${second.port}/2015-03-31/functions/echo/invocations?Qualifier=1`, { method: 'POST', body: '{}' });
    expect(functions.headers.get('x-amz-executed-version')).toBe('1'); // unchanged file: still version 1
    expect(await stop(second.child)).toBe(0);
  }, 120_000);
});
