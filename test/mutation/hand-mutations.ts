// The ten one-line mutations of issue 29 (and the one bug the event model found), applied
// one at a time to db/lifecycle.ts and db/writer.ts; each must turn the lifecycle tests red.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/mutation/hand-mutations.ts
// Prints one line per mutation (killed by which test, or SURVIVED) and exits 1 if any
// survived. The files are restored after each run, also on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const SPECS = ['db/event-model.unit.spec.ts', 'db/lifecycle.unit.spec.ts', 'db/writer-model.int.spec.ts'];

interface Mutation {
  name: string;
  file: 'db/lifecycle.ts' | 'db/writer.ts';
  from: string;
  to: string;
}

const MUTATIONS: Mutation[] = [
  { name: 'allow succeeded after succeeded', file: 'db/lifecycle.ts', from: "if (s !== 'running') return `no attempt is running", to: "if (s !== 'running' && !(event.type === 'succeeded' && s === 'succeeded')) return `no attempt is running" },
  { name: 'allow cancel while running', file: 'db/lifecycle.ts', from: "if (s !== 'queued' && s !== 'retry_scheduled') return `only queued", to: "if (s !== 'queued' && s !== 'retry_scheduled' && s !== 'running') return `only queued" },
  { name: 'allow dead-lettering a sync or poll invocation', file: 'db/lifecycle.ts', from: "if (state.invocationType !== 'async') return 'only async invocations are dead-lettered';", to: '' },
  { name: "drop the writer's end-of-append check", file: 'db/writer.ts', from: "if (unfinished !== null) throw new LifecycleViolation(", to: 'if (unfinished === "never") throw new LifecycleViolation(' },
  { name: "drop fold's seq-order check", file: 'db/lifecycle.ts', from: 'if (e.seq !== (state?.lastSeq ?? 0) + 1) {', to: 'if (false as boolean) {' },
  { name: 'accept retried with any attempt number', file: 'db/lifecycle.ts', from: 'if (event.data.attempt !== state.attempts + 1) return `the next attempt is', to: 'if (false as boolean) return `the next attempt is' },
  { name: 'allow redrive from cancelled', file: 'db/lifecycle.ts', from: "if (s !== 'dead_lettered') return `only dead letters", to: "if (s !== 'dead_lettered' && s !== 'cancelled') return `only dead letters" },
  { name: 'allow RetriesExhausted without a failed attempt', file: 'db/lifecycle.ts', from: "return event.data.reason === 'RetriesExhausted' ? 'RetriesExhausted needs a failed final attempt' : null;", to: 'return null;' },
  { name: "drop the writer's seq check", file: 'db/writer.ts', from: 'if (actual !== req.expectedSeq) {', to: 'if (false as boolean) {' },
  { name: 'drop the succeeded/failed attempt check', file: 'db/lifecycle.ts', from: 'if (event.data.attempt !== state.attempts) return `attempt', to: 'if (false as boolean) return `attempt' },
  { name: 'any reason may follow a failed final attempt (the bug the model found)', file: 'db/lifecycle.ts', from: "return event.data.reason === 'RetriesExhausted' || event.data.reason === 'EventAgeExceeded' ? null :", to: 'return true ? null :' },
  { name: 'a sync accept without its started (A2)', file: 'db/writer.ts', from: "if (state.invocationType !== 'async' && req.events[0]?.type === 'accepted'", to: "if (false && state.invocationType !== 'async' && req.events[0]?.type === 'accepted'" },
];

const originals = new Map<string, string>();
const restore = () => {
  for (const [file, text] of originals) writeFileSync(file, text);
};
process.on('SIGINT', () => {
  restore();
  process.exit(130);
});

let survived = 0;
for (const m of MUTATIONS) {
  const text = originals.get(m.file) ?? readFileSync(m.file, 'utf8');
  originals.set(m.file, text);
  if (text.split(m.from).length !== 2) throw new Error(`${m.name}: the line to mutate is not in ${m.file} exactly once`);
  writeFileSync(m.file, text.replace(m.from, m.to));
  try {
    const run = spawnSync('npx', ['vitest', 'run', '--reporter=json', ...SPECS], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const json = run.stdout.slice(run.stdout.indexOf('{'));
    const report = JSON.parse(json) as { testResults: { name: string; assertionResults: { title: string; status: string }[] }[] };
    const killers = report.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => `${f.name.replace(/.*\/(db\/)/, '$1')} › ${a.title}`));
    if (killers.length === 0) survived++;
    console.log(`${killers.length > 0 ? 'killed  ' : 'SURVIVED'} ${m.name}${killers.length > 0 ? `\n           by ${killers.join('\n           by ')}` : ''}`);
  } finally {
    writeFileSync(m.file, text);
  }
}
restore();
process.exitCode = survived > 0 ? 1 : 0;
