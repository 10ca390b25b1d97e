// Scenario 3: sync invokes (RequestResponse) of the inline no-op function over HTTP at 1
// and 64 connections, next to a bare Hono route running the same handler without the
// ledger (each server in its own child process).
import path from 'node:path';
import { Unavailable, createLedgerDatabase } from '../lib/ledger.ts';
import { invokeUrl, probeInvoke } from '../lib/lambda.ts';
import { httpLoad, type LoadResult } from '../lib/load.ts';
import { BENCH_DIR, spawnNode, startLedger, waitForHttp } from '../lib/proc.ts';
import { freePort } from '../../helpers/pg-admin.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';

const rows = (subject: string, r: LoadResult, note: string): Measurement[] => [
  { scenario: 'sync', subject, metric: 'req/s', value: r.rps, unit: 'req/s', note: `${note}; ${r.non2xx} non-2xx, ${r.errors} errors; mean ${r.mean.toFixed(3)} ms` },
  { scenario: 'sync', subject, metric: 'p50', value: r.p50, unit: 'ms' },
  { scenario: 'sync', subject, metric: 'p99', value: r.p99, unit: 'ms' },
];

async function bare(seconds: number): Promise<Measurement[]> {
  const port = await freePort();
  const server = spawnNode([path.join(BENCH_DIR, 'peers/bare-hono.ts')], { PORT: String(port) });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${base}/healthz`, server);
    const url = invokeUrl(base, 'bench_inline');
    const one = await httpLoad({ url, connections: 1, seconds });
    const many = await httpLoad({ url, connections: 64, seconds });
    return [...rows('bare Hono (1 conn)', one, 'no ledger'), ...rows('bare Hono (64 conn)', many, 'no ledger')];
  } finally {
    await server.stop();
  }
}

async function ours(seconds: number): Promise<Measurement[]> {
  const db = await createLedgerDatabase('sync');
  try {
    const api = await startLedger('api', db.url);
    try {
      await probeInvoke(api.baseUrl, 'bench_inline', 'RequestResponse', 200);
      const url = invokeUrl(api.baseUrl, 'bench_inline');
      const headers = { 'x-amz-invocation-type': 'RequestResponse' };
      const one = await httpLoad({ url, connections: 1, seconds, headers });
      const many = await httpLoad({ url, connections: 64, seconds, headers });
      return [
        ...rows('invoke-ledger (1 conn)', one, 'inline no-op, 3 events per invoke'),
        ...rows('invoke-ledger (64 conn)', many, 'inline no-op, 3 events per invoke'),
      ];
    } finally {
      await api.stop();
    }
  } catch (e) {
    if (e instanceof Unavailable) return [{ scenario: 'sync', subject: 'invoke-ledger', metric: 'req/s', value: null, unit: 'req/s', note: e.message }];
    throw e;
  } finally {
    await db.close();
  }
}

export async function syncScenario(scale: BenchScale): Promise<Measurement[]> {
  log(`sync: ${scale.syncSeconds} s per run`);
  return [...(await bare(scale.syncSeconds)), ...(await ours(scale.syncSeconds))];
}
