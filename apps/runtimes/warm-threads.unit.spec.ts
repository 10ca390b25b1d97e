// Warm threads (docs/worker.md): a pool can start its threads before any attempt needs
// them, so the first attempt of a function imports its module on a running thread.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR } from './test-fixtures.ts';
import { ThreadPool } from './thread-pool.ts';

const logger = pino({ level: 'silent' });
const pools: ThreadPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

const request = (threadOf: string) => ({
  moduleUrl: pathToFileURL(path.join(FIXTURES_DIR, 'thread-id.ts')).href, exportName: 'handler', payload: {},
  invocationId: threadOf, functionName: 'warm', functionVersion: 1, attempt: 1, timeoutMs: 30_000, clientContext: null,
});

describe('ThreadPool.prestart', () => {
  it('starts idle threads up to the number asked and the pool size, and attempts run on them', async () => {
    const pool = new ThreadPool(96, 3, logger);
    pools.push(pool);
    expect(pool.stats().threads).toBe(0);
    pool.prestart(2);
    expect(pool.stats().threads).toBe(2);
    pool.prestart(2); // already there: nothing more
    expect(pool.stats().threads).toBe(2);
    const outcomes = await Promise.all([pool.run(request('a')), pool.run(request('b'))]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true]);
    // both ran on the started threads: none was added
    expect(pool.stats().threads).toBe(2);
    pool.prestart(10);
    expect(pool.stats().threads).toBe(3);
  });
});
