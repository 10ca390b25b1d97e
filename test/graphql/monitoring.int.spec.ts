// The GraphQL fields the console reads: statistics over time, current activity, dead
// letter groups, attempt logs, event durations, function versions, the idempotency key
// filter and queue lag. Every number is checked against what the test wrote.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadStates, appendEvents } from '../../db/writer.ts';
import { createHarness, finishAsync, type Harness } from './harness.ts';

let h: Harness;
const ids: Record<string, string> = {};

async function invokeAsync(fn: string, key?: string): Promise<string> {
  const r = await h.gql(`mutation($fn: String!, $key: String) { invokeAsync(functionName: $fn, payload: {n: 1}, idempotencyKey: $key) { id } }`, { fn, key: key ?? null });
  expect(r.errors).toBeUndefined();
  return r.data?.invokeAsync.id as string;
}

/** One attempt that fails with `errorType` and prints `log`, then is dead-lettered. */
async function failWithLog(id: string, errorType: string, log: string): Promise<void> {
  const prior = (await loadStates(h.t.db, [id])).get(id)!;
  const started = await appendEvents(h.t.db, { invocationId: id, expectedSeq: prior.lastSeq, prior, events: [{ type: 'started', data: { attempt: 1, workerId: 'monitoring-test' } }] });
  await appendEvents(h.t.db, {
    invocationId: id,
    expectedSeq: started.state.lastSeq,
    prior: started.state,
    events: [
      { type: 'failed', data: { attempt: 1, error: { errorType, errorMessage: 'card declined', trace: [] }, willRetry: false, durationMs: 7 } },
      { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
    ],
    log: { attempt: 1, text: log },
  });
}

beforeAll(async () => {
  h = await createHarness();
  for (let i = 0; i < 3; i++) {
    const r = await h.gql(`mutation($key: String) { invoke(functionName: "echo", payload: {i: ${i}}, idempotencyKey: $key) { id status } }`, { key: i === 0 ? 'k-1' : null });
    expect(r.data?.invoke.status).toBe('SUCCEEDED');
  }
  ids.dead = await invokeAsync('fail');
  await failWithLog(ids.dead, 'PaymentDeclined', 'charging card 4242\n');
  ids.retrying = await invokeAsync('fail');
  await finishAsync(h.t.db, ids.retrying, 'retried', 11);
});

afterAll(async () => {
  await h?.close();
});

const POINT = 'start accepted succeeded failedAttempts deadLettered errorRate p50DurationMs p95DurationMs p99DurationMs';

describe('invocationStats', () => {
  it('counts per bucket, per function and in total, with buckets aligned on since', async () => {
    const since = new Date(Date.now() - 3_600_000);
    const r = await h.gql(`query($since: DateTime!) { invocationStats(since: $since, bucketSeconds: 60) {
      since bucketSeconds total { functionName points { ${POINT} } } functions { functionName points { ${POINT} } } } }`, { since: since.toISOString() });
    expect(r.errors).toBeUndefined();
    const s = r.data?.invocationStats;
    const sum = (points: { [k: string]: number }[], k: string) => points.reduce((n, p) => n + (p[k] as number), 0);
    expect(s.total.functionName).toBeNull();
    expect(sum(s.total.points, 'accepted')).toBe(5);
    expect(sum(s.total.points, 'succeeded')).toBe(3);
    expect(sum(s.total.points, 'failedAttempts')).toBe(2);
    expect(sum(s.total.points, 'deadLettered')).toBe(1);
    for (const p of s.total.points) expect((Date.parse(p.start) - since.getTime()) % 60_000).toBe(0);
    // busiest first
    expect(s.functions.map((f: { functionName: string }) => f.functionName)).toEqual(['echo', 'fail']);
    const fail = s.functions[1];
    expect(sum(fail.points, 'accepted')).toBe(2);
    expect(sum(fail.points, 'failedAttempts')).toBe(2);
    expect(sum(fail.points, 'succeeded')).toBe(0);
    const failPoint = fail.points.find((p: { failedAttempts: number }) => p.failedAttempts > 0);
    expect(failPoint.errorRate).toBe(1);
  });

  it('one bucket over the whole range gives its totals and percentiles; one function alone', async () => {
    const until = new Date();
    const since = new Date(until.getTime() - 3_600_000);
    const r = await h.gql(`query($since: DateTime!, $until: DateTime!) { invocationStats(since: $since, until: $until, bucketSeconds: 3600, functionName: "fail") {
      total { functionName points { ${POINT} } } functions { functionName } } }`, { since: since.toISOString(), until: until.toISOString() });
    expect(r.errors).toBeUndefined();
    const s = r.data?.invocationStats;
    expect(s.total.functionName).toBe('fail');
    expect(s.functions.map((f: { functionName: string }) => f.functionName)).toEqual(['fail']);
    expect(s.total.points).toHaveLength(1);
    const [p] = s.total.points;
    expect(p).toMatchObject({ accepted: 2, succeeded: 0, failedAttempts: 2, deadLettered: 0 + 1, errorRate: 1 });
    // durations 7 and 11 ms: percentile_cont interpolates
    expect(p.p50DurationMs).toBe(9);
    expect(p.p99DurationMs).toBeCloseTo(10.96, 2);
  });

  it('refuses a bucket size below one second and more than 1008 buckets', async () => {
    const since = new Date(Date.now() - 86_400_000).toISOString();
    const zero = await h.gql(`query($since: DateTime!) { invocationStats(since: $since, bucketSeconds: 0) { bucketSeconds } }`, { since });
    expect(zero.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const many = await h.gql(`query($since: DateTime!) { invocationStats(since: $since, bucketSeconds: 60) { bucketSeconds } }`, { since });
    expect(many.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    expect(many.errors?.[0]?.message).toMatch(/144\d buckets asked for; at most 1008/);
  });
});

describe('activity and dead letters', () => {
  it('counts running, due and scheduled work and names the oldest due invocation', async () => {
    const before = await h.gql('{ activity { runningAttempts dueInvocations scheduledInvocations oldestDue { invocationId } } }');
    expect(before.data?.activity).toEqual({ runningAttempts: 0, dueInvocations: 0, scheduledInvocations: 1, oldestDue: null });
    const queued = await invokeAsync('echo');
    const after = await h.gql('{ activity { dueInvocations oldestDue { invocationId functionName waitingSeconds } } }');
    expect(after.data?.activity.dueInvocations).toBe(1);
    expect(after.data?.activity.oldestDue).toMatchObject({ invocationId: queued, functionName: 'echo' });
    expect(after.data?.activity.oldestDue.waitingSeconds).toBeGreaterThanOrEqual(0);
    await finishAsync(h.t.db, queued, 'succeeded');
  });

  it('groups dead letters by function and error type', async () => {
    const r = await h.gql('{ deadLetterGroups { functionName errorType count reasons oldestAt newestAt } }');
    expect(r.data?.deadLetterGroups).toEqual([
      { functionName: 'fail', errorType: 'PaymentDeclined', count: 1, reasons: ['RetriesExhausted'], oldestAt: expect.any(String), newestAt: expect.any(String) },
    ]);
  });
});

describe('one invocation', () => {
  it('has its attempt logs and the duration of each ended attempt', async () => {
    const r = await h.gql(`query($id: ID!) { invocation(id: $id) { attemptLogs { attempt log } events { type durationMs } } }`, { id: ids.dead });
    expect(r.errors).toBeUndefined();
    expect(r.data?.invocation.attemptLogs).toEqual([{ attempt: 1, log: 'charging card 4242\n' }]);
    expect(r.data?.invocation.events).toEqual([
      { type: 'ACCEPTED', durationMs: null },
      { type: 'STARTED', durationMs: null },
      { type: 'FAILED', durationMs: 7 },
      { type: 'DEAD_LETTERED', durationMs: null },
    ]);
  });

  it('is found by its idempotency key, and only it', async () => {
    const r = await h.gql(`{ invocations(filter: { idempotencyKey: "k-1" }) { edges { node { idempotencyKey functionName } } } }`);
    expect(r.data?.invocations.edges).toEqual([{ node: { idempotencyKey: 'k-1', functionName: 'echo' } }]);
    const none = await h.gql(`{ invocations(filter: { idempotencyKey: "k-2" }) { edges { node { id } } } }`);
    expect(none.data?.invocations.edges).toEqual([]);
  });
});

describe('functions and queues', () => {
  it('lists every version of a function, newest first', async () => {
    const u = await h.gql('mutation { updateFunction(name: "sleep", input: { timeoutMs: 4000 }) { version } }');
    expect(u.data?.updateFunction.version).toBe(2);
    const r = await h.gql('{ function(name: "sleep") { versions { version timeoutMs } } }');
    expect(r.data?.function.versions).toEqual([
      { version: 2, timeoutMs: 4000 },
      { version: 1, timeoutMs: 3000 },
    ]);
  });

  it('gives the age of the oldest message of each queue, null when empty', async () => {
    expect((await h.gql('mutation { a: createQueue(input: { name: "q-busy" }) { name } b: createQueue(input: { name: "q-empty" }) { name } }')).errors).toBeUndefined();
    expect((await h.gql('mutation { sendMessage(queueName: "q-busy", body: { m: 1 }) { messageId } }')).errors).toBeUndefined();
    const r = await h.gql('{ queues { name approximateAgeOfOldestMessageSeconds } }');
    const byName = Object.fromEntries(r.data?.queues.map((q: { name: string; approximateAgeOfOldestMessageSeconds: number | null }) => [q.name, q.approximateAgeOfOldestMessageSeconds]));
    expect(byName['q-empty']).toBeNull();
    expect(byName['q-busy']).toBeGreaterThanOrEqual(0);
    expect(byName['q-busy']).toBeLessThan(3600);
  });
});
