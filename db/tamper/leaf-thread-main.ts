// The hashing thread: leaf hashes of a batch of events, off the worker's event loop.
// Rows arrive as plain arrays with `data` still JSON text; the hashes go back in one
// transferred buffer, 32 bytes per row in order.
import { parentPort } from 'node:worker_threads';
import { hashLeafRows, type LeafRow } from './leaf.ts';

interface Request {
  id: number;
  rows: LeafRow[];
}

parentPort?.on('message', ({ id, rows }: Request) => {
  try {
    const hashes = hashLeafRows(rows);
    parentPort?.postMessage({ id, hashes }, [hashes]);
  } catch (e) {
    parentPort?.postMessage({ id, error: { message: (e as Error).message, row: (e as { row?: number }).row ?? -1 } });
  }
});
