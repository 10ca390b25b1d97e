// What a function produces, however hostile, is recorded as what happened and answered
// without a 5xx. Results, errors and logs that PostgreSQL cannot store as they are (a
// NUL, a lone surrogate, nesting past the limit): a result becomes a function error of
// its own attempt; error text and logs are stored with U+FFFD in place of what cannot
// be; the other outcomes written in the same group commit are untouched. On the sync
// path the caller's answer is what the ledger holds. Error names and messages of any
// text (CR/LF, non-Latin-1) come back in headers and bodies on both routes (fuzzed).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { createWorker, type Worker } from '../../apps/worker/index.ts';
import { createFunction, requireFunction, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations, type AcceptRequest } from '../../db/invocations.ts';
import { storableText } from '../../db/storable.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { countByStatus, silent, waitFor } from '../worker/helpers.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const REPLACEMENT = '\ufffd';

let t: TestDatabase;
let runtimes: Runtimes;
let api: Listening;
let origin: http.Server;
let originUrl: string;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
  api = await listen(composeApi({ db: t.db, instanceId: 'unstorable-api', runtimes, logger: silent, functionsDir: FIXTURES }).app.fetch);
  // an HTTP function's endpoint: JSON text that parses to strings PostgreSQL refuses
  origin = http.createServer((req, res) => {
    req.resume();
    const bodies: Record<string, [number, string]> = {
      '/nul': [200, '{"x":"\\u0000"}'],
      '/surrogate': [200, '{"x":"\\ud800"}'],
      '/nul-error': [500, 'broken \u0000 upstream'],
    };
    const [status, body] = bodies[req.url ?? ''] ?? [200, '{"ok":true}'];
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const module = { runtime: 'MODULE' as const, handler: 'unstorable.ts', isolation: 'inline' as const, maxRetries: 0 };
  await createFunction(t.db, 'unstorable', module);
  await createFunction(t.db, 'unstorable-thread', { ...module, isolation: 'thread', memoryMb: 64 });
  await createFunction(t.db, 'throws', { ...module, handler: 'throws.ts' });
  for (const path of ['nul', 'surrogate', 'nul-error']) await createFunction(t.db, `http-${path}`, { runtime: 'HTTP', url: `${originUrl}/${path}`, maxRetries: 0 });
});

afterAll(async () => {
  await api?.close();
  await runtimes?.close();
  await new Promise((resolve) => origin?.close(resolve));
});

interface EventRow {
  type: string;
  data: { result?: unknown; error?: { errorType: string; errorMessage: string; trace: string[] } };
}

async function events(id: string): Promise<EventRow[]> {
  const { rows } = await sql<EventRow>`select type, data from ledger.events where invocation_id = ${id}::uuid order by seq`.execute(t.db);
  return rows;
}

async function attemptLog(id: string): Promise<string | undefined> {
  const { rows } = await sql<{ log: string }>`select log from ledger.attempt_logs where invocation_id = ${id}::uuid and attempt = 1`.execute(t.db);
  return rows[0]?.log;
}

/** the attempt's outcome event */
const outcomeOf = (e: EventRow[]) => e.find((x) => x.type === 'succeeded' || x.type === 'failed');

/** what each bad case must be recorded as */
const expected: Record<string, (e: EventRow[]) => void> = {
  'nul-result': (e) => expect(outcomeOf(e)?.data.error?.errorType).toBe('Runtime.InvalidResult'),
  'surrogate-result': (e) => expect(outcomeOf(e)?.data.error?.errorType).toBe('Runtime.InvalidResult'),
  'surrogate-key': (e) => expect(outcomeOf(e)?.data.error?.errorType).toBe('Runtime.InvalidResult'),
  'deep-result': (e) => expect(outcomeOf(e)?.data.error?.errorType).toBe('Runtime.InvalidResult'),
  'nul-error': (e) => expect(outcomeOf(e)?.data.error).toMatchObject({ errorType: `Bad${REPLACEMENT}Name`, errorMessage: `bad${REPLACEMENT}message${REPLACEMENT}` }),
  'nul-log': (e) => expect(outcomeOf(e)).toMatchObject({ type: 'succeeded', data: { result: { logged: true } } }),
};

