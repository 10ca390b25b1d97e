// What tracing costs (docs/observability.md): the drain of scenario 1 (one inline worker
// process) and the HTTP accept of scenario 2, each with tracing off (no OTEL_* variables:
// the SDK is not loaded) and on (every span exported over OTLP/HTTP to a receiver in this
// process), interleaved off/on/off/on on fresh databases so drift hits both alike. The
// result is the on/off ratio of the medians, and the spans the receiver got.
import { startOtlpReceiver, type OtlpReceiver } from '../../helpers/otlp-receiver.ts';
import { acceptMany, createLedgerDatabase } from '../lib/ledger.ts';
import { invokeUrl, probeInvoke } from '../lib/lambda.ts';
import { httpLoad } from '../lib/load.ts';
import { startLedger } from '../lib/proc.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';
import { drainWithOurWorker, INLINE_WORKER } from './drain.ts';

const S = 'tracing';
const MODES = ['off', 'on', 'off', 'on'] as const;

function tracingEnv(mode: 'off' | 'on', receiver: OtlpReceiver): Record<string, string> {
  // the child inherits this process's environment: off must mean no OTEL_* at all
  return mode === 'on' ? { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_SERVICE_NAME: 'invoke-ledger-bench' } : { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? Number.NaN;

async function drains(scale: BenchScale, receiver: OtlpReceiver): Promise<Measurement[]> {
  const jobs = scale.drainJobs;
  const rates: Record<'off' | 'on', number[]> = { off: [], on: [] };
  let spans = 0;
  for (const mode of MODES) {
    const db = await createLedgerDatabase(`tracing_drain_${mode}`);
    try {
      await acceptMany(db, db.functions.inline, jobs);
      const before = receiver.spans.length;
      const r = await drainWithOurWorker(db, jobs, INLINE_WORKER, '0', { env: tracingEnv(mode, receiver) });
      rates[mode].push(jobs / r.seconds);
      if (mode === 'on') spans = receiver.spans.length - before;
      log(`${S}: drain with tracing ${mode}: ${Math.round(jobs / r.seconds)} jobs/s${mode === 'on' ? `, ${receiver.spans.length - before} spans received` : ''}`);
    } finally {
      await db.close();
    }
    receiver.spans.length = 0;
  }
  const off = median(rates.off);
  const on = median(rates.on);
  return [
    { scenario: S, subject: 'drain, tracing off', metric: 'jobs/s', value: off, unit: 'jobs/s', note: `${jobs} inline no-op jobs, runs ${rates.off.map(Math.round).join(', ')}` },
    { scenario: S, subject: 'drain, tracing on (OTLP/HTTP)', metric: 'jobs/s', value: on, unit: 'jobs/s', note: `runs ${rates.on.map(Math.round).join(', ')}; ${spans} spans exported in the last run` },
    { scenario: S, subject: 'drain', metric: 'on/off', value: on / off, unit: 'ratio' },
  ];
}

async function accepts(scale: BenchScale, receiver: OtlpReceiver): Promise<Measurement[]> {
  const amount = scale.acceptRequests;
  const rates: Record<'off' | 'on', number[]> = { off: [], on: [] };
  for (const mode of MODES) {
    const db = await createLedgerDatabase(`tracing_accept_${mode}`);
    try {
      const api = await startLedger('api', db.url, tracingEnv(mode, receiver));
      try {
        await probeInvoke(api.baseUrl, 'bench_inline', 'Event', 202);
        const r = await httpLoad({ url: invokeUrl(api.baseUrl, 'bench_inline'), connections: 64, amount, headers: { 'x-amz-invocation-type': 'Event' } });
        rates[mode].push(r.rps);
        log(`${S}: accept with tracing ${mode}: ${Math.round(r.rps)} req/s (${r.ok} × 202)`);
      } finally {
        await api.stop();
      }
    } finally {
      await db.close();
    }
    receiver.spans.length = 0;
  }
  const off = median(rates.off);
  const on = median(rates.on);
  return [
    { scenario: S, subject: 'accept, tracing off', metric: 'req/s', value: off, unit: 'req/s', note: `${amount} Event invokes, 64 connections; runs ${rates.off.map(Math.round).join(', ')}` },
    { scenario: S, subject: 'accept, tracing on (OTLP/HTTP)', metric: 'req/s', value: on, unit: 'req/s', note: `runs ${rates.on.map(Math.round).join(', ')}` },
    { scenario: S, subject: 'accept', metric: 'on/off', value: on / off, unit: 'ratio' },
  ];
}

export async function tracingScenario(scale: BenchScale): Promise<Measurement[]> {
  const receiver = await startOtlpReceiver();
  try {
    return [...(await drains(scale, receiver)), ...(await accepts(scale, receiver))];
  } finally {
    await receiver.close();
  }
}
