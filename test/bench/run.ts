// `npm run bench [-- --only drain,accept] [-- --quick]`: every scenario against ONE
// PostgreSQL in one run, so the comparisons are ratios taken side by side. Prints a
// markdown table and writes the JSON to test/bench/results/<date>.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { evaluateTargets } from './lib/targets.ts';
import { adminUrl, serverInfo } from './lib/pg.ts';
import { BENCH_DIR } from './lib/proc.ts';
import { FULL, QUICK, log, type BenchScale, type Measurement } from './lib/types.ts';
import { drainScenario } from './scenarios/drain.ts';
import { acceptScenario } from './scenarios/accept.ts';
import { syncScenario } from './scenarios/sync.ts';
import { pickupScenario } from './scenarios/pickup.ts';
import { scaleScenario } from './scenarios/scale.ts';
import { pgbenchScenario } from './scenarios/pgbench.ts';
import { feedScenario } from './scenarios/feed.ts';
import { consoleScenario } from './scenarios/console.ts';
import { sealScenario } from './scenarios/seal.ts';
import { workersScenario } from './scenarios/workers.ts';
import { tracingScenario } from './scenarios/tracing.ts';

const SCENARIOS: Record<string, (scale: BenchScale, so_far: Measurement[]) => Promise<Measurement[]>> = {
  drain: drainScenario,
  accept: acceptScenario,
  sync: syncScenario,
  pickup: pickupScenario,
  scale: scaleScenario,
  pgbench: pgbenchScenario,
  feed: feedScenario,
  console: consoleScenario,
  // tamper evidence: the drain with the sealer off and on, sealing throughput, proofs at 1M events
  seal: sealScenario,
  // scale-out: 1, 2, 4 worker processes on one ledger, direct and through PgBouncer (docs/scale.md)
  workers: workersScenario,
  // observability: drain and accept with tracing off and on (docs/observability.md)
  tracing: tracingScenario,
};

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { only: { type: 'string' }, quick: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  process.stdout.write(`usage: npm run bench -- [--quick] [--only ${Object.keys(SCENARIOS).join(',')}]\n`);
  process.exit(0);
}
// `seal` (several minutes at full scale) and `feed` (a failure mode, not throughput) run when named:
// npm run bench -- --only drain,seal
const ON_REQUEST = new Set(['seal', 'feed', 'workers', 'tracing']);
const only = values.only ? values.only.split(',').map((s) => s.trim()) : Object.keys(SCENARIOS).filter((s) => !ON_REQUEST.has(s));
for (const name of only) if (!SCENARIOS[name]) throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(', ')}`);
const scale = values.quick ? QUICK : FULL;

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

// A stray error of a peer library's pool must not end the whole run without a table.
process.on('uncaughtException', (e) => log(`uncaught: ${(e as Error).stack ?? String(e)}`.slice(0, 2000)));
process.on('unhandledRejection', (e) => log(`unhandled rejection: ${(e as Error)?.stack ?? String(e)}`.slice(0, 2000)));

const started = new Date();
const server = await serverInfo();
const machine = {
  nproc: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? '',
  memory: sh('free', ['-h']).split('\n')[1]?.replace(/\s+/g, ' ') ?? '',
  loadavgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  node: process.version,
  postgres: server.version,
  postgresSettings: server.settings,
  commit: sh('git', ['rev-parse', '--short', 'HEAD']),
};
log(`server ${new URL(adminUrl()).host}: ${server.version.split(' on ')[0]}; load ${machine.loadavgAtStart.join(' ')}; scale ${scale.quick ? 'quick' : 'full'}`);

const measurements: Measurement[] = [];
const failures: { scenario: string; error: string }[] = [];
for (const name of only) {
  const t0 = Date.now();
  try {
    measurements.push(...(await (SCENARIOS[name] as (typeof SCENARIOS)[string])(scale, measurements)));
  } catch (e) {
    log(`${name} FAILED: ${(e as Error).stack ?? String(e)}`);
    failures.push({ scenario: name, error: (e as Error).message });
  }
  log(`${name} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
const targets = evaluateTargets(measurements);

const fmt = (v: number | null) => (v === null ? '—' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2));
const lines = [
  `### ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC — ${scale.quick ? 'quick' : 'full'} scale, ${machine.nproc} cores, ${server.version.split(' on ')[0]}, load at start ${machine.loadavgAtStart.join(' ')}`,
  '',
  '| scenario | subject | metric | value | notes |',
  '| --- | --- | --- | ---: | --- |',
  ...measurements.map((m) => `| ${m.scenario} | ${m.subject} | ${m.metric} | ${fmt(m.value)}${m.value === null ? '' : ` ${m.unit}`} | ${m.note ?? ''} |`),
  '',
  '| target | status | detail |',
  '| --- | --- | --- |',
  ...targets.map((t) => `| ${t.target} | ${t.status} | ${t.detail} |`),
  ...(failures.length ? ['', ...failures.map((f) => `- **${f.scenario} failed**: ${f.error.split('\n')[0]}`)] : []),
];
process.stdout.write(`${lines.join('\n')}\n`);

const dir = path.join(BENCH_DIR, 'results');
mkdirSync(dir, { recursive: true });
const file = path.join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify({ startedAt: started, scale, scenarios: only, machine, measurements, targets, failures, table: lines.join('\n') }, null, 2)}\n`);
log(`wrote ${path.relative(process.cwd(), file)}`);
process.exit(failures.length ? 1 : 0);
