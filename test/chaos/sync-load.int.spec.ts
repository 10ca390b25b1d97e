// Sync invokes under a burst far beyond what the runtime threads can run within the
// function's timeout. The answer each caller got and the ledger must agree: for every
// 200 the invocation is `succeeded` with that result; for every 429 nothing was written;
// no attempt is recorded `WorkerLost` while its process is alive. The server is a real
// `invoke-ledger start` process (API + worker, so its lease reaper runs) on a free port.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/sync-load/', import.meta.url));
const TOTAL = Number(process.env.SYNC_LOAD_INVOCATIONS ?? 2_000);
const ROUTES = ['lambda', 'native', 'graphql'] as const;
type Route = (typeof ROUTES)[number];

interface Answer {
  i: number;
  route: Route;
  /** unavailable: 503, the database could not be reached in time (nothing accepted) */
  kind: 'ok' | 'throttled' | 'unavailable' | 'other';
  invocationId?: string;
  result?: unknown;
  retryAfter?: string | null;
  latencyMs: number;
  detail?: string;
}

let t: TestDatabase;
let server: ServiceProcess | undefined;

beforeAll(async () => {
  t = await createTestDatabase();
  server = await spawnService('all', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FIXTURES,
    RUNTIME_THREADS: '4',
    // the default lease grace (30 s): what a sync attempt's lease must cover is the attempt, not a queue
    POLL_INTERVAL_MS: '200',
    DB_POOL_SIZE: '10',
  });
}, 120_000);

afterAll(async () => {
  agent.destroy();
  if (server) await endProcess(server);
});

/** node:http rather than fetch: no connect timeout, so a burst larger than the listen backlog still arrives. */
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function invokeOnce(base: string, i: number, route: Route): Promise<Answer> {
  const started = performance.now();
  const done = (a: Omit<Answer, 'i' | 'route' | 'latencyMs'>): Answer => ({ i, route, latencyMs: performance.now() - started, ...a });
  try {
    if (route === 'graphql') {
      const res = await post(
        `${base}/graphql`,
        JSON.stringify({ query: 'mutation($p: JSON) { invoke(functionName: "nap", payload: $p) { id status result } }', variables: { p: { i } } }),
      );
      const body = JSON.parse(res.text) as { data?: { invoke?: { id: string; status: string; result: unknown } }; errors?: { extensions?: Record<string, unknown> }[] };
      const inv = body.data?.invoke;
      if (res.status === 200 && inv?.status === 'SUCCEEDED') return done({ kind: 'ok', invocationId: inv.id, result: inv.result });
      const ext = body.errors?.[0]?.extensions;
      if (ext?.['code'] === 'TooManyRequests') return done({ kind: 'throttled', retryAfter: String(ext['retryAfterSeconds'] ?? '') });
      if (ext?.['code'] === 'ServiceUnavailable') return done({ kind: 'unavailable' });
      return done({ kind: 'other', detail: `${res.status} ${JSON.stringify(body).slice(0, 300)}` });
    }
    const url = route === 'lambda' ? `${base}/2015-03-31/functions/nap/invocations` : `${base}/invoke/nap`;
    const res = await post(url, JSON.stringify({ i }));
    const text = res.text;
    if (res.status === 200 && !res.headers['x-amz-function-error'] && !res.headers['x-function-error']) {
      return done({ kind: 'ok', invocationId: res.headers['x-amzn-requestid'] as string, result: JSON.parse(text) });
    }
    if (res.status === 429) {
      const type = route === 'lambda' ? res.headers['x-amzn-errortype'] : (JSON.parse(text) as { error?: { code?: string } }).error?.code;
      const expected = route === 'lambda' ? 'TooManyRequestsException' : 'TooManyRequests';
      if (type === expected) return done({ kind: 'throttled', retryAfter: (res.headers['retry-after'] as string | undefined) ?? null });
    }
    if (res.status === 503) return done({ kind: 'unavailable' });
    return done({ kind: 'other', detail: `${res.status} ${text.slice(0, 300)}` });
  } catch (e) {
    return done({ kind: 'other', detail: String(e) });
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

describe('sync invokes under load', () => {
  it(`${TOTAL} concurrent sync invokes: every 200 is recorded succeeded with its result, every 429 wrote nothing, no WorkerLost`, async () => {
    const base = `http://127.0.0.1:${server!.port}`;
    const answers = await Promise.all(Array.from({ length: TOTAL }, (_, i) => invokeOnce(base, i, ROUTES[i % ROUTES.length] as Route)));

    const ok = answers.filter((a) => a.kind === 'ok');
    const throttled = answers.filter((a) => a.kind === 'throttled');
    const unavailable = answers.filter((a) => a.kind === 'unavailable');
    const other = answers.filter((a) => a.kind === 'other');
    const latencies = answers.map((a) => a.latencyMs).sort((a, b) => a - b);
    const { rows: lost } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.events where type = 'failed' and data -> 'error' ->> 'errorType' = 'WorkerLost'`.execute(t.db);
    console.log(
      `[sync-load] ${TOTAL} sync invokes of a 100 ms function on 4 threads: ${ok.length} × 200, ${throttled.length} × 429, ` +
        `${unavailable.length} × 503, ${other.length} other; latency p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, ` +
        `max ${percentile(latencies, 100).toFixed(0)} ms; WorkerLost recorded: ${lost[0]!.n}`,
    );

    for (const kind of ['ok', 'throttled'] as const) {
      const l = answers.filter((a) => a.kind === kind).map((a) => a.latencyMs).sort((a, b) => a - b);
      console.log(`[sync-load] ${kind}: p50 ${percentile(l, 50).toFixed(0)} ms, max ${percentile(l, 100).toFixed(0)} ms`);
    }
    expect(other.slice(0, 5)).toEqual([]);
    // backpressure: a caller is told to come back, and when
    for (const a of throttled) expect(Number(a.retryAfter), `Retry-After of #${a.i} (${a.route})`).toBeGreaterThanOrEqual(1);

    // every 200: exactly that invocation, succeeded, with the result the caller got
    const { rows: recorded } = await sql<{ id: string; status: string; result: unknown; i: number }>`
      select i.id, i.status, s.data -> 'result' as result, (a.data -> 'payload' ->> 'i')::int as i
      from ledger.invocations i
      join ledger.events a on a.invocation_id = i.id and a.seq = 1
      left join ledger.events s on s.invocation_id = i.id and s.type = 'succeeded'`.execute(t.db);
    const byId = new Map(recorded.map((r) => [r.id, r]));
    const mismatched = ok.filter((a) => {
      const r = byId.get(a.invocationId as string);
      return r === undefined || r.status !== 'succeeded' || r.i !== a.i || JSON.stringify(r.result) !== JSON.stringify(a.result);
    });
    expect(mismatched.length, `200s the ledger disagrees with, e.g. ${JSON.stringify(mismatched.slice(0, 3).map((a) => ({ ...a, ledger: byId.get(a.invocationId as string) })))}`).toBe(0);

    // every 429 (and 503): nothing written (no invocation carries its payload), and nothing else was either
    const refusedI = new Set([...throttled, ...unavailable].map((a) => a.i));
    expect(recorded.filter((r) => refusedI.has(r.i)).length).toBe(0);
    expect(recorded.length).toBe(ok.length);

    // the process never died, so no attempt of it may be recorded lost
    expect(lost[0]!.n).toBe(0);
    expect(server!.child.exitCode).toBeNull();
  }, 300_000);
});
