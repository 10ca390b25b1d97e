// Scenario: the live feed under subscribers that read slowly or not at all. One
// `start --role all` process; a few hundred GraphQL subscriptions over SSE (half stop
// reading after the first bytes, half read in small sips); then a burst of async
// invocations (3 events each) while one client measures sync echo latency on the same
// server, one request at a time. Reports idle and in-burst latency and the server's RSS.
//
//   npm run bench -- --only feed              (FEED_SUBSCRIBERS, FEED_BURST override the sizes)
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { sql } from 'kysely';
import { acceptMany, createLedgerDatabase, Unavailable } from '../lib/ledger.ts';
import { invokeUrl, probeInvoke } from '../lib/lambda.ts';
import { startLedger } from '../lib/proc.ts';
import { log, percentile, type BenchScale, type Measurement } from '../lib/types.ts';

const SUBSCRIPTION = JSON.stringify({ query: 'subscription { invocationEvents { cursor position invocationId functionName seq type attempt occurredAt data } }' });
// before the cursor field existed the same subscription without it
const SUBSCRIPTION_OLD = JSON.stringify({ query: 'subscription { invocationEvents { position invocationId functionName seq type attempt occurredAt data } }' });

interface Subscriber {
  bytes: number;
  ended: boolean;
  req: http.ClientRequest;
}

function openSubscriber(baseUrl: string, body: string, mode: 'stalled' | 'sipping'): Promise<Subscriber> {
  return new Promise((resolve, reject) => {
    const url = new URL('/graphql', baseUrl);
    const sub: Subscriber = { bytes: 0, ended: false, req: null as unknown as http.ClientRequest };
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false, headers: { 'content-type': 'application/json', accept: 'text/event-stream' } },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`subscription answered ${res.statusCode}`));
          return;
        }
        res.once('data', (chunk: Buffer) => {
          sub.bytes += chunk.length;
          resolve(sub);
          if (mode === 'stalled') {
            res.pause();
            return;
          }
          // a sip every 50 ms: far slower than a burst arrives
          res.on('data', (c: Buffer) => {
            sub.bytes += c.length;
            res.pause();
            setTimeout(() => res.resume(), 50);
          });
        });
        res.on('end', () => (sub.ended = true));
        res.on('error', () => (sub.ended = true));
        res.on('close', () => (sub.ended = true));
      },
    );
    req.on('error', (e) => {
      sub.ended = true;
      reject(e);
    });
    req.end(body);
    sub.req = req;
  });
}

const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};

async function echoLatencies(baseUrl: string, until: () => boolean, min: number): Promise<number[]> {
  const url = invokeUrl(baseUrl, 'bench_inline');
  const out: number[] = [];
  while (out.length < min || !until()) {
    const t0 = performance.now();
    const res = await fetch(url, { method: 'POST', headers: { 'x-amz-invocation-type': 'RequestResponse' }, body: '{"echo":1}', signal: AbortSignal.timeout(120_000) }).catch((e: unknown) => {
      throw new Error(`sync echo failed after ${out.length} requests: ${(e as Error).message} (${String((e as { cause?: unknown }).cause)})`);
    });
    await res.text();
    if (res.status !== 200) throw new Error(`sync echo answered ${res.status}`);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

export async function feedScenario(scale: BenchScale): Promise<Measurement[]> {
  const subscribers = Number(process.env.FEED_SUBSCRIBERS ?? (scale.quick ? 100 : 300));
  const burst = Number(process.env.FEED_BURST ?? (scale.quick ? 600 : 2_000));
  const db = await createLedgerDatabase('feed');
  const row = (subject: string, metric: string, value: number, unit: string, note?: string): Measurement => ({ scenario: 'feed', subject, metric, value, unit, ...(note ? { note } : {}) });
  try {
    const app = await startLedger('all', db.url);
    const subs: Subscriber[] = [];
    try {
      await probeInvoke(app.baseUrl, 'bench_inline', 'RequestResponse', 200);
      const idle = await echoLatencies(app.baseUrl, () => true, 30);
      // the old schema had no `cursor` field: fall back so the same scenario measures both
      const probe = await fetch(`${app.baseUrl}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __type(name: "LedgerEvent") { fields { name } } }' }) });
      const hasCursor = JSON.stringify(await probe.json()).includes('"cursor"');
      const body = hasCursor ? SUBSCRIPTION : SUBSCRIPTION_OLD;
      for (let i = 0; i < subscribers; i++) subs.push(await openSubscriber(app.baseUrl, body, i % 2 === 0 ? 'stalled' : 'sipping'));
      log(`feed: ${subs.length} subscribers open; burst of ${burst} async invocations (${burst * 3} events)`);
      const rssBefore = rssMb(app.proc.pid as number);
      // a scrape resets prom-client's event-loop delay monitor: the next one covers the burst
      await (await fetch(`${app.baseUrl}/metrics`)).text();
      const { rows: start } = await sql<{ p: string }>`select coalesce(max(position), 0)::text as p from ledger.events`.execute(db.handle.db);
      let drained = false;
      const burstDone = (async () => {
        await acceptMany(db, db.functions.inline, burst, 200);
        for (;;) {
          const { rows } = await sql<{ n: number }>`
            select count(*)::int as n from ledger.events where position > ${start[0]?.p ?? '0'}::bigint and type = 'succeeded'`.execute(db.handle.db);
          if ((rows[0]?.n ?? 0) >= burst) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        drained = true;
      })();
      const t0 = Date.now();
      const during = await echoLatencies(app.baseUrl, () => drained, 10);
      await burstDone;
      const burstSeconds = (Date.now() - t0) / 1000;
      const rssAfter = rssMb(app.proc.pid as number);
      const metricsT0 = performance.now();
      const metricsText = await (await fetch(`${app.baseUrl}/metrics`, { signal: AbortSignal.timeout(120_000) })).text();
      const metricsMs = performance.now() - metricsT0;
      const loopMaxMs = Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(metricsText)?.[1] ?? Number.NaN) * 1000;
      const ended = subs.filter((s) => s.ended).length;
      const note = `${subscribers} subscribers (half stalled, half sipping), ${burst * 3} events in ${burstSeconds.toFixed(1)} s; ${ended} subscriptions ended by the server`;
      return [
        row('sync echo, idle', 'p50', percentile(idle, 50), 'ms'),
        row('sync echo, idle', 'max', idle.at(-1) as number, 'ms'),
        row('sync echo during burst', 'p50', percentile(during, 50), 'ms', note),
        row('sync echo during burst', 'p99', percentile(during, 99), 'ms', `${during.length} requests`),
        row('sync echo during burst', 'max', during.at(-1) as number, 'ms'),
        row('GET /metrics after burst', 'latency', metricsMs, 'ms'),
        row('server event loop during burst', 'max delay', loopMaxMs, 'ms'),
        row('server RSS', 'before burst', rssBefore, 'MB'),
        row('server RSS', 'after burst', rssAfter, 'MB'),
      ];
    } catch (e) {
      throw new Error(`${(e as Error).message}; server output:\n${app.tail()}`);
    } finally {
      for (const s of subs) s.req.destroy();
      await app.stop();
    }
  } catch (e) {
    if (e instanceof Unavailable) return [{ scenario: 'feed', subject: 'invoke-ledger', metric: 'p50', value: null, unit: 'ms', note: e.message }];
    throw e;
  } finally {
    await db.close();
  }
}
