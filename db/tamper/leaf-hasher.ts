// Where leaf hashes are computed: inline, or in a thread of their own so that a worker
// process's event loop (claims, completions, sync invokes) does not wait while the sealer
// canonicalizes and hashes a batch. Canonical JSON is most of sealing's CPU.
import { Worker } from 'node:worker_threads';
import { hashLeafRows, LeafRowError, type LeafRow } from './leaf.ts';

export interface LeafHasher {
  /** one 32-byte hash per row, in order; a row that cannot be hashed rejects with LeafRowError */
  hash(rows: LeafRow[]): Promise<Buffer[]>;
  close(): Promise<void>;
}

const split = (buffer: ArrayBuffer): Buffer[] => Array.from({ length: buffer.byteLength / 32 }, (_, i) => Buffer.from(buffer, i * 32, 32));

export const inlineHasher: LeafHasher = {
  hash: async (rows) => split(hashLeafRows(rows)),
  close: async () => {},
};

type Reply = { id: number; hashes: ArrayBuffer } | { id: number; error: { message: string; row: number } };

/** A hashing thread, started on first use; it keeps the process alive only while it has work. */
export function threadHasher(): LeafHasher {
  let worker: Worker | null = null;
  let nextId = 0;
  const pending = new Map<number, { resolve: (h: Buffer[]) => void; reject: (e: Error) => void }>();
  const failAll = (e: Error) => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  const start = (): Worker => {
    // its own loader (tsx), none of the parent's flags: see leaf-thread.mjs
    const w = new Worker(new URL('./leaf-thread.mjs', import.meta.url), { execArgv: [] });
    w.unref();
    w.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      if ('error' in m) p.reject(new LeafRowError(m.error.row, m.error.message));
      else p.resolve(split(m.hashes));
    });
    w.on('error', (e) => {
      if (worker === w) worker = null;
      failAll(e);
    });
    w.on('exit', (code) => {
      if (worker === w) worker = null;
      failAll(new Error(`the hashing thread exited (${code})`));
    });
    return w;
  };
  return {
    hash(rows) {
      if (rows.length === 0) return Promise.resolve([]);
      const w = (worker ??= start());
      const id = ++nextId;
      w.ref();
      return new Promise<Buffer[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.postMessage({ id, rows });
      });
    },
    async close() {
      const w = worker;
      worker = null;
      if (w) await w.terminate();
    },
  };
}
