// Accepts per second on the Lambda Event route, with and without write coalescing
// (InvokeService's group commit). In-process server on an ephemeral port, its own
// scratch database, autocannon with 64 connections for 10 s per variant.
//
//   npx tsx test/bench/accept.ts [--duration 10] [--connections 64]
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/bench/accept.ts
//
// Prints a table and writes test/bench/results/accept-<timestamp>.json.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { openDatabase } from '../../db/connection.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { composeApi, type ApiSettings } from '../../apps/cli/compose.ts';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { databaseUrl } from '../helpers/pg-admin.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    pool: { type: 'string', default: '20' },
  },
});
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const POOL = Number(values.pool);
const ADMIN_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const FUNCTIONS_DIR = fileURLToPath(new URL('../../functions/', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const silent = pino({ level: 'silent' });

interface Variant {
  label: string;
  options: NonNullable<ApiSettings['invoke']>;
}

const VARIANTS: Variant[] = [
  { label: 'coalesced, function cache (default)', options: {} },
  { label: 'one transaction per accept, function cache', options: { coalesce: false } },
  { label: 'coalesced, lookup per request', options: { functionCacheMs: 0 } },
  { label: 'one transaction per accept, lookup per request', options: { coalesce: false, functionCacheMs: 0 } },
];

interface Row {
  variant: string;
  acceptsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  committed: number;
  acceptsPerTx: number;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function runVariant(v: Variant): Promise<Row> {
  const name = `bench_accept_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`create database "${name}"`));
  const url = databaseUrl(ADMIN_URL, name);
  try {
    await migrate(url);
    const handle = openDatabase(url, { max: POOL });
    const runtimes = createRuntimes({ functionsDir: FUNCTIONS_DIR, logger: silent, poolSize: 1 });
    try {
      await createFunction(handle.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
      const { app } = composeApi({ db: handle.db, instanceId: 'bench', runtimes, logger: silent, functionsDir: FUNCTIONS_DIR, invoke: v.options });
      let server!: ReturnType<typeof serve>;
      const port = await new Promise<number>((resolve) => {
        server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => resolve(info.port));
      });
      const target = {
        url: `http://127.0.0.1:${port}/2015-03-31/functions/echo/invocations`,
        method: 'POST' as const,
        headers: { 'x-amz-invocation-type': 'Event', 'content-type': 'application/json' },
        body: JSON.stringify({ order: 42, items: ['a', 'b'] }),
        connections: CONNECTIONS,
      };
      await autocannon({ ...target, duration: 1 }); // warm-up: JIT, pool connections
      const since = await lastPosition(handle.db);
      const r = await autocannon({ ...target, duration: DURATION });
      const { committed, xacts } = await writtenSince(handle.db, since);
      const s = server as unknown as import('node:http').Server;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
      return {
        variant: v.label,
        acceptsPerSec: Math.round(r.requests.average),
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        non2xx: r.non2xx,
        errors: r.errors,
        committed,
        acceptsPerTx: Number((committed / Math.max(1, xacts)).toFixed(1)),
      };
    } finally {
      await runtimes.close();
      await handle.close();
    }
  } finally {
    await admin((c) => c.query(`drop database if exists "${name}" with (force)`));
  }
}

type Db = import('../../db/schema.ts').Db;

async function lastPosition(db: Db): Promise<string> {
  const { rows } = await sql<{ p: string }>`select coalesce(max(position), 0)::text as p from ledger.events`.execute(db);
  return rows[0]?.p ?? '0';
}

/** events written after `since`, and how many transactions wrote them (events carry tx_id) */
async function writtenSince(db: Db, since: string): Promise<{ committed: number; xacts: number }> {
  const { rows } = await sql<{ n: number; x: number }>`
    select count(*)::int as n, count(distinct tx_id)::int as x from ledger.events where position > ${since}::bigint`.execute(db);
  return { committed: rows[0]?.n ?? 0, xacts: rows[0]?.x ?? 0 };
}

const rows: Row[] = [];
for (const v of VARIANTS) {
  process.stderr.write(`running ${v.label} for ${DURATION}s with ${CONNECTIONS} connections…\n`);
  rows.push(await runVariant(v));
}

const header = '| variant | accepts/s | p50 ms | p99 ms | non-2xx | errors | committed | accepts/tx |';
process.stdout.write(`\n${header}\n|${'---|'.repeat(8)}\n`);
for (const r of rows) {
  process.stdout.write(`| ${r.variant} | ${r.acceptsPerSec} | ${r.p50Ms} | ${r.p99Ms} | ${r.non2xx} | ${r.errors} | ${r.committed} | ${r.acceptsPerTx} |\n`);
}
const [on, off] = rows;
if (on && off) process.stdout.write(`\ncoalescing: ${(on.acceptsPerSec / Math.max(1, off.acceptsPerSec)).toFixed(2)}x the accepts/s (with the function cache)\n`);

mkdirSync(RESULTS_DIR, { recursive: true });
const file = `${RESULTS_DIR}accept-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(
  file,
  JSON.stringify({ at: new Date().toISOString(), host: { cpus: os.cpus().length, node: process.version }, duration: DURATION, connections: CONNECTIONS, pool: POOL, rows }, null, 2),
);
process.stdout.write(`results: ${file}\n`);
