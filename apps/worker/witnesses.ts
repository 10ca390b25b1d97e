// Witnesses: where signed tree heads go outside the database, so that whoever holds one
// can later catch a rewrite (docs/tamper-evidence.md, "Witnesses"). LEDGER_WITNESSES is a
// comma-separated list of:
//   file:/path/heads.jsonl   one head per line, appended and fsynced (the file is never rewritten)
//   dir:/path/heads          one file per head, <size>-<timestamp>.json, never overwritten
//   https://host/path        POST application/json, one head per request (http:// too)
//   stdout                   one JSON line per head
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import type { TreeHead } from '../../db/tamper/tree-head.ts';

export interface Witness {
  name: string;
  publish(head: TreeHead): Promise<void>;
}

const line = (head: TreeHead) => `${JSON.stringify(head)}\n`;

async function appendSynced(file: string, text: string, flags: 'a' | 'wx'): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const fh = await open(file, flags, 0o644);
  try {
    await fh.write(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

export function parseWitnesses(spec: string, o: { stdout?: { write(s: string): unknown }; timeoutMs?: number } = {}): Witness[] {
  const out = o.stdout ?? process.stdout;
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s): Witness => {
      if (s === 'stdout') return { name: 'stdout', publish: async (h) => void out.write(line(h)) };
      if (s.startsWith('file:')) {
        const file = path.resolve(s.slice(5));
        return { name: s, publish: (h) => appendSynced(file, line(h), 'a') };
      }
      if (s.startsWith('dir:')) {
        const dir = path.resolve(s.slice(4));
        return {
          name: s,
          publish: async (h) => {
            try {
              await appendSynced(path.join(dir, `${String(h.treeSize).padStart(12, '0')}-${h.timestamp}.json`), line(h), 'wx');
            } catch (e) {
              // the same head published twice (a retry): the file already says it
              if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
            }
          },
        };
      }
      if (/^https?:\/\//.test(s)) {
        const url = new URL(s);
        return {
          name: `${url.origin}${url.pathname}`,
          publish: async (h) => {
            const res = await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify(h),
              signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
            });
            await res.arrayBuffer().catch(() => undefined);
            if (!res.ok) throw new Error(`${url.origin}${url.pathname} answered ${res.status}`);
          },
        };
      }
      throw new Error(`LEDGER_WITNESSES: "${s}" is not file:PATH, dir:PATH, http(s)://URL or stdout`);
    });
}

/** Publishes to every witness; one failing does not stop the others. Returns the failures. */
export async function publishTreeHead(witnesses: readonly Witness[], head: TreeHead): Promise<{ witness: string; error: Error }[]> {
  const results = await Promise.allSettled(witnesses.map((w) => w.publish(head)));
  return results.flatMap((r, i) => (r.status === 'rejected' ? [{ witness: (witnesses[i] as Witness).name, error: r.reason as Error }] : []));
}
