// `npx tsx test/bench/profile-summary.ts <file.cpuprofile> [top]`: where a V8 CPU profile
// spent its time, by self time per function and by file (a terminal view of what
// Chrome DevTools shows), for reading the profiles BENCH_CPU_PROF=<dir> writes.
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: tsx test/bench/profile-summary.ts <file.cpuprofile> [top]\n');
  process.exit(1);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const shortUrl = (url: string) => {
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  return nm >= 0 ? u.slice(nm + 13) : path.relative(process.cwd(), u);
};
const fnKey = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const fileKey = (n: Node) => {
  const u = shortUrl(n.callFrame.url);
  if (u.startsWith('(')) return n.callFrame.functionName || u; // (idle), (garbage collector), (program)
  const m = /^(@[^/]+\/[^/]+|[^/]+)\//.exec(u);
  return u.includes('/') && !u.startsWith('apps') && !u.startsWith('db') && m ? `node_modules: ${m[1]}` : u;
};

function table(title: string, key: (n: Node) => string) {
  const agg = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (n) agg.set(key(n), (agg.get(key(n)) ?? 0) + us);
  }
  process.stdout.write(`\n${title} (total ${(total / 1000).toFixed(0)} ms sampled)\n`);
  for (const [k, us] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}\n`);
  }
}
table('self time by package / file', fileKey);
table('self time by function', fnKey);
