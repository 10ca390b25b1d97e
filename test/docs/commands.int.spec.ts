// Every shell block of the README (and of docs/code.md, docs/brokers.md) runs as written
// against a server this test starts from the built CLI, as `npm start` does, with auth on,
// in one bash session per file so variables a block sets (TOKEN, AWS_*) reach the next.
// Allowed changes: the port (3000 → a free one), DATABASE_URL (the test's database), `aws`
// (/usr/bin/aws, the v2 CLI), `npx invoke-ledger` (the project's bin, as npx runs it), and curl failing on an HTTP error status (--fail-with-body), so
// a 401 or 500 fails the block. Blocks marked `<!-- doc-test: skip: why -->` are listed with
// their reason. Then every SQL block of the README and docs (except docs/audit.md, which
// test/audit/cookbook.int.spec.ts runs) runs as ledger_auditor over the data the commands
// made, as `invoke-ledger sql` runs it.
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDITOR_ROLE, runAuditQuery } from '../../db/audit.ts';
import { openDatabase } from '../../db/connection.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { codeBlocks, sqlStatements, type CodeBlock } from './markdown.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHELL_DOCS = ['README.md', 'docs/code.md', 'docs/brokers.md'];
const SQL_DOCS = [
  'README.md',
  'docs/worker.md',
  'docs/schedules.md',
  'docs/queues.md',
  'docs/streams.md',
  'docs/security.md',
  'docs/code.md',
  'docs/http-api.md',
  'docs/graphql.md',
  'docs/changes.md',
  'docs/observability.md',
  'docs/retention.md',
  'docs/replay.md',
  'docs/brokers.md',
];

let t: TestDatabase;
let ws: string;
let port: number;
let server: ServiceProcess | undefined;

async function startServer(): Promise<void> {
  // the server of the reader's first shell: auth on, ./functions of the workspace
  server = await spawnService('all', port, { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: path.join(ws, 'functions'), LEDGER_AUTH: 'on' });
}

beforeAll(async () => {
  t = await createTestDatabase();
  // a reader's checkout: the package (so `npx invoke-ledger` finds the bin), its
  // node_modules, and a copy of functions/ for `init` to write into
  ws = await mkdtemp(path.join(tmpdir(), 'ledger-docs-'));
  // (package.json a copy: npx does not take a linked one for the project's own bin)
  await cp(path.join(ROOT, 'package.json'), path.join(ws, 'package.json'));
  for (const f of ['node_modules', 'bin']) await symlink(path.join(ROOT, f), path.join(ws, f));
  await cp(path.join(ROOT, 'functions'), path.join(ws, 'functions'), { recursive: true });
  await symlink('/usr/bin/aws', path.join(ws, 'aws'));
  // `npx invoke-ledger` runs the project's own bin (checked by hand in a checkout); npx does
  // not recognise a project whose node_modules is a link, so here it is that bin directly
  await writeFile(
    path.join(ws, 'npx'),
    `#!/usr/bin/env bash\nif [ "$1" = invoke-ledger ]; then shift; exec node ${path.join(ws, 'bin/invoke-ledger.mjs')} "$@"; fi\nexec ${path.dirname(process.execPath)}/npx "$@"\n`,
    { mode: 0o755 },
  );
  port = await freePort();
  await startServer();
}, 120_000);

afterAll(async () => {
  if (server) await endProcess(server);
  if (ws) await rm(ws, { recursive: true, force: true });
});

interface Ran {
  code: number | null;
  out: string;
}

/** Runs one block in bash; the session's variables and functions carry over through state.sh. */
function runBlock(block: CodeBlock, state: string): Promise<Ran> {
  const code = block.code.replaceAll('localhost:3000', `127.0.0.1:${port}`).replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`);
  const script = [
    'set -eo pipefail',
    `[ -f ${state} ] && . ${state}`,
    'curl() { command curl --fail-with-body "$@"; }',
    code,
    'unset -f curl',
    `{ export -p; declare -f; } > ${state}.next`,
  ].join('\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${ws}:${process.env.PATH}`,
    DATABASE_URL: t.ownerUrl,
    LOG_LEVEL: 'warn',
    AWS_PAGER: '',
  };
  delete env.TOKEN;
  delete env.AWS_ACCESS_KEY_ID;
  delete env.AWS_SECRET_ACCESS_KEY;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd: ws, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve({ code: c, out });
    });
  });
}

describe('shell commands in the docs run as written', () => {
  for (const doc of SHELL_DOCS) {
    const blocks = codeBlocks(path.join(ROOT, doc)).filter((b) => b.lang === 'sh');
    describe(doc, () => {
      const state = () => path.join(ws, `state-${doc.replace(/\W/g, '_')}.sh`);
      for (const block of blocks) {
        const title = `${doc}:${block.line} ${block.code.split('\n')[0]?.slice(0, 60)}`;
        if (block.directive?.startsWith('skip')) {
          it.skip(`${title} (${block.directive})`, () => {});
          continue;
        }
        it(title, async () => {
          if (block.directive === 'restart') {
            if (server) await endProcess(server);
            await startServer();
          }
          const ran = await runBlock(block, state());
          expect(ran.code, `${title}\n${ran.out}`).toBe(0);
          // the next block starts from this one's variables
          await cp(`${state()}.next`, state()).catch(() => writeFile(state(), ''));
        }, 180_000);
      }
    });
  }
});

describe('SQL blocks in the docs run as pasted, as ledger_auditor', () => {
  const blocks = SQL_DOCS.flatMap((doc) => codeBlocks(path.join(ROOT, doc)).filter((b) => b.lang === 'sql'));
  it('there are some', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });
  for (const block of blocks) {
    const title = `${path.relative(ROOT, block.file)}:${block.line}`;
    if (block.directive?.startsWith('skip')) {
      it.skip(`${title} (${block.directive})`, () => {});
      continue;
    }
    it(title, async () => {
      const asOwner = block.directive === 'sql as owner';
      const handle = openDatabase(t.ownerUrl, { role: asOwner ? '' : AUDITOR_ROLE, max: 1 });
      try {
        for (const statement of sqlStatements(block.code)) {
          if (asOwner) await handle.pool.query(statement);
          else await runAuditQuery(handle.pool, statement, []);
        }
      } finally {
        await handle.close();
      }
    });
  }
});
