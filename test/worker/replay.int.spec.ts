// Replay (docs/replay.md): a few hundred real invocations recorded on version 1 of a
// function, replayed against version 2, and the report names exactly the inputs whose
// results differ, with their diffs; replays fire no destinations, touch no idempotency
// key, run within their run's concurrency and are `replay` invocations linked to their
// originals.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlias, publishVersion } from '../../db/control-plane.ts';
import { LedgerError } from '../../db/errors.ts';
import { updateFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { replayProgress, replayReport, startReplay } from '../../db/replay-runs.ts';
import type { DifferenceKind, JsonChange } from '../../db/replay-report.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, startWorker, waitFor, type RunningWorker } from './helpers.ts';

const N = 300;
let t: TestDatabase;
let worker: RunningWorker;
/** the originals of the first test, by input n (index n − 1) */
let originalIds: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  worker = await startWorker(t.db, t.url, { replayConcurrency: 4 });
});

afterAll(async () => {
  await worker?.stop();
});

/** What version 2 does differently, stated independently of the fixtures' code paths. */
function expectedKind(n: number): DifferenceKind {
  const v1Fails = n % 17 === 0;
  const v2Fails = n % 11 === 0;
  if (v1Fails && v2Fails) return 'same_error';
  if (v2Fails) return 'error_now';
  if (v1Fails) return 'error_before';
  return n % 7 === 0 || n % 13 === 0 ? 'changed' : 'same';
}

function expectedDiff(n: number): JsonChange[] {
  const changes: JsonChange[] = [];
  if (n % 7 === 0) changes.push({ op: 'CHANGE', path: '/label', before: `n${n}`, after: `N${n}` });
  if (n % 13 === 0) changes.push({ op: 'CREATE', path: '/tags/1', after: 'lucky' });
  return changes;
}

async function count(query: ReturnType<typeof sql<{ n: number }>>): Promise<number> {
  return (await query.execute(t.db)).rows[0]?.n ?? -1;
}

