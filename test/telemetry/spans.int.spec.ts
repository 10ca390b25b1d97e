// Spans in one process, collected by the SDK's in-memory exporter: tracing off stores no
// trace context (the SDK is not even installed); on, GraphQL invokes continue the caller's
// traceparent, the trace id is readable in GraphQL, and a sync attempt's span sits under
// the request's span with the FaaS attributes.
import { fileURLToPath } from 'node:url';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { sql } from 'kysely';
import type { Hono } from 'hono';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { setTracingOn, tracingOn } from '../../apps/telemetry/tracing.ts';
import { createFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const FUNCTIONS = fileURLToPath(new URL('./fixtures/', import.meta.url));

let t: TestDatabase;
let runtimes: Runtimes;
let app: Hono;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = createRuntimes({ functionsDir: FUNCTIONS, logger: pino({ level: 'silent' }), poolSize: 1 });
  await createFunction(t.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
  app = composeApi({ db: t.db, instanceId: 'spans-test', runtimes, logger: pino({ level: 'silent' }), functionsDir: FUNCTIONS }).app;
});

afterAll(async () => {
  await runtimes?.close();
});

const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
const TRACEPARENT = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;

async function graphql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const res = await app.request('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: TRACEPARENT },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data: T; errors?: unknown[] };
  expect(body.errors).toBeUndefined();
  return body.data;
}

const acceptedData = async (id: string) =>
  (await sql<{ data: Record<string, unknown> }>`select data from ledger.events where invocation_id = ${id}::uuid and seq = 1`.execute(t.db)).rows[0]?.data;

describe('tracing off (no OTEL_* variables)', () => {
  it('stores no trace context, even when the caller sends a traceparent', async () => {
    expect(tracingOn()).toBe(false);
    const { invokeAsync } = await graphql<{ invokeAsync: { id: string; traceId: string | null } }>(
      'mutation { invokeAsync(functionName: "echo", payload: {a: 1}) { id traceId } }',
    );
    expect(invokeAsync.traceId).toBe(null);
    const data = await acceptedData(invokeAsync.id);
    expect(data).toMatchObject({ functionName: 'echo', payload: { a: 1 } });
    expect(data).not.toHaveProperty('traceparent');
  });
});

describe('tracing on (in-memory exporter)', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => {
    const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    provider.register();
    setTracingOn(true);
  });

  it('a GraphQL invokeAsync continues the caller trace, stores it with accepted, and answers its trace id', async () => {
    const { invokeAsync } = await graphql<{ invokeAsync: { id: string; traceId: string } }>(
      'mutation { invokeAsync(functionName: "echo", payload: {b: 2}) { id traceId } }',
    );
    expect(invokeAsync.traceId).toBe(CALLER_TRACE);
    const data = (await acceptedData(invokeAsync.id)) as { traceparent: string };
    const [, trace, span] = data.traceparent.split('-');
    expect(trace).toBe(CALLER_TRACE);
    const http = exporter.getFinishedSpans().find((s) => s.spanContext().spanId === span);
    expect(http?.name).toBe('POST /graphql');
    expect(http?.parentSpanContext?.spanId).toBe(CALLER_SPAN);
    const read = await graphql<{ invocation: { traceId: string } }>('query($id: ID!) { invocation(id: $id) { traceId } }', { id: invokeAsync.id });
    expect(read.invocation.traceId).toBe(CALLER_TRACE);
  });

  it('a sync invoke has an attempt span under the request span, with the FaaS attributes', async () => {
    exporter.reset();
    const { invoke } = await graphql<{ invoke: { id: string; status: string } }>('mutation { invoke(functionName: "echo", payload: {c: 3}) { id status } }');
    expect(invoke.status).toBe('SUCCEEDED');
    const spans = exporter.getFinishedSpans();
    const attempt = spans.find((s) => s.name === 'echo');
    const http = spans.find((s) => s.name === 'POST /graphql');
    expect(attempt?.parentSpanContext?.spanId).toBe(http?.spanContext().spanId);
    expect(attempt?.spanContext().traceId).toBe(CALLER_TRACE);
    expect(attempt?.attributes).toMatchObject({
      'faas.invocation_id': invoke.id,
      'faas.trigger': 'http',
      'faas.name': 'echo',
      'faas.version': '1',
      'invoke_ledger.attempt': 1,
      'cloud.resource_id': 'arn:aws:lambda:local:000000000000:function:echo:1',
    });
    expect(http?.attributes['http.response.status_code']).toBe(200);
  });
});
