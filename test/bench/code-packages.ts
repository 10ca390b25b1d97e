// Code packages at Lambda's sizes: pack, store (check every entry + insert), load
// (select + hash check) and materialise (load + extract into a cold cache) of a 10 MB and
// a 50 MB package, with time and memory. Prints a markdown table and writes
// test/bench/results/code-packages.json.
//   npx tsx test/bench/code-packages.ts [--runs 3] [--sizes 10,50]
// Uses DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres; the scratch database
// it creates is dropped at the end.
//
// The content is random (incompressible), so the zipped size is the size named: the
// worst case for the database and the wire. Memory is this process's: peak RSS and peak
// ArrayBuffer bytes (where zips and chunks live) above their level before the step,
// sampled every 5 ms.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { materializeCodePackage, loadCodePackage, packCodePackage, storeCodePackage } from '../../db/code/index.ts';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { createScratchDatabase, serverInfo } from './lib/pg.ts';
import { BENCH_DIR } from './lib/proc.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { runs: { type: 'string', default: '3' }, sizes: { type: 'string', default: '10,50' } },
});
const runs = Number(values.runs);
const sizes = values.sizes.split(',').map(Number);
const MB = 1_000_000;
const FILE_BYTES = 100_000;

interface Sample {
  ms: number;
  peakRssMb: number;
  peakArrayBuffersMb: number;
}

async function measure<T>(fn: () => Promise<T>): Promise<{ value: T; sample: Sample }> {
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  let rss = rss0;
  const ab0 = process.memoryUsage().arrayBuffers;
  let ab = ab0;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    ab = Math.max(ab, m.arrayBuffers);
  }, 5);
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  clearInterval(timer);
  const m = process.memoryUsage();
  rss = Math.max(rss, m.rss);
  ab = Math.max(ab, m.arrayBuffers);
  return { value, sample: { ms, peakRssMb: (rss - rss0) / 2 ** 20, peakArrayBuffersMb: (ab - ab0) / 2 ** 20 } };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const scratch = await createScratchDatabase('code_packages');
const work = await mkdtemp(path.join(os.tmpdir(), 'bench-code-'));
const rows: { size: number; step: string; runs: Sample[] }[] = [];
try {
  await migrate(scratch.url);
  const handle = openDatabase(scratch.url, { max: 4 });
  try {
    for (const size of sizes) {
      // just under the limit for 50 (the zip adds headers)
      const bytes = Math.min(size * MB, 52_000_000);
      const steps: Record<string, Sample[]> = { pack: [], store: [], load: [], 'materialise (cold cache)': [], 'materialise (cached)': [] };
      for (let run = 0; run < runs; run++) {
        const src = path.join(work, `src-${size}-${run}`);
        await mkdir(path.join(src, 'node_modules/blob'), { recursive: true });
        await writeFile(path.join(src, 'index.mjs'), 'export const handler = async () => "ok";\n');
        for (let i = 0; i * FILE_BYTES < bytes; i++) await writeFile(path.join(src, 'node_modules/blob', `part-${i}.bin`), randomBytes(Math.min(FILE_BYTES, bytes - i * FILE_BYTES)));

        const packed = await measure(() => packCodePackage(src));
        steps['pack']!.push(packed.sample);
        const stored = await measure(() => storeCodePackage(handle.db, packed.value.zip));
        steps['store']!.push(stored.sample);
        const zip = packed.value.zip;
        if (!stored.value.created || stored.value.zippedSize !== zip.length) throw new Error('store did not create the package');
        steps['load']!.push((await measure(() => loadCodePackage(handle.db, stored.value.sha256))).sample);
        const cacheDir = path.join(work, `cache-${size}-${run}`);
        const cold = await measure(() => materializeCodePackage(handle.db, stored.value.sha256, { cacheDir }));
        if (cold.value.cached) throw new Error('expected a cold cache');
        steps['materialise (cold cache)']!.push(cold.sample);
        steps['materialise (cached)']!.push((await measure(() => materializeCodePackage(handle.db, stored.value.sha256, { cacheDir }))).sample);
        process.stderr.write(`${size} MB run ${run + 1}/${runs}: zipped ${zip.length} bytes, ${packed.value.fileCount} files\n`);
        await rm(src, { recursive: true, force: true });
        await rm(cacheDir, { recursive: true, force: true });
      }
      for (const [step, samples] of Object.entries(steps)) rows.push({ size, step, runs: samples });
    }
  } finally {
    await handle.close();
  }
} finally {
  await rm(work, { recursive: true, force: true });
  await scratch.drop();
}

const server = await serverInfo();
const table = [
  `Code packages, ${runs} run(s) each, median (node ${process.version}, ${os.cpus().length} cores, ${server.version.split(' ').slice(0, 2).join(' ')})`,
  '',
  '| package | step | time ms | peak RSS above start MB | peak ArrayBuffers above start MB |',
  '| --- | --- | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.size} MB | ${r.step} | ${median(r.runs.map((s) => s.ms)).toFixed(0)} | ${median(r.runs.map((s) => s.peakRssMb)).toFixed(0)} | ${median(r.runs.map((s) => s.peakArrayBuffersMb)).toFixed(0)} |`,
  ),
].join('\n');
process.stdout.write(`${table}\n`);
const resultsDir = path.join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  path.join(resultsDir, 'code-packages.json'),
  `${JSON.stringify({ at: new Date().toISOString(), node: process.version, loadavg: os.loadavg(), server, runs, rows }, null, 2)}\n`,
);
