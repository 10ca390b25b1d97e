// What the tracing hooks cost per invocation with tracing OFF (no OTEL_* variables): the
// helpers every hop calls (inSpan around the attempt, currentTraceContext at accept,
// contextFrom at claim), next to calling the work directly. Prints ns per call and the
// ratio; the work is an already-resolved promise, so any overhead would show.
//   npx tsx test/bench/tracing-off.ts [calls]
import { performance } from 'node:perf_hooks';
import { contextFrom, currentTraceContext, inSpan, tracingOn } from '../../apps/telemetry/tracing.ts';

if (tracingOn()) throw new Error('tracing is on in this process');
const calls = Number(process.argv[2] ?? 2_000_000);
const work = () => Promise.resolve(1);

async function time(name: string, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 100_000; i++) await fn(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await fn();
  const ns = ((performance.now() - t0) * 1e6) / calls;
  process.stdout.write(`${name.padEnd(58)} ${ns.toFixed(1)} ns/call\n`);
  return ns;
}

const rows: [string, () => Promise<unknown>][] = [
  ['direct: await work()', work],
  ['off: inSpan + currentTraceContext + contextFrom', () => {
    currentTraceContext();
    contextFrom({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    return inSpan('fn', { attributes: {} }, work);
  }],
];
const [direct, off] = [await time(...rows[0]!), await time(...rows[1]!)];
// once more in the other order: the first loop also warms the engine
const [off2, direct2] = [await time(...rows[1]!), await time(...rows[0]!)];
process.stdout.write(`off/direct: ${(((off + off2) / 2) / ((direct + direct2) / 2)).toFixed(3)}; difference ${(((off + off2) - (direct + direct2)) / 2).toFixed(1)} ns per invocation\n`);
