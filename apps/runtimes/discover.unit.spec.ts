import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverFunctions } from './index.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'discover-'));
// No package.json here: outside the project .ts files load as CommonJS-typed modules, which must work too.
const files: Record<string, string> = {
  'greet.ts': 'export const config = { timeoutMs: 1000, memoryMb: 64 };\nexport async function handler(e: unknown): Promise<unknown> { return e; }\n',
  'plain.mjs': 'export const handler = async () => 1;\n',
  'legacy.js': 'export function handler() { return 2; }\nexport const config = "not an object";\n',
  'helper.ts': 'export const notAHandler = 1;\n',
  'broken.ts': 'export const handler = (\n',
  'exits.ts': 'process.exit(4);\nexport const handler = () => 1;\n',
  'greet.spec.ts': 'export const handler = () => 1;\n',
  'types.d.ts': 'export declare const handler: () => number;\n',
  'bad.name.ts': 'export const handler = () => 1;\n',
  'notes.txt': 'export const handler = () => 1;\n',
};
for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('discoverFunctions', () => {
  it('registers modules exporting handler, with config and content hash, skipping the rest', async () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    const found = await discoverFunctions(dir, { logger });

    expect(found.map((f) => f.name)).toEqual(['greet', 'legacy', 'plain']);
    const greet = found.find((f) => f.name === 'greet')!;
    expect(greet.file).toBe(path.join(dir, 'greet.ts'));
    expect(greet.config).toEqual({ timeoutMs: 1000, memoryMb: 64 });
    expect(greet.contentHash).toBe(createHash('sha256').update(files['greet.ts']!).digest('hex'));
    expect(found.find((f) => f.name === 'legacy')!.config).toEqual({});

    const warned = warnings.join('');
    expect(warned).toContain('broken.ts');
    expect(warned).toContain('exits.ts');
    expect(warned).toContain('bad.name.ts');
  });

  it('finds the example functions', async () => {
    const found = await discoverFunctions(new URL('../../functions/', import.meta.url).pathname);
    expect(found.map((f) => f.name)).toEqual(expect.arrayContaining(['echo', 'fail', 'orders', 'sleep']));
  });
});
