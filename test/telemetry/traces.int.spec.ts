// Traces across processes, exported for real: an API process and a worker process run
// with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver this test runs. An async
// invocation that fails twice and succeeds is one trace: the caller's span, the HTTP
// span, three attempt spans (children of the context stored with `accepted`), linked
// claim spans, and the onSuccess destination's attempt. Metrics and log lines of the
// same processes are checked here too, since they are running anyway.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { waitFor } from '../worker/helpers.ts';
import { promtool } from './promtool.ts';

const FUNCTIONS = fileURLToPath(new URL('./fixtures/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let t: TestDatabase;
let receiver: OtlpReceiver;
let api: ServiceProcess;
let worker: ServiceProcess;

beforeAll(async () => {
  t = await createTestDatabase();
  receiver = await startOtlpReceiver();
  const env = {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FUNCTIONS,
    POLL_INTERVAL_MS: '200',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_SERVICE_NAME: 'invoke-ledger-test',
    TRACE_TEST_DESTINATION: `${receiver.endpoint}/destination`,
  };
  // one after the other: both register FUNCTIONS_DIR at start
  api = await spawnService('api', await freePort(), env, { entry: 'tsx' });
  worker = await spawnService('worker', await freePort(), env, { entry: 'tsx' });
}, 120_000);

afterAll(async () => {
  await Promise.all([api, worker].filter(Boolean).map((p) => endProcess(p)));
  await receiver?.close();
});

const PROM_CLIENT_GAUGES = /^nodejs_active_(handles|requests|resources)_total\b/;

/** The exposition without the families whose names match. */
function withoutFamilies(text: string, names: RegExp): string {
  return text
    .split('\n')
    .filter((l) => !names.test(l.replace(/^# (HELP|TYPE) /, '')))
    .join('\n');
}

const spansOf = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);

describe('traces (OTLP/HTTP to a real receiver)', () => {
  it('an async invocation that fails twice and succeeds is one trace across the API and worker processes', async () => {
    const callerTrace = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const res = await fetch(`http://127.0.0.1:${api.port}/2015-03-31/functions/fails-twice/invocations`, {
      method: 'POST',
      headers: { 'x-amz-invocation-type': 'Event', traceparent: `00-${callerTrace}-${callerSpan}-01`, tracestate: 'vendor=abc' },
      body: JSON.stringify({ hello: 'trace' }),
    });
    expect(res.status).toBe(202);
    const id = res.headers.get('x-amzn-requestid') as string;

    // the ledger holds the context of the API's request span, in the caller's trace
    const { rows } = await sql<{ traceparent: string; tracestate: string }>`
      select data ->> 'traceparent' as traceparent, data ->> 'tracestate' as tracestate
      from ledger.events where invocation_id = ${id}::uuid and type = 'accepted'`.execute(t.db);
    const [, storedTrace, storedSpan] = (rows[0]?.traceparent ?? '').split('-');
    expect(storedTrace).toBe(callerTrace);
    expect(rows[0]?.tracestate).toBe('vendor=abc');

    await waitFor('succeeded', async () => {
      const r = await sql<{ status: string }>`select status from ledger.invocations where id = ${id}::uuid`.execute(t.db);
      return r.rows[0]?.status === 'succeeded';
    }, 60_000);

    const attempts = await waitFor(
      'three attempt spans exported',
      async () => {
        const a = spansOf(callerTrace).filter((s) => s.name === 'fails-twice');
        return a.length >= 3 ? a : null;
      },
      30_000,
    );
    const http = spansOf(callerTrace).find((s) => s.attributes['http.route'] === '/2015-03-31/functions/:FunctionName/invocations') as ReceivedSpan;
    expect(http).toBeDefined();
    expect(http.parentSpanId).toBe(callerSpan);
    expect(http.spanId).toBe(storedSpan);
    expect(http.kind).toBe(2); // SERVER
    expect(http.attributes['http.response.status_code']).toBe(202);
    expect(http.resource['invoke_ledger.role']).toBe('api');
    expect(http.resource['service.name']).toBe('invoke-ledger-test');

    const byAttempt = attempts.map((s) => s.attributes['invoke_ledger.attempt']).sort();
    expect(byAttempt).toEqual([1, 2, 3]);
    for (const s of attempts) {
      expect(s.parentSpanId).toBe(http.spanId);
      expect(s.resource['invoke_ledger.role']).toBe('worker');
      expect(s.kind).toBe(5); // CONSUMER
      expect(s.attributes).toMatchObject({
        'faas.invocation_id': id,
        'faas.trigger': 'pubsub',
        'faas.name': 'fails-twice',
        'faas.version': '1',
        'cloud.resource_id': 'arn:aws:lambda:local:000000000000:function:fails-twice:1',
      });
      const attempt = s.attributes['invoke_ledger.attempt'] as number;
      // ERROR = 2 for the two failures; the success leaves the status unset
      expect(s.status.code ?? 0).toBe(attempt < 3 ? 2 : 0);
      if (attempt < 3) expect(s.attributes['error.type']).toBe('Error');
    }

    // every claim batch that started an attempt links to this trace
    const claims = receiver.spans.filter((s) => s.name === 'claim' && s.links.some((l) => l.traceId === callerTrace && l.attributes['faas.invocation_id'] === id));
    expect(claims.length).toBe(3);
    for (const c of claims) {
      expect(c.traceId).not.toBe(callerTrace); // a batch is its own trace, linked to each record's
      expect(c.links.find((l) => l.attributes['faas.invocation_id'] === id)?.spanId).toBe(http.spanId);
    }

    // the onSuccess destination's invocation continues the same trace
    const after = await waitFor('destination attempt exported', async () => spansOf(callerTrace).find((s) => s.name === 'after-success'), 30_000);
    expect(after.parentSpanId).toBe(http.spanId);
    // and its URL destination is POSTed in the same trace, with a traceparent of its CLIENT span
    const post = await waitFor('URL destination POSTed', async () => receiver.posts.find((p) => p.path === '/destination'), 30_000);
    const client = await waitFor('destination span exported', async () => spansOf(callerTrace).find((s) => s.name === 'POST destination'), 30_000);
    expect(client.kind).toBe(3); // CLIENT
    expect(post.headers.traceparent).toBe(`00-${callerTrace}-${client.spanId}-01`);
  });

  it('a sync invocation has an attempt span under its HTTP span, and the trace id in its log line', async () => {
    const res = await fetch(`http://127.0.0.1:${api.port}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: JSON.stringify({ n: 1 }) });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-amzn-requestid') as string;
    const attempt = await waitFor('sync attempt span', async () => receiver.spans.find((s) => s.name === 'echo' && s.attributes['faas.invocation_id'] === id), 30_000);
    expect(attempt.attributes['faas.trigger']).toBe('http');
    const http = receiver.spans.find((s) => s.spanId === attempt.parentSpanId);
    expect(http?.attributes['http.route']).toBe('/2015-03-31/functions/:FunctionName/invocations');
    const { rows } = await sql<{ traceparent: string }>`
      select data ->> 'traceparent' as traceparent from ledger.events where invocation_id = ${id}::uuid and seq = 1`.execute(t.db);
    expect(rows[0]?.traceparent.split('-')[1]).toBe(attempt.traceId);

    // the server's own line for the outcome, JSON, with the ids to follow it
    const line = await waitFor('outcome log line', async () =>
      api
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'invocation outcome' && l.invocationId === id),
    );
    expect(line).toMatchObject({ level: 30, function: 'echo', version: 1, type: 'sync', outcome: 'succeeded', traceId: attempt.traceId });
    expect(typeof line.durationMs).toBe('number');
  });

  it('/metrics counts sync invocations on the API and async ones on the worker, and promtool accepts both', async () => {
    const apiMetrics = await (await fetch(`http://127.0.0.1:${api.port}/metrics`)).text();
    expect(apiMetrics).toMatch(/ledger_invocations_total\{function="echo",version="1",type="sync",outcome="succeeded"\} [1-9]/);
    expect(apiMetrics).toMatch(/ledger_commit_batch_size_count\{kind="accept"\} [1-9]/);
    expect(apiMetrics).toMatch(/ledger_db_pool_connections\{state="max"\} \d/);
    const workerMetrics = await waitFor('worker counted the destination too', async () => {
      const text = await (await fetch(`http://127.0.0.1:${worker.port}/metrics`)).text();
      return text.includes('function="after-success"') ? text : null;
    });
    expect(workerMetrics).toMatch(/ledger_invocations_total\{function="fails-twice",version="1",type="async",outcome="retried"\} 2/);
    expect(workerMetrics).toMatch(/ledger_invocations_total\{function="fails-twice",version="1",type="async",outcome="succeeded"\} 1/);
    expect(workerMetrics).toMatch(/ledger_commit_batch_size_count\{kind="async_outcome"\} [1-9]/);
    // the scheduler runs in every worker process (docs/schedules.md#watching-the-scheduler): no schedule, nothing due
    expect(workerMetrics).toMatch(/^ledger_schedule_oldest_due_seconds 0$/m);
    expect(workerMetrics).toMatch(/ledger_invocation_duration_seconds_count\{function="fails-twice",type="async",outcome="succeeded"\} 1/);
    for (const text of [apiMetrics, workerMetrics]) {
      // prom-client's default process metrics include three gauges named *_total, which
      // promtool's lint flags (docs/observability.md); everything else must pass
      const lint = promtool(['check', 'metrics'], text);
      expect(lint.output.split('\n').filter((l) => l && !PROM_CLIENT_GAUGES.test(l))).toEqual([]);
      expect(promtool(['check', 'metrics'], withoutFamilies(text, PROM_CLIENT_GAUGES))).toEqual({ ok: true, output: '' });
    }

    // the shipped alerts and dashboard query only metrics that these processes export
    const exported = new Set([...`${apiMetrics}\n${workerMetrics}`.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
      type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name as string],
    ));
    const used = (file: string) => new Set([...readFileSync(new URL(`../../deploy/${file}`, import.meta.url), 'utf8').matchAll(/\b(ledger_[a-z_]+)\b/g)].map((m) => m[1] as string));
    const alerts = used('prometheus/alerts.yml');
    const dashboard = used('grafana/invoke-ledger.json');
    expect(alerts.size).toBeGreaterThan(4);
    expect(dashboard.size).toBeGreaterThan(10);
    expect([...alerts, ...dashboard].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('invoke-ledger logs prints what the attempts printed, and --follow prints new attempts as they are recorded', async () => {
    // the three attempts of the first test, oldest first, each with its own line
    const past = await cli(['logs', 'fails-twice', '--since', '1h'], { DATABASE_URL: t.ownerUrl });
    expect(past.code).toBe(0);
    const attempts = past.out.split('\n').filter((l) => l.includes('fails-twice attempt')).map((l) => /#(\d) v1\t.*\tINFO\tfails-twice attempt (\d)/.exec(l)?.slice(1, 3));
    expect(attempts).toEqual([['1', '1'], ['2', '2'], ['3', '3']]);
    // the error report is in the failed attempts' logs, as in Lambda's Tail
    expect(past.out).toMatch(/#1 v1\t.*\tERROR\tInvoke Error \t\{"errorType":"Error","errorMessage":"attempt 1 fails on purpose","stack":\["Error: attempt 1 fails on purpose"/);
    expect(past.out).not.toMatch(/#3 v1\t.*\tERROR/);

    const follow = spawn(process.execPath, ['--import', 'tsx', 'apps/cli/main.ts', 'logs', 'echo', '--follow', '--since', '1s'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    follow.stdout.on('data', (d: Buffer) => (out += d.toString()));
    follow.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const marker = randomBytes(6).toString('hex');
      // invoked until the follower shows it: it may not be polling yet when the first one ends
      await waitFor('the follower prints the new attempt', async () => {
        if (!out.includes(marker)) await fetch(`http://127.0.0.1:${api.port}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: JSON.stringify({ marker }) });
        await new Promise((r) => setTimeout(r, 300));
        return out.includes(marker);
      }, 60_000);
      expect(out).toMatch(new RegExp(`#1 v1\\t.*\\tINFO\\techo \\{"marker":"${marker}"\\}`));
      expect(follow.exitCode).toBe(null);
    } finally {
      const exited = new Promise((r) => follow.once('exit', r));
      if (follow.pid) process.kill(follow.pid, 'SIGTERM');
      await exited;
    }
    expect(follow.exitCode).toBe(0);
  });
});
