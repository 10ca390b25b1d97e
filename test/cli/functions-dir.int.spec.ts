// A FUNCTIONS_DIR outside the repository, with no package.json saying "type": "module":
// its .ts and .js files load as CommonJS-scoped modules. Inline and thread handlers load
// through one loader, so they behave the same, whether the server runs from the
// `invoke-ledger` binary or through tsx; a module that cannot load that way (top-level
// await) fails the same way in both, with one actionable ImportModuleError.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

let t: TestDatabase;
let dir: string;
const services = new Set<ServiceProcess>();

const FILES: Record<string, string> = {
  'tsinline.ts': "export const config = { isolation: 'inline' };\nexport async function handler(e: unknown): Promise<unknown> { return { ts: e }; }\n",
  'tsthread.ts': "export const config = { isolation: 'thread' };\nexport async function handler(e: unknown): Promise<unknown> { return { ts: e }; }\n",
  'esminline.js': "export const config = { isolation: 'inline' };\nexport async function handler(e) { return { esm: e }; }\n",
  'esmthread.js': "export const config = { isolation: 'thread' };\nexport async function handler(e) { return { esm: e }; }\n",
  'cjsinline.js': "exports.config = { isolation: 'inline' };\nexports.handler = async (e) => ({ cjs: e });\n",
  'cjsthread.js': "exports.config = { isolation: 'thread' };\nexports.handler = async (e) => ({ cjs: e });\n",
  // ES-module-only syntax in a CommonJS scope: cannot load (discovery skips it; created below by hand)
  'toplevelawait.ts': 'const n = await Promise.resolve(1);\nexport async function handler(): Promise<number> { return n; }\n',
};

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-functions-'));
  for (const [name, content] of Object.entries(FILES)) await writeFile(path.join(dir, name), content);
}, 60_000);

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await rm(dir, { recursive: true, force: true });
});

async function graphql(base: string, query: string): Promise<{ data?: Record<string, unknown>; errors?: unknown[] }> {
  const res = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
  return (await res.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
}

async function invoke(base: string, name: string): Promise<{ status: number; functionError: string | null; body: unknown }> {
  const res = await fetch(`${base}/invoke/${name}`, { method: 'POST', body: JSON.stringify({ n: 1 }) });
  return { status: res.status, functionError: res.headers.get('x-function-error'), body: await res.json() };
}

describe('FUNCTIONS_DIR outside the repository without "type": "module"', () => {
  for (const entry of ['bin', 'tsx'] as const) {
    it(`inline and thread handlers load the same way (server started through ${entry === 'bin' ? 'bin/invoke-ledger.mjs' : 'tsx'})`, async () => {
      const server = await spawnService('api', await freePort(), { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: dir }, { entry });
      services.add(server);
      const base = `http://127.0.0.1:${server.port}`;

      for (const [name, key] of [['tsinline', 'ts'], ['tsthread', 'ts'], ['esminline', 'esm'], ['esmthread', 'esm'], ['cjsinline', 'cjs'], ['cjsthread', 'cjs']]) {
        expect(await invoke(base, name as string), name).toEqual({ status: 200, functionError: null, body: { [key as string]: { n: 1 } } });
      }

      // discovery skipped the module that cannot load, naming the fix
      expect(server.output()).toMatch(/toplevelawait\.ts is loaded as CommonJS because no package\.json with \\"type\\": \\"module\\" covers it/);
      // created by hand, it fails identically in both isolations, with that message
      const messages: string[] = [];
      for (const isolation of ['INLINE', 'THREAD']) {
        const name = `tla${entry}${isolation.toLowerCase()}`;
        const created = await graphql(base, `mutation { createFunction(input: {name: "${name}", runtime: MODULE, handler: "toplevelawait.ts", isolation: ${isolation}}) { name } }`);
        expect(created.errors, JSON.stringify(created.errors)).toBeUndefined();
        const r = await invoke(base, name);
        expect(r).toMatchObject({ status: 200, functionError: 'Runtime.ImportModuleError' });
        messages.push((r.body as { errorMessage: string }).errorMessage);
      }
      expect(messages[0]).toBe(messages[1]);
      expect(messages[0]).toContain(`${path.join(dir, 'toplevelawait.ts')} is loaded as CommonJS because no package.json with "type": "module" covers it`);
      expect(messages[0]).toContain(`Add a package.json with {"type": "module"} to ${dir}`);

      await endProcess(server);
      services.delete(server);
    }, 120_000);
  }
});
