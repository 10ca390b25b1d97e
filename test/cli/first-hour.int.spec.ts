// What a new user meets first: --help on every command, the built CLI, a second server or
// a worker beside a running one, `invoke-ledger sql`, `invoke-ledger init`, and the
// examples' failure path (retries, dead letter, onFailure destination) in seconds.
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../apps/cli/program.ts';
import { listenPort } from '../../apps/cli/start.ts';
import { staleness, ensureBuilt } from '../../scripts/build.mjs';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let t: TestDatabase;
const services = new Set<ServiceProcess>();

beforeAll(async () => {
  t = await createTestDatabase();
}, 60_000);

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
});

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/invoke-ledger.mjs', ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 90_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => [[...prefix, c.name()], ...commandPaths(c, [...prefix, c.name()])]);
}

describe('--help', () => {
  const program = buildProgram({ out: { write: () => 0 }, err: { write: () => 0 }, env: {} }, { code: 0 });
  const paths = commandPaths(program);

  it('lists every command', () => {
    expect(paths.map((p) => p.join(' '))).toEqual(
      expect.arrayContaining(['start', 'migrate', 'verify', 'keys', 'keys create', 'keys list', 'keys revoke', 'audit-role', 'sql', 'init', 'deploy']),
    );
  });

  it.each(paths.map((p) => [p.join(' '), p]))('invoke-ledger %s --help prints its usage and exits 0', async (_name, p) => {
    const r = await cli([...(p as string[]), '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`^Usage: invoke-ledger ${(p as string[]).join(' ')}`));
  });

  it('the real binary: --help exits 0; no command, or an unknown one, exits 1 with one line on stderr', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: invoke-ledger <command> \[options\]/);
    expect((await run([])).code).toBe(1);
    const bogus = await run(['bogus']);
    expect(bogus.code).toBe(1);
    expect(bogus.err.split('\n')[0]).toBe("error: unknown command 'bogus'");
  });
});

