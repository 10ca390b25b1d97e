// Every GraphQL operation of docs/graphql.md, docs/audit.md against a real PostgreSQL: administration,
// invokes, redrive/cancel, reads, error codes and masking.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvokeService } from '../../apps/api/invoke.ts';
import { createHarness, finishAsync, mount, post, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.close();
});

const INVOCATION = `id functionName functionVersion type status attempts payload result
  error { errorType errorMessage trace } acceptedAt finishedAt
  events { position seq type attempt occurredAt data }`;

describe('function administration', () => {
  it('createFunction, function, functions, updateFunction, deleteFunction', async () => {
    const created = await h.gql(
      `mutation($input: FunctionInput!) { createFunction(input: $input) {
        name version runtime url timeoutMs maxRetries reservedConcurrency onFailure isolation hasSecret } }`,
      {
        input: {
          name: 'hook',
          runtime: 'HTTP',
          url: 'http://127.0.0.1:9/hook',
          timeoutMs: 1500,
          secret: 's3cret',
          onFailure: 'function:echo',
        },
      },
    );
    expect(created.errors).toBeUndefined();
    expect(created.data?.createFunction).toEqual({
      name: 'hook',
      version: 1,
      runtime: 'HTTP',
      url: 'http://127.0.0.1:9/hook',
      timeoutMs: 1500,
      maxRetries: 2,
      reservedConcurrency: null,
      onFailure: 'function:echo',
      isolation: 'THREAD',
      hasSecret: true,
    });

    const updated = await h.gql(`mutation { updateFunction(name: "hook", input: { maxRetries: 5, secret: null }) { version maxRetries timeoutMs hasSecret } }`);
    expect(updated.data?.updateFunction).toEqual({ version: 2, maxRetries: 5, timeoutMs: 1500, hasSecret: false });

    const read = await h.gql(`{ function(name: "hook") { name version } functions { name } missing: function(name: "nope") { name } }`);
    expect(read.data?.function).toEqual({ name: 'hook', version: 2 });
    expect(read.data?.missing).toBeNull();
    expect(read.data?.functions.map((f: { name: string }) => f.name)).toEqual(['echo', 'fail', 'hook', 'sleep']);

    const deleted = await h.gql(`mutation { deleteFunction(name: "hook") }`);
    expect(deleted.data?.deleteFunction).toBe(true);
    const gone = await h.gql(`{ function(name: "hook") { name } }`);
    expect(gone.data?.function).toBeNull();
    const again = await h.gql(`mutation { deleteFunction(name: "hook") }`);
    expect(again.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
  });

  it('never exposes the secret, not even in the schema', async () => {
    const r = await h.gql(`{ __type(name: "Function") { fields { name } } }`);
    const fields = r.data?.__type.fields.map((f: { name: string }) => f.name);
    expect(fields).toContain('hasSecret');
    expect(fields).not.toContain('secret');
    const asked = await h.gql(`{ functions { secret } }`);
    expect(asked.errors?.[0]?.message).toMatch(/Cannot query field "secret"/);
  });

  it('refuses bad configurations with InvalidFunctionConfig and duplicates with FunctionExists', async () => {
    const noHandler = await h.gql(`mutation { createFunction(input: { name: "bad", runtime: MODULE }) { name } }`);
    expect(noHandler.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    expect(noHandler.errors?.[0]?.message).toMatch(/handler/);
    const outside = await h.gql(`mutation { createFunction(input: { name: "bad", runtime: MODULE, handler: "../package.json" }) { name } }`);
    expect(outside.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    const timeout = await h.gql(`mutation { createFunction(input: { name: "bad", runtime: MODULE, handler: "echo.ts", timeoutMs: 0 }) { name } }`);
    expect(timeout.errors?.[0]?.extensions?.code).toBe('InvalidFunctionConfig');
    const badName = await h.gql(`mutation { createFunction(input: { name: "no spaces", runtime: MODULE, handler: "echo.ts" }) { name } }`);
    expect(badName.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const dup = await h.gql(`mutation { createFunction(input: { name: "echo", runtime: MODULE, handler: "echo.ts" }) { name } }`);
    expect(dup.errors?.[0]?.extensions?.code).toBe('FunctionExists');
    const missing = await h.gql(`mutation { updateFunction(name: "nope", input: { maxRetries: 1 }) { name } }`);
    expect(missing.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
  });
});

describe('invoke', () => {
  it('invoke runs the function and returns the finished invocation with its timeline', async () => {
    const r = await h.gql(`mutation { invoke(functionName: "echo", payload: { hello: "ledger", n: [1, 2] }) { ${INVOCATION} } }`);
    expect(r.errors).toBeUndefined();
    const inv = r.data?.invoke;
    expect(inv).toMatchObject({
      functionName: 'echo',
      functionVersion: 1,
      type: 'SYNC',
      status: 'SUCCEEDED',
      attempts: 1,
      payload: { hello: 'ledger', n: [1, 2] },
      result: { hello: 'ledger', n: [1, 2] },
      error: null,
    });
    expect(inv.finishedAt).not.toBeNull();
    expect(inv.events.map((e: { type: string }) => e.type)).toEqual(['ACCEPTED', 'STARTED', 'SUCCEEDED']);
    expect(inv.events.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3]);
    expect(inv.events[2].attempt).toBe(1);
    expect(typeof inv.events[0].position).toBe('string');
  });

  it('a function error is a FAILED invocation, not a GraphQL error', async () => {
    const r = await h.gql(`mutation { invoke(functionName: "fail", payload: { reason: "testing" }) { status result error { errorType errorMessage trace } } }`);
    expect(r.errors).toBeUndefined();
    expect(r.data?.invoke.status).toBe('FAILED');
    expect(r.data?.invoke.result).toBeNull();
    expect(r.data?.invoke.error.errorType).toBe('IntentionalFailure');
    expect(r.data?.invoke.error.errorMessage).toMatch(/testing/);
  });

  it('the same idempotencyKey returns the first invocation', async () => {
    const q = `mutation { invoke(functionName: "echo", payload: 1, idempotencyKey: "k-1") { id result } }`;
    const a = await h.gql(q);
    const b = await h.gql(q);
    expect(b.data?.invoke.id).toBe(a.data?.invoke.id);
    const c = await h.gql(`mutation { invokeAsync(functionName: "echo", idempotencyKey: "k-2") { id } }`);
    const d = await h.gql(`mutation { invokeAsync(functionName: "echo", idempotencyKey: "k-2") { id } }`);
    expect(d.data?.invokeAsync.id).toBe(c.data?.invokeAsync.id);
    await h.gql(`mutation { cancelInvocation(id: "${c.data?.invokeAsync.id}") { id } }`);
  });

  it('unknown functions and oversized payloads carry their codes', async () => {
    const unknown = await h.gql(`mutation { invoke(functionName: "nope") { id } }`);
    expect(unknown.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    expect(unknown.data).toBeNull();
    const big = await h.gql(`mutation($p: JSON) { invokeAsync(functionName: "echo", payload: $p) { id } }`, { p: 'x'.repeat(1_100_000) });
    expect(big.errors?.[0]?.extensions?.code).toBe('PayloadTooLarge');
    const key = await h.gql(`mutation { invokeAsync(functionName: "echo", idempotencyKey: "") { id } }`);
    expect(key.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
  });

  it('invokeAsync returns the accepted invocation; cancelInvocation cancels it once', async () => {
    const r = await h.gql(`mutation { invokeAsync(functionName: "echo", payload: { later: true }) { ${INVOCATION} } }`);
    const inv = r.data?.invokeAsync;
    expect(inv).toMatchObject({ type: 'ASYNC', status: 'QUEUED', attempts: 0, payload: { later: true }, finishedAt: null });
    expect(inv.events.map((e: { type: string }) => e.type)).toEqual(['ACCEPTED']);

    const cancelled = await h.gql(`mutation { cancelInvocation(id: "${inv.id}") { status events { type data } } }`);
    expect(cancelled.data?.cancelInvocation.status).toBe('CANCELLED');
    expect(cancelled.data?.cancelInvocation.events.map((e: { type: string }) => e.type)).toEqual(['ACCEPTED', 'CANCELLED']);

    const twice = await h.gql(`mutation { cancelInvocation(id: "${inv.id}") { status } }`);
    expect(twice.errors?.[0]?.extensions?.code).toBe('LifecycleViolation');
    const none = await h.gql(`mutation { cancelInvocation(id: "00000000-0000-4000-8000-000000000000") { status } }`);
    expect(none.errors?.[0]?.extensions?.code).toBe('InvocationNotFound');
  });

  it('redrive queues a dead letter again; deadLetters lists it until then', async () => {
    const r = await h.gql(`mutation { invokeAsync(functionName: "fail", payload: { reason: "dlq" }) { id } }`);
    const id = r.data?.invokeAsync.id as string;
    await finishAsync(h.t.db, id, 'dead_lettered');

    const dl = await h.gql(`{ deadLetters(functionName: "fail") { edges { node { id status error { errorType } } } } }`);
    expect(dl.data?.deadLetters.edges).toEqual([{ node: { id, status: 'DEAD_LETTERED', error: { errorType: 'Boom' } } }]);
    const other = await h.gql(`{ deadLetters(functionName: "echo") { edges { node { id } } } }`);
    expect(other.data?.deadLetters.edges).toEqual([]);

    const redriven = await h.gql(`mutation { redrive(invocationId: "${id}") { status events { type data } } }`);
    expect(redriven.data?.redrive.status).toBe('QUEUED');
    expect(redriven.data?.redrive.events.at(-1)).toEqual({ type: 'REDRIVEN', data: { by: 'graphql' } });
    const after = await h.gql(`{ deadLetters { edges { node { id } } } }`);
    expect(after.data?.deadLetters.edges).toEqual([]);

    const notDead = await h.gql(`mutation { redrive(invocationId: "${id}") { status } }`);
    expect(notDead.errors?.[0]?.extensions?.code).toBe('LifecycleViolation');
    await finishAsync(h.t.db, id, 'succeeded');
    const done = await h.gql(`{ invocation(id: "${id}") { status result attempts } }`);
    expect(done.data?.invocation).toEqual({ status: 'SUCCEEDED', result: { attempt: 2 }, attempts: 2 });
  });

  it('invocation(id) reads one invocation; an unknown or malformed id is null', async () => {
    const r = await h.gql(`mutation { invoke(functionName: "echo", payload: "x") { id } }`);
    const id = r.data?.invoke.id as string;
    const read = await h.gql(`{ invocation(id: "${id}") { id status payload result events { type } } }`);
    expect(read.data?.invocation).toEqual({ id, status: 'SUCCEEDED', payload: 'x', result: 'x', events: [{ type: 'ACCEPTED' }, { type: 'STARTED' }, { type: 'SUCCEEDED' }] });
    const none = await h.gql(`{ a: invocation(id: "00000000-0000-4000-8000-000000000000") { id } b: invocation(id: "not-a-uuid") { id } }`);
    expect(none.data).toEqual({ a: null, b: null });
  });
});

describe('functionStats', () => {
  it('counts outcomes, success rate and duration percentiles over the window', async () => {
    await h.gql(`mutation { createFunction(input: { name: "stats", runtime: MODULE, handler: "echo.ts", isolation: INLINE }) { name } }`);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await h.gql(`mutation { invokeAsync(functionName: "stats", payload: ${i}) { id } }`);
      ids.push(r.data?.invokeAsync.id);
    }
    await finishAsync(h.t.db, ids[0] as string, 'succeeded', 10);
    await finishAsync(h.t.db, ids[1] as string, 'succeeded', 20);
    await finishAsync(h.t.db, ids[2] as string, 'dead_lettered', 30);
    const r = await h.gql(`{ functionStats(name: "stats") {
      functionName since invocations queued running retryScheduled succeeded failed deadLettered cancelled
      failedAttempts successRate p50DurationMs p95DurationMs p99DurationMs } }`);
    expect(r.errors).toBeUndefined();
    expect(r.data?.functionStats).toMatchObject({
      functionName: 'stats',
      invocations: 4,
      queued: 1,
      running: 0,
      succeeded: 2,
      deadLettered: 1,
      failedAttempts: 1,
      p50DurationMs: 20,
      p95DurationMs: 29,
      p99DurationMs: 29.8,
    });
    expect(r.data?.functionStats.successRate).toBeCloseTo(2 / 3);
    const future = await h.gql(`{ functionStats(name: "stats", since: "2999-01-01T00:00:00Z") { invocations successRate p50DurationMs } }`);
    expect(future.data?.functionStats).toEqual({ invocations: 0, successRate: null, p50DurationMs: null });
    const missing = await h.gql(`{ functionStats(name: "nope") { invocations } }`);
    expect(missing.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    const badSince = await h.gql(`{ functionStats(name: "stats", since: "yesterday") { invocations } }`);
    expect(badSince.errors?.[0]?.message).toMatch(/DateTime/);
    await h.gql(`mutation { cancelInvocation(id: "${ids[3]}") { id } }`);
  });
});

describe('errors', () => {
  it('unexpected errors are masked: no internals reach the client', async () => {
    const broken = {
      resolveFunction: async () => {
        throw new Error('connection string postgres://user:pw@db/secret');
      },
    } as unknown as InvokeService;
    const app = mount({ ...h.deps, invoke: broken });
    const r = await post<Record<string, unknown>>(app, `mutation { invoke(functionName: "echo") { id } }`);
    expect(r.errors?.[0]?.message).toBe('Unexpected error.');
    expect(r.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(JSON.stringify(r)).not.toMatch(/secret|postgres:/);
  });
});

describe('GraphiQL page', () => {
  it('GET with Accept: text/html serves GraphiQL whose every asset comes from this server', async () => {
    const res = await h.app.request('/graphql', { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).not.toMatch(/unpkg|cdn|https?:\/\//i);
    expect(html).toContain('invoke(functionName: \\"echo\\"');
    const assets = [...html.matchAll(/\/graphql\/graphiql\/[\d.]+\/[\w.-]+/g)].map((m) => m[0]);
    expect(assets.length).toBe(5);
    for (const path of assets) {
      const gz = await h.app.request(path, { headers: { 'accept-encoding': 'gzip, br' } });
      expect(gz.status, path).toBe(200);
      expect(gz.headers.get('content-encoding')).toBe('gzip');
      const plain = await h.app.request(path);
      expect(plain.headers.get('content-encoding')).toBeNull();
      expect((await plain.arrayBuffer()).byteLength).toBeGreaterThan(10_000);
    }
    expect((await h.app.request('/graphql/graphiql/4.5.0/nope.js')).status).toBe(404);
  });

  it('GET without text/html still answers queries', async () => {
    const res = await h.app.request(`/graphql?query=${encodeURIComponent('{ functions { name } }')}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: { functions: unknown[] } }).data.functions.length).toBeGreaterThan(0);
  });
});
