// Witnesses on the local file system and stdout: append-only, never overwritten, and a
// bad LEDGER_WITNESSES entry is refused at start, not at the first head.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { parseWitnesses, publishTreeHead } from './witnesses.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'witness-unit-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const head = (treeSize: number): TreeHead => ({ treeSize, timestamp: 1_700_000_000_000 + treeSize, rootHash: 'ab'.repeat(32), keyId: 'cd'.repeat(32), signature: 'A'.repeat(86) + '==' });

describe('witnesses', () => {
  it('file appends one line per head; dir writes one file per head and keeps the first on a repeat; stdout prints', async () => {
    const lines: string[] = [];
    const ws = parseWitnesses(` file:${dir}/a/heads.jsonl , dir:${dir}/b, stdout `, { stdout: { write: (s: string) => lines.push(s) } });
    expect(ws.map((w) => w.name)).toEqual([`file:${dir}/a/heads.jsonl`, `dir:${dir}/b`, 'stdout']);
    expect(await publishTreeHead(ws, head(1))).toEqual([]);
    expect(await publishTreeHead(ws, head(2))).toEqual([]);
    expect(await publishTreeHead(ws, head(2))).toEqual([]);
    const file = (await readFile(path.join(dir, 'a/heads.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(file).toEqual([head(1), head(2), head(2)]);
    expect((await readdir(path.join(dir, 'b'))).sort()).toEqual(['000000000001-1700000000001.json', '000000000002-1700000000002.json']);
    expect(lines.map((l) => JSON.parse(l))).toEqual([head(1), head(2), head(2)]);
  });

  it('one failing witness does not stop the others, and says which it was', async () => {
    const ws = parseWitnesses(`file:${dir}/ok.jsonl,http://127.0.0.1:1/heads`);
    const failures = await publishTreeHead(ws, head(3));
    expect(failures.map((f) => f.witness)).toEqual(['http://127.0.0.1:1/heads']);
    expect(JSON.parse(await readFile(path.join(dir, 'ok.jsonl'), 'utf8'))).toEqual(head(3));
  });

  it('refuses what it does not know', () => {
    expect(() => parseWitnesses('ftp://x/y')).toThrow(/not file:PATH, dir:PATH, http\(s\):\/\/URL or stdout/);
    expect(parseWitnesses('')).toEqual([]);
  });
});