describe('the built CLI', () => {
  it('dist/ is what runs, rebuilt when a source changes', async () => {
    await ensureBuilt();
    expect(staleness()).toBeNull();
    const file = path.join(ROOT, 'apps/cli/cli.ts');
    const before = await stat(file);
    try {
      await utimes(file, before.atime, new Date(before.mtimeMs + 2_000));
      expect(staleness()).toBe('apps/cli/cli.ts changed');
      // the binary rebuilds before it runs
      expect((await run(['--help'])).code).toBe(0);
      expect(staleness()).toBeNull();
    } finally {
      await utimes(file, before.atime, before.mtime);
      await ensureBuilt();
    }
  });

  it('has no import of a .ts file left in it', async () => {
    const main = await readFile(path.join(ROOT, 'dist/apps/cli/commands/keys.js'), 'utf8');
    expect(main).toContain('import("../keys.js")');
    expect(main).not.toMatch(/\.ts["']/);
  });
});

describe('ports', () => {
  it('a worker-only process listens on a free port unless PORT is set, beside a server', async () => {
    expect(listenPort({ PORT: undefined, LEDGER_ROLE: 'worker' })).toBe(0);
    expect(listenPort({ PORT: undefined, LEDGER_ROLE: 'all' })).toBe(3000);
    expect(listenPort({ PORT: 4100, LEDGER_ROLE: 'worker' })).toBe(4100);
    const child = spawn(process.execPath, ['bin/invoke-ledger.mjs', 'start', '--role', 'worker'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.ownerUrl, LEDGER_AUTH: 'off', LOG_LEVEL: 'info', PORT: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const worker: ServiceProcess = { child, pid: child.pid!, port: 0, output: () => out };
    services.add(worker);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const until = Date.now() + 60_000;
    while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(out)) {
      if (child.exitCode !== null || Date.now() > until) throw new Error(`worker did not listen:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(3000);
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ ok: true });
    await endProcess(worker);
  }, 120_000);

  it('a port in use is one line and exit 1, not a stack trace', async () => {
    const port = await freePort();
    const first = await spawnService('api', port, { DATABASE_URL: t.ownerUrl });
    services.add(first);
    for (const [role, env] of [
      ['api', { PORT: String(port) }],
      ['worker', { PORT: String(port) }],
      ['api', { PORT: '0', METRICS_PORT: String(port) }],
    ] as const) {
      const second = await run(['start', '--role', role], { ...env, LEDGER_AUTH: 'off' });
      expect(second.code, second.err).toBe(1);
      const lines = second.err.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^invoke-ledger: 127\\.0\\.0\\.1:${port} is already in use .*set (PORT|METRICS_PORT)`));
    }
    // the first one is untouched
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  }, 180_000);
});

describe('invoke-ledger sql', () => {
  it('prints a table as ledger_auditor, binds $1…, refuses what an auditor may not do', async () => {
    const db = { DATABASE_URL: t.ownerUrl };
    const table = await cli(['sql', "select 1 as n, 'a' as s, null as nothing, $1::int + 1 as next", '41'], db);
    expect(table.code, table.err).toBe(0);
    expect(table.out).toBe([' n | s | nothing | next', '---+---+---------+------', ' 1 | a |         |   42', '(1 row)', ''].join('\n'));
    const json = await cli(['sql', '--json', 'select current_user as who'], db);
    expect(JSON.parse(json.out)).toEqual([{ who: 'ledger_auditor' }]);
    expect((await cli(['sql', 'select count(*) from audit.invocations'], db)).code).toBe(0);

    const ledger = await cli(['sql', 'select * from ledger.events'], db);
    expect(ledger.code).toBe(1);
    expect(ledger.err).toMatch(/^sql: permission denied for schema ledger\n  queries run as ledger_auditor/);
    const two = await cli(['sql', 'select 1; set role postgres'], db);
    expect(two.code).toBe(1);
    expect(two.err).toMatch(/cannot insert multiple commands/);
    const write = await cli(['sql', 'create table audit.x (n int)'], db);
    expect(write.code).toBe(1);
    expect(write.err).toMatch(/read-only transaction|permission denied/);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_tables where schemaname = 'audit' and tablename = 'x'`.execute(t.db);
    expect(rows[0]?.n).toBe(0);
  });
});

describe('invoke-ledger init', () => {
  const dir = path.join(ROOT, '.data', `init-${process.pid}`);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('scaffolds a typed function and its test; both typecheck, the test passes, a server runs it', async () => {
    const made = await cli(['init', 'hello-world'], { FUNCTIONS_DIR: dir });
    expect(made.code, made.err).toBe(0);
    expect(made.out).toContain('hello-world.ts');
    expect((await cli(['init', 'hello-world'], { FUNCTIONS_DIR: dir })).err).toMatch(/exists; pick another name or pass --force/);
    expect((await cli(['init', 'no/slashes'], { FUNCTIONS_DIR: dir })).code).toBe(1);

    // typecheck with the repository's settings (strict), @types/aws-lambda from node_modules
    await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.json', include: ['*.ts'], exclude: [] }));
    const tsc = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.once('exit', (code) => resolve({ code, out }));
    });
    expect(tsc.code, tsc.out).toBe(0);

    const test = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--test', path.join(dir, 'hello-world.test.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.once('exit', (code) => resolve({ code, out }));
    });
    expect(test.code, test.out).toBe(0);
    expect(test.out).toMatch(/# pass 2/);

    await mkdir(dir, { recursive: true });
    const server = await spawnService('all', await freePort(), { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: dir });
    services.add(server);
    const res = await fetch(`http://127.0.0.1:${server.port}/invoke/hello-world`, { method: 'POST', body: '{"name":"Ada"}' });
    expect(await res.json()).toEqual({ message: 'Hello, Ada!', attempt: 1 });
    // the test file is not a function
    expect(server.output()).toContain('"functions":["hello-world:1"]');
    await endProcess(server);
  }, 180_000);
});

describe('the examples in functions/', () => {
  it('fail: retried, dead-lettered, and handed to its onFailure destination on-failure', async () => {
    const server = await spawnService('all', await freePort(), { DATABASE_URL: t.ownerUrl, POLL_INTERVAL_MS: '100' });
    services.add(server);
    const base = `http://127.0.0.1:${server.port}`;
    // synchronously: one attempt, its log tail as docs/http-api.md shows it
    const sync = await fetch(`${base}/2015-03-31/functions/fail/invocations`, { method: 'POST', headers: { 'x-amz-log-type': 'Tail' }, body: '{"reason":"demo"}' });
    expect(sync.headers.get('x-amz-function-error')).toBe('Unhandled');
    expect(Buffer.from(sync.headers.get('x-amz-log-result') ?? '', 'base64').toString()).toMatch(
      // what the handler logged, then Lambda's own line for the error it threw (docs/observability.md)
      /^\d{4}-.*\tINFO\tattempt 1: failing on purpose \(demo\)\n\d{4}-.*\tERROR\tInvoke Error \t\{"errorType":"IntentionalFailure","errorMessage":"Attempt 1 failed on purpose: demo".*\}\n$/,
    );
    const accepted = await fetch(`${base}/invoke/fail`, { method: 'POST', headers: { prefer: 'respond-async' }, body: '{"reason":"demo"}' });
    const { invocationId } = (await accepted.json()) as { invocationId: string };
    const until = Date.now() + 120_000;
    for (;;) {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.invocations
        where function_name = 'on-failure' and status = 'succeeded'`.execute(t.db);
      if (rows[0]?.n) break;
      if (Date.now() > until) throw new Error(`no on-failure invocation:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const events = await sql<{ type: string }>`select type from ledger.events where invocation_id = ${invocationId}::uuid order by seq`.execute(t.db);
    expect(events.rows.map((e) => e.type)).toEqual(['accepted', 'started', 'failed', 'retried', 'started', 'failed', 'retried', 'started', 'failed', 'dead_lettered']);
    const notice = await sql<{ result: { failedInvocation: string; condition: string; attempts: number; errorType: string } }>`
      select e.data -> 'result' as result from ledger.events e join ledger.invocations i on i.id = e.invocation_id
      where i.function_name = 'on-failure' and e.type = 'succeeded'`.execute(t.db);
    expect(notice.rows[0]?.result).toMatchObject({ failedInvocation: invocationId, condition: 'RetriesExhausted', attempts: 3, errorType: 'IntentionalFailure' });
    await endProcess(server);
  }, 180_000);
});
