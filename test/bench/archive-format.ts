// The archive format, measured (docs/retention.md "Why gzip JSON lines, not Parquet"): one
// month of the bench history exported as the product does (gzip JSON lines), then the same
// events written as Parquet through @dsnp/parquetjs, with GZIP and with SNAPPY pages. Sizes,
// and the time to write each from events already in memory (the database read is the same
// for both and left out). Parquet is not a dependency of the product: install it anywhere
// and say where:
//   npm install --prefix /tmp/pq @dsnp/parquetjs@1.8.9
//   PARQUET_MODULE=/tmp/pq/node_modules/@dsnp/parquetjs npx tsx test/bench/archive-format.ts [--events 300000]
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { exportPartition } from '../../db/retention/archive.ts';
import type { ArchivedEvent } from '../../db/retention/archive-file.ts';
import { fillHistory, monthStart, partitionOf } from './lib/history.ts';
import { createScratchDatabase } from './lib/pg.ts';

interface ParquetModule {
  ParquetSchema: new (fields: Record<string, { type: string; optional?: boolean; compression?: string }>) => unknown;
  ParquetWriter: { openFile(schema: unknown, file: string, o?: { rowGroupSize?: number }): Promise<{ appendRow(r: object): Promise<void>; close(): Promise<void> }> };
}

const { values } = parseArgs({ args: process.argv.slice(2), options: { events: { type: 'string', default: '300000' } } });
const EVENTS = Number(values.events);
const modulePath = process.env.PARQUET_MODULE ?? '@dsnp/parquetjs';
// CommonJS, from wherever it was installed
const { ParquetSchema, ParquetWriter } = createRequire(import.meta.url)(modulePath) as ParquetModule;

const db = await createScratchDatabase('archive_format');
const dir = await mkdtemp(path.join(tmpdir(), 'archive-format-'));
const owner = new pg.Client({ connectionString: db.url });
await owner.connect();
try {
  await migrate(db.url);
  await owner.query('select ledger.premake_event_partitions(0, $1)', [monthStart(-2)]);
  await fillHistory(owner, { total: Math.ceil(EVENTS / 3) });
  const h = openDatabase(db.url, { role: '', max: 2 });
  const exported = await exportPartition(h.db, { partition: partitionOf(monthStart(-2)), dir, by: 'bench' }).finally(() => h.close());
  const gz = await readFile(exported.dataPath);
  const text = gunzipSync(gz).toString('utf8');
  const lines = text.trimEnd().split('\n');
  const events = lines.map((l) => JSON.parse(l) as ArchivedEvent);
  const n = events.length;

  const timeIt = async (fn: () => Promise<unknown> | unknown) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  const gzipMs = await timeIt(() => gzipSync(Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8')));
  const rows: string[] = [`| gzip JSON lines (the product's format) | ${(gz.length / 1e6).toFixed(2)} MB | ${((gz.length / n) * 1e6 / 1e6).toFixed(1)} MB | ${gzipMs.toFixed(0)} ms (${((n / gzipMs) * 1000).toFixed(0)} events/s) |`];
  const results: Record<string, { bytes: number; ms: number }> = { ndjsonGzip: { bytes: gz.length, ms: gzipMs } };
  for (const compression of ['GZIP', 'SNAPPY']) {
    const c = { compression };
    const schema = new ParquetSchema({
      position: { type: 'INT64', ...c },
      tx_id: { type: 'UTF8', ...c },
      invocation_id: { type: 'UTF8', ...c },
      seq: { type: 'INT32', ...c },
      type: { type: 'UTF8', ...c },
      attempt: { type: 'INT32', optional: true, ...c },
      occurred_at: { type: 'UTF8', ...c },
      data: { type: 'UTF8', ...c },
    });
    const file = path.join(dir, `events.${compression.toLowerCase()}.parquet`);
    const ms = await timeIt(async () => {
      const w = await ParquetWriter.openFile(schema, file, { rowGroupSize: 50_000 });
      for (const e of events) {
        await w.appendRow({
          position: BigInt(e.position),
          tx_id: e.txId,
          invocation_id: e.invocationId,
          seq: e.seq,
          type: e.type,
          ...(e.attempt === null ? {} : { attempt: e.attempt }),
          occurred_at: e.occurredAt,
          data: JSON.stringify(e.data),
        });
      }
      await w.close();
    });
    const bytes = (await stat(file)).size;
    results[`parquet${compression}`] = { bytes, ms };
    rows.push(`| Parquet, ${compression} pages (@dsnp/parquetjs) | ${(bytes / 1e6).toFixed(2)} MB (×${(bytes / gz.length).toFixed(2)}) | ${((bytes / n) * 1e6 / 1e6).toFixed(1)} MB | ${ms.toFixed(0)} ms (${((n / ms) * 1000).toFixed(0)} events/s, ×${(ms / gzipMs).toFixed(1)} the gzip time) |`);
  }
  process.stdout.write(`\n## Archive format at ${n} events (${os.cpus().length} cores, load ${os.loadavg()[0]?.toFixed(1)})\n\n| format | file | per million events | write, from events in memory |\n|---|---:|---:|---|\n${rows.join('\n')}\n`);
  process.stderr.write(`${JSON.stringify({ events: n, ...results })}\n`);
} finally {
  await owner.end();
  await rm(dir, { recursive: true, force: true });
  await db.drop();
}