describe('the worker: one unstorable outcome in a group commit', () => {
  let worker: Worker | null = null;
  afterAll(async () => {
    await worker?.stop();
  });

  it('fails only its own attempt; every other outcome of the batch is recorded once, no WorkerLost', async () => {
    const [fn, threadFn, httpNul, httpSurrogate, httpError] = (await Promise.all(
      ['unstorable', 'unstorable-thread', 'http-nul', 'http-surrogate', 'http-nul-error'].map((name) => requireFunction(t.db, name)),
    )) as [FunctionVersion, FunctionVersion, FunctionVersion, FunctionVersion, FunctionVersion];
    const requests: (AcceptRequest & { payload: { kind?: string; n?: number } })[] = [];
    for (let i = 0; i < 200; i++) requests.push({ fn, invocationType: 'async' as const, payload: { n: i } });
    const bad = Object.keys(expected).flatMap((kind) => [
      { kind, fn },
      { kind, fn: threadFn },
    ]);
    // the bad ones in the middle, so that they finish among the good ones
    requests.splice(100, 0, ...bad.map((b) => ({ fn: b.fn, invocationType: 'async' as const, payload: { kind: b.kind } })));
    for (const f of [httpNul, httpSurrogate, httpError]) requests.splice(120, 0, { fn: f, invocationType: 'async' as const, payload: {} });
    const accepted = await acceptInvocations(t.db, requests);
    const ids = accepted.map((a) => a.invocationId);

    worker = createWorker({ db: t.db, databaseUrl: t.url, runtimes, logger: silent, registry: new Registry(), workerId: 'unstorable-worker', concurrency: 64, claimBatchSize: 300, pollIntervalMs: 50, leaseGraceMs: 2_000 });
    await worker.start();
    await waitFor('every invocation ended', async () => {
      const by = await countByStatus(t.db, ids);
      return (by.succeeded ?? 0) + (by.dead_lettered ?? 0) === ids.length;
    });

    const { rows: lost } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.events where type = 'failed' and data -> 'error' ->> 'errorType' = 'WorkerLost'`.execute(t.db);
    expect(lost[0]?.n).toBe(0);
    const { rows: twice } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.invocations where id = any(${ids}::uuid[]) and attempts <> 1`.execute(t.db);
    expect(twice[0]?.n).toBe(0);

    for (let i = 0; i < requests.length; i++) {
      const r = requests[i] as (typeof requests)[number];
      const e = await events(ids[i] as string);
      if (r.fn.name.startsWith('http-')) {
        expect(e.map((x) => x.type), r.fn.name).toEqual(['accepted', 'started', 'failed', 'dead_lettered']);
        const error = e[2]?.data.error;
        if (r.fn.name === 'http-nul-error') expect(error?.errorMessage).toContain(`broken ${REPLACEMENT} upstream`);
        else expect(error?.errorType).toBe('Runtime.InvalidResult');
      } else if (r.payload.kind) {
        expected[r.payload.kind]?.(e);
        if (r.payload.kind === 'nul-log') expect(await attemptLog(ids[i] as string)).toContain(`a${REPLACEMENT}b${REPLACEMENT}c`);
      } else {
        expect(e.map((x) => x.type)).toEqual(['accepted', 'started', 'succeeded']);
        expect(e[2]?.data.result).toEqual({ n: r.payload.n });
      }
    }
  });
});