describe('replay', () => {
  it('replays recorded invocations against another version and reports exactly what changed', async () => {
    await fn(t.db, 'sink', 'noop.ts');
    const v1 = await fn(t.db, 'quote', 'quote-v1.ts', { maxRetries: 0, onSuccess: 'function:sink', onFailure: 'function:sink' });
    const inputs = Array.from({ length: N }, (_, i) => i + 1);
    // real invocations of version 1, the first 50 with idempotency keys
    const accepted = await acceptInvocations(
      t.db,
      inputs.map((n) => ({ fn: v1, invocationType: 'async' as const, payload: { n }, idempotencyKey: n <= 50 ? `quote-${n}` : null })),
    );
    originalIds = accepted.map((a) => a.invocationId);
    // published, so that an alias may point at them (the alias test below)
    await publishVersion(t.db, { actor: 'test' }, 'quote');
    const v2 = await updateFunction(t.db, 'quote', { handler: 'quote-v2.ts' });
    expect(v2.version).toBe(2);
    await publishVersion(t.db, { actor: 'test' }, 'quote');

    // every original has ended and its destination ran (the destination is accepted with the outcome)
    await waitFor(
      'originals and their destinations',
      async () =>
        (await count(sql`select count(*)::int as n from ledger.invocations where function_name = 'quote' and status in ('succeeded', 'dead_lettered')`)) === N &&
        (await count(sql`select count(*)::int as n from ledger.invocations where function_name = 'sink' and status = 'succeeded'`)) === N,
      60_000,
    );
    const keysBefore = (await sql`select function_name, key, invocation_id, expires_at from ledger.idempotency_keys order by key`.execute(t.db)).rows;
    expect(keysBefore).toHaveLength(50);

    const run = await startReplay(t.db, { selection: { functionName: 'quote' }, target: '2', concurrency: 3, createdBy: 'test' });
    expect(run).toMatchObject({ functionName: 'quote', target: '2', targetVersion: 2, total: N, concurrency: 3 });
    await waitFor('the replay run', async () => (await replayProgress(t.db, [run.id])).get(run.id)?.done, 120_000);

    const report = await replayReport(t.db, run.id, { withPairs: true, examples: 3 });
    const pairs = report.pairs ?? [];
    expect(pairs).toHaveLength(N);
    expect(report.finished).toBe(N);
    const byInput = new Map(pairs.map((p) => [(p.payload as { n: number }).n, p]));
    expect([...byInput.keys()].sort((a, b) => a - b)).toEqual(inputs);

    // exactly the inputs whose results differ, each with its kind and its diff
    const differing = pairs.filter((p) => p.kind !== 'same').map((p) => (p.payload as { n: number }).n).sort((a, b) => a - b);
    expect(differing).toEqual(inputs.filter((n) => expectedKind(n) !== 'same'));
    for (const n of inputs) {
      const p = byInput.get(n);
      expect(p?.kind, `input ${n}`).toBe(expectedKind(n));
      expect(p?.diff, `input ${n}`).toEqual(expectedKind(n) === 'changed' ? expectedDiff(n) : []);
      expect(p?.before.invocationId).toBe(originalIds[n - 1]);
      expect(p?.before.version).toBe(1);
      expect(p?.after?.version).toBe(2);
    }
    expect(byInput.get(22)?.after).toMatchObject({ ok: false, errorType: 'Error', errorMessage: 'v2 cannot quote 22' });
    expect(byInput.get(34)?.before).toMatchObject({ ok: false, status: 'dead_lettered', errorType: 'Error' });

    // the summary counts every kind, with the worst examples first (most differences)
    const counts = Object.fromEntries(report.byKind.map((k) => [k.kind, k.count]));
    const expectedCounts: Record<string, number> = {};
    for (const n of inputs) expectedCounts[expectedKind(n)] = (expectedCounts[expectedKind(n)] ?? 0) + 1;
    expect(counts).toEqual(expectedCounts);
    const changed = report.byKind.find((k) => k.kind === 'changed');
    expect(changed?.examples[0]?.diff).toHaveLength(2); // 91 = 7 × 13 changes twice
    expect(report.durations.pairs).toBe(N);

    // replays are `replay` invocations linked to their originals, each by its accepted event
    const replays = (
      await sql<{ id: string; original: string; replay_id: string; key: string | null; type: string }>`
        select i.id, e.data -> 'replay' ->> 'of' as original, e.data -> 'replay' ->> 'replayId' as replay_id,
               e.data ->> 'idempotencyKey' as key, i.invocation_type as type
        from ledger.replay_items it join ledger.invocations i on i.id = it.invocation_id
        join ledger.events e on e.invocation_id = i.id and e.seq = 1
        where it.replay_id = ${run.id}::uuid`.execute(t.db)
    ).rows;
    expect(replays).toHaveLength(N);
    for (const r of replays) expect(r).toMatchObject({ type: 'replay', replay_id: run.id, key: null });
    expect(new Set(replays.map((r) => r.original))).toEqual(new Set(originalIds));

    // no destinations, no idempotency key touched
    expect(await count(sql`select count(*)::int as n from ledger.invocations where function_name = 'sink'`)).toBe(N);
    expect((await sql`select function_name, key, invocation_id, expires_at from ledger.idempotency_keys order by key`.execute(t.db)).rows).toEqual(keysBefore);

    // visible as replays in the metrics and the audit views, and only there: the worker's
    // replay counter has every replay by outcome, its live counter only the originals
    const metric = async (name: string) => (await worker.registry.getSingleMetric(name)?.get())?.values ?? [];
    const replayed = (await metric('ledger_replay_invocations_total')).filter((v) => v.labels.function === 'quote');
    const v2Failures = inputs.filter((n) => n % 11 === 0).length;
    expect(Object.fromEntries(replayed.map((v) => [v.labels.outcome, v.value]))).toEqual({ succeeded: N - v2Failures, failed: v2Failures });
    const live = (await metric('ledger_worker_invocations_total')).filter((v) => v.labels.function === 'quote');
    expect(live.reduce((sum, v) => sum + v.value, 0)).toBe(N);
    const attempts = (await metric('ledger_invocations_total')).filter((v) => v.labels.function === 'quote');
    expect(attempts.reduce((sum, v) => sum + v.value, 0)).toBe(N);
    expect(attempts.every((v) => v.labels.type === 'async')).toBe(true);
    expect((await metric('ledger_replay_running'))[0]?.value).toBe(0);
    expect(await count(sql`select count(*)::int as n from audit.invocations where function_name = 'quote' and invocation_type = 'replay'`)).toBe(N);

    // the handler was told: context.replay names the original
    const p1 = byInput.get(1);
    const { rows: logs } = await sql<{ log: string }>`
      select log from ledger.attempt_logs where invocation_id = ${p1?.after?.invocationId}::uuid`.execute(t.db);
    expect(logs[0]?.log).toContain(`replay of ${originalIds[0]} (v1)`);

    // never more than the run's concurrency at once (a bound read from the ledger's clock)
    const maxOverlap = await count(sql`
      with spans as (
        select s.invocation_id, s.occurred_at as started, f.occurred_at as finished
        from ledger.replay_items it
        join ledger.events s on s.invocation_id = it.invocation_id and s.type = 'started'
        join ledger.events f on f.invocation_id = it.invocation_id and f.type in ('succeeded', 'failed')
        where it.replay_id = ${run.id}::uuid
      )
      select max(c)::int as n from (
        select (select count(*) from spans o where o.started <= s.started and o.finished > s.started) as c from spans s
      ) x`);
    expect(maxOverlap).toBeGreaterThanOrEqual(1);
    expect(maxOverlap).toBeLessThanOrEqual(3);

    // auditors see the same comparison in SQL
    const { rows: audit } = await sql<{ same: number; differ: number }>`
      select count(*) filter (where same_result)::int as same, count(*) filter (where not same_result)::int as differ
      from audit.replay_pairs where replay_id = ${run.id}::uuid`.execute(t.db);
    expect(audit[0]).toEqual({ same: expectedCounts.same, differ: N - (expectedCounts.same ?? 0) });
  }, 180_000);

  it('refuses a target or a selection it cannot run, writing nothing', async () => {
    const before = await count(sql`select count(*)::int as n from ledger.replays`);
    const refused = async (p: Promise<unknown>, code: string, message: RegExp) => {
      const e = await p.then(() => null, (err: unknown) => err);
      expect(e).toBeInstanceOf(LedgerError);
      expect((e as LedgerError).code).toBe(code);
      expect((e as LedgerError).message).toMatch(message);
    };
    await refused(startReplay(t.db, { selection: { functionName: 'quote' }, target: '9' }), 'FunctionNotFound', /quote:9/);
    await refused(startReplay(t.db, { selection: { functionName: 'quote' }, target: 'nosuch' }), 'FunctionNotFound', /Alias not found: quote:nosuch/);
    await refused(startReplay(t.db, { selection: { functionName: 'quote' }, target: 'not an alias!' }), 'InvalidParameter', /alias/);
    await refused(startReplay(t.db, { selection: { functionName: 'nope' } }), 'FunctionNotFound', /nope/);
    await refused(
      startReplay(t.db, { selection: { functionName: 'quote', ids: ['00000000-0000-7000-8000-000000000000'] } }),
      'InvalidParameter',
      /Nothing to replay/,
    );
    await refused(startReplay(t.db, { selection: { functionName: 'quote', statuses: ['running'] } }), 'InvalidParameter', /no outcome to compare/);
    await refused(startReplay(t.db, { selection: { functionName: 'quote', sample: 0 } }), 'InvalidParameter', /sample/);
    await refused(startReplay(t.db, { selection: { functionName: 'quote' }, concurrency: 0 }), 'InvalidParameter', /concurrency/);
    expect(await count(sql`select count(*)::int as n from ledger.replays`)).toBe(before);
  });

  it('an alias is a target: each replay is routed as Lambda routes an invocation through it, and the report compares per version', async () => {
    // version 1 with half of the invocations on version 2, as a canary alias would be
    await createAlias(t.db, { actor: 'test' }, 'quote', 'canary', { functionVersion: 1, additionalWeights: { '2': 0.5 } });
    const ids = originalIds.slice(0, 80);
    const run = await startReplay(t.db, { selection: { functionName: 'quote', ids }, target: 'canary', concurrency: 4 });
    // the run records the alias as asked beside the version it named when the run started
    expect(run).toMatchObject({ target: 'canary', targetVersion: 1, total: ids.length });
    await waitFor('the alias replay run', async () => (await replayProgress(t.db, [run.id])).get(run.id)?.done, 120_000);

    const report = await replayReport(t.db, run.id, { withPairs: true });
    const pairs = report.pairs ?? [];
    expect(pairs).toHaveLength(ids.length);
    // each replay's accepted event names the alias and the version it ran
    const { rows: accepted } = await sql<{ id: string; version: number; alias: string | null }>`
      select e.invocation_id as id, (e.data ->> 'functionVersion')::int as version, e.data ->> 'alias' as alias
      from ledger.replay_items it join ledger.events e on e.invocation_id = it.invocation_id and e.seq = 1
      where it.replay_id = ${run.id}::uuid`.execute(t.db);
    const ran = new Map(accepted.map((r) => [r.id, r]));
    const perVersion = new Map<number, Map<string, number>>();
    for (const p of pairs) {
      const n = (p.payload as { n: number }).n;
      const a = ran.get(p.after?.invocationId as string);
      expect(a?.alias, `input ${n}`).toBe('canary');
      expect(p.after?.version, `input ${n}`).toBe(a?.version);
      expect(p.after?.alias, `input ${n}`).toBe('canary');
      // compared with what the version it ran does: version 1 again is the original's result
      const kind = p.after?.version === 1 ? (n % 17 === 0 ? 'same_error' : 'same') : expectedKind(n);
      expect(p.kind, `input ${n} on version ${p.after?.version}`).toBe(kind);
      const counts = perVersion.get(p.after?.version as number) ?? new Map<string, number>();
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
      perVersion.set(p.after?.version as number, counts);
    }
    // weighted per invocation: both versions ran (each way round has probability 2^-80 of not happening)
    expect([...perVersion.keys()].sort()).toEqual([1, 2]);
    // the report's summary per version says the same
    expect(report.byVersion.map((v) => v.version)).toEqual([1, 2]);
    for (const v of report.byVersion) {
      expect(Object.fromEntries(v.byKind.map((k) => [k.kind, k.count])), `version ${v.version}`).toEqual(Object.fromEntries(perVersion.get(v.version) ?? []));
      expect(v.count).toBe([...(perVersion.get(v.version)?.values() ?? [])].reduce((a, b) => a + b, 0));
    }
  }, 180_000);
});
