// GraphQL of replay runs (docs/replay.md): startReplay, replay(id) with progress and
// report, the REPLAY invocation type and its link to the original, refusals with codes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlias, publishVersion } from '../../db/control-plane.ts';
import { upsertFunction } from '../../db/functions.ts';
import { startWorker, waitFor, type RunningWorker } from '../worker/helpers.ts';
import { createHarness, type Harness } from './harness.ts';

let h: Harness;
let worker: RunningWorker;

beforeAll(async () => {
  h = await createHarness();
  // the worker's runtimes load test/worker/fixtures, which has an echo.ts too
  worker = await startWorker(h.t.db, h.t.url);
});

afterAll(async () => {
  await worker?.stop();
  await h?.close();
});

describe('replay over GraphQL', () => {
  it('starts a run, shows its progress and report, and links each replay to its original', async () => {
    const originals: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await h.gql(`mutation($p: JSON) { invoke(functionName: "echo", payload: $p) { id status } }`, { p: { i } });
      expect(r.errors).toBeUndefined();
      originals.push(r.data?.invoke.id);
    }
    // a new version of echo (same code, longer timeout): the replay target
    const v2 = await upsertFunction(h.t.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline', timeoutMs: 4_000 });
    expect(v2.version).toBe(2);

    const started = await h.gql(
      `mutation($input: StartReplayInput!) { startReplay(input: $input) { id target targetVersion concurrency progress { total } } }`,
      { input: { functionName: 'echo', target: '$LATEST', concurrency: 2 } },
    );
    expect(started.errors).toBeUndefined();
    expect(started.data?.startReplay).toMatchObject({ target: '$LATEST', targetVersion: 2, concurrency: 2, progress: { total: 5 } });
    const id = started.data?.startReplay.id as string;

    const query = `query($id: ID!) { replay(id: $id) {
      progress { total started finished done }
      report(examples: 2) { total finished byKind { kind count examples { ordinal kind } } durations { pairs medianRatio }
        pairs(kind: SAME) { kind payload before { invocationId version status result } after { invocationId version status result } diff { op path } }
        json }
    } }`;
    const done = await waitFor('the run', async () => {
      const r = await h.gql(query, { id });
      return r.data?.replay.progress.done ? r : null;
    }, 60_000);
    const replay = done.data?.replay;
    expect(replay.progress).toEqual({ total: 5, started: 5, finished: 5, done: true });
    expect(replay.report.byKind).toEqual([{ kind: 'SAME', count: 5, examples: [expect.objectContaining({ kind: 'SAME' }), expect.objectContaining({ kind: 'SAME' })] }]);
    expect(replay.report.pairs).toHaveLength(5);
    for (const p of replay.report.pairs) {
      expect(p.before).toMatchObject({ version: 1, status: 'succeeded', result: p.payload });
      expect(p.after).toMatchObject({ version: 2, status: 'succeeded', result: p.payload });
      expect(p.diff).toEqual([]);
    }
    expect(new Set(replay.report.pairs.map((p: { before: { invocationId: string } }) => p.before.invocationId))).toEqual(new Set(originals));
    // the export: the whole report as one JSON value
    expect(replay.report.json).toMatchObject({ total: 5, finished: 5, replay: { id, targetVersion: 2 } });
    expect(replay.report.json.pairs).toHaveLength(5);

    // replays are invocations of type REPLAY, each linked to its original
    const listed = await h.gql(`{ invocations(filter: { functionName: "echo", type: REPLAY }) { totalCount edges { node { type functionVersion replay { replayId originalInvocationId } } } } }`);
    expect(listed.errors).toBeUndefined();
    expect(listed.data?.invocations.totalCount).toBe(5);
    for (const { node } of listed.data?.invocations.edges ?? []) {
      expect(node).toMatchObject({ type: 'REPLAY', functionVersion: 2, replay: { replayId: id } });
      expect(originals).toContain(node.replay.originalInvocationId);
    }
    const original = await h.gql(`query($id: ID!) { invocation(id: $id) { type replay { replayId } } }`, { id: originals[0] });
    expect(original.data?.invocation).toEqual({ type: 'SYNC', replay: null });

    const runs = await h.gql(`{ replays(functionName: "echo") { id } }`);
    expect(runs.data?.replays).toEqual([{ id }]);
  }, 90_000);

  it('takes an alias as the target and reports per version which replays ran where', async () => {
    await publishVersion(h.t.db, { actor: 'test' }, 'echo'); // version 2
    await createAlias(h.t.db, { actor: 'test' }, 'echo', 'live', { functionVersion: 2 });
    const started = await h.gql(`mutation { startReplay(input: { functionName: "echo", target: "live", sample: 3 }) { id target targetVersion } }`);
    expect(started.errors).toBeUndefined();
    expect(started.data?.startReplay).toMatchObject({ target: 'live', targetVersion: 2 });
    const id = started.data?.startReplay.id as string;
    const done = await waitFor('the alias run', async () => {
      const r = await h.gql(`query($id: ID!) { replay(id: $id) { progress { done } report { byVersion { version count byKind { kind count } } pairs { after { version alias } } } } }`, { id });
      return r.data?.replay.progress.done ? r : null;
    }, 60_000);
    expect(done.data?.replay.report.byVersion).toEqual([{ version: 2, count: 3, byKind: [{ kind: 'SAME', count: 3 }] }]);
    expect(done.data?.replay.report.pairs).toEqual(Array(3).fill({ after: { version: 2, alias: 'live' } }));
  }, 90_000);

  it('refuses what it cannot run with a code, and answers null for an unknown run', async () => {
    const bad = await h.gql(`mutation { startReplay(input: { functionName: "echo", target: "no alias!" }) { id } }`);
    expect(bad.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const unknown = await h.gql(`mutation { startReplay(input: { functionName: "echo", target: "prod" }) { id } }`);
    expect(unknown.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    const missing = await h.gql(`mutation { startReplay(input: { functionName: "echo", target: "99" }) { id } }`);
    expect(missing.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    const none = await h.gql(`{ replay(id: "00000000-0000-7000-8000-000000000000") { id } }`);
    expect(none.data?.replay).toBeNull();
  });
});
