// Scenario 6: what the server itself can commit. pgbench, one single-row INSERT per
// transaction into a scratch table, 32 clients: the ceiling for anything that commits
// one row per transaction on this machine.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createScratchDatabase, withClient } from '../lib/pg.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';

const run = promisify(execFile);

export async function pgbenchScenario(scale: BenchScale): Promise<Measurement[]> {
  const db = await createScratchDatabase('pgbench');
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-pgbench-'));
  try {
    await withClient(db.url, (c) => c.query('create table scratch (id bigint generated always as identity primary key, v int not null, at timestamptz not null default now())'));
    const script = path.join(dir, 'insert.sql');
    await writeFile(script, 'insert into scratch (v) values (1);\n');
    const pgbench = async (clients: number, threads: number) => {
      log(`pgbench: -c ${clients} -j ${threads} -T ${scale.pgbenchSeconds}`);
      const { stdout } = await run('pgbench', ['-n', '-c', String(clients), '-j', String(threads), '-T', String(scale.pgbenchSeconds), '-f', script, db.url], { maxBuffer: 1 << 20 });
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout) ?? /tps = ([\d.]+)/.exec(stdout);
      const latency = /latency average = ([\d.]+) ms/.exec(stdout);
      if (!tps || !latency) throw new Error(`could not read pgbench output:\n${stdout}`);
      return { tps: Number(tps[1]), latencyMs: Number(latency[1]) };
    };
    const many = await pgbench(32, 2);
    // one client: what a single durable commit costs here, the floor under sync and pickup latency
    const one = await pgbench(1, 1);
    return [
      { scenario: 'pgbench', subject: 'pgbench single-row INSERT', metric: 'tx/s', value: many.tps, unit: 'tx/s', note: `-n -c 32 -j 2 -T ${scale.pgbenchSeconds}, latency avg ${many.latencyMs} ms` },
      { scenario: 'pgbench', subject: 'pgbench single-row INSERT (1 client)', metric: 'commit latency', value: one.latencyMs, unit: 'ms', note: `-n -c 1 -T ${scale.pgbenchSeconds}, ${Math.round(one.tps)} tx/s` },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  }
}