describe('the sync path: the caller gets what the ledger records', () => {
  const cases = [
    ...Object.keys(expected).map((kind) => ({ name: kind, fn: 'unstorable', payload: { kind } })),
    ...Object.keys(expected).map((kind) => ({ name: `${kind} (thread)`, fn: 'unstorable-thread', payload: { kind } })),
    { name: 'an HTTP function answering {"x":"\\u0000"}', fn: 'http-nul', payload: {} },
    { name: 'an HTTP function answering {"x":"\\ud800"}', fn: 'http-surrogate', payload: {} },
    { name: 'an HTTP function failing with a NUL in its body', fn: 'http-nul-error', payload: {} },
  ];
  for (const route of ['lambda', 'native'] as const) {
    it(`${route} route: each bad outcome among 50 good sync invokes; answers equal the ledger`, async () => {
      const calls = [
        ...cases.map((c) => ({ ...c, good: false })),
        ...Array.from({ length: 50 }, (_, n) => ({ name: `good ${n}`, fn: 'unstorable', payload: { n }, good: true })),
      ];
      const answers = await Promise.all(
        calls.map(async (c) => {
          const path = route === 'lambda' ? `/2015-03-31/functions/${c.fn}/invocations` : `/invoke/${c.fn}`;
          const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { 'X-Amz-Log-Type': 'Tail' }, body: JSON.stringify(c.payload) });
          const text = await res.text();
          return { c, status: res.status, id: res.headers.get('x-amzn-requestid') as string, body: JSON.parse(text) as unknown, logResult: res.headers.get('x-amz-log-result') };
        }),
      );
      for (const a of answers) {
        expect(a.status, `${a.c.name}: ${JSON.stringify(a.body).slice(0, 200)}`).toBe(200);
        const e = await events(a.id);
        const last = e.at(-1) as EventRow;
        if (a.c.good) {
          expect(e.map((x) => x.type)).toEqual(['accepted', 'started', 'succeeded']);
          expect(a.body).toEqual(last.data.result);
        } else if (last.type === 'succeeded') {
          expect(a.body, a.c.name).toEqual(last.data.result);
        } else {
          expect(e.map((x) => x.type), a.c.name).toEqual(['accepted', 'started', 'failed']);
          expect(a.body, a.c.name).toEqual(last.data.error);
        }
        if (a.c.payload && (a.c.payload as { kind?: string }).kind === 'nul-log' && route === 'lambda') {
          // X-Amz-Log-Result carries the log as stored
          expect(Buffer.from(a.logResult ?? '', 'base64').toString('utf8')).toBe(await attemptLog(a.id));
        }
        const kind = (a.c.payload as { kind?: string }).kind;
        if (kind) expected[kind]?.(e);
      }
    });
  }
});

describe('error names and messages of any text, through both routes', () => {
  const codeUnit = fc.oneof(
    fc.constantFrom('\r', '\n', '\r\n', '\u0000', '\u00ff', '\u0100', '€', '😀', '\ud800', '\udc00', '%', '%2', ' ', ':', '"', '\\', 'é'),
    fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)),
    fc.constantFrom('a', 'B', '.', '_'),
  );
  const text = (maxLength: number) => fc.string({ unit: codeUnit, maxLength });
  const codes = (s: string) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
  const units = (e: { name: string; message: string }) => ({ name: codes(e.name), message: codes(e.message) });

  it('property: 200, the error as the ledger holds it, and a header that decodes to its errorType', async () => {
    await fc.assert(
      fc.asyncProperty(text(40), text(200), fc.constantFrom('lambda', 'native'), async (name, message, route) => {
        const path = route === 'lambda' ? '/2015-03-31/functions/throws/invocations' : '/invoke/throws';
        const res = await fetch(`${api.url}${path}`, { method: 'POST', body: JSON.stringify(units({ name, message })) });
        const body = (await res.json()) as { errorType: string; errorMessage: string };
        expect(res.status, JSON.stringify(body)).toBe(200);
        const id = res.headers.get('x-amzn-requestid') as string;
        const failed = (await events(id)).find((e) => e.type === 'failed');
        expect(body).toEqual(failed?.data.error);
        expect(body.errorType).toBe(storableText(name === '' ? 'Error' : name));
        expect(body.errorMessage).toBe(storableText(message));
        if (route === 'lambda') expect(res.headers.get('x-amz-function-error')).toBe('Unhandled');
        else expect(decodeURIComponent(res.headers.get('x-function-error') ?? '')).toBe(body.errorType);
      }),
      { numRuns: 150 },
    );
  });

  it('a long error name is cut in the header at a character boundary; the body has it whole', async () => {
    const name = `${'é'.repeat(300)}\r\n${'x'.repeat(2000)}`;
    const res = await fetch(`${api.url}/invoke/throws`, { method: 'POST', body: JSON.stringify(units({ name, message: 'm' })) });
    expect(res.status).toBe(200);
    const header = res.headers.get('x-function-error') as string;
    expect(header.length).toBeLessThanOrEqual(1024);
    expect(name.startsWith(decodeURIComponent(header))).toBe(true);
    expect(((await res.json()) as { errorType: string }).errorType).toBe(name);
  });
});
