// functionHistory: every administration through GraphQL is a change in ledger.changes,
// and the history answers who changed what, when, and what the function ran with then.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('functionHistory', () => {
  it('lists created, updated and deleted with before and after, newest first; until answers "as of"', async () => {
    const created = await h.gql(`mutation { createFunction(input: { name: "hist", runtime: HTTP, url: "http://127.0.0.1:9/h", secret: "s3cret", timeoutMs: 1000 }) { version } }`);
    expect(created.errors).toBeUndefined();
    const first = await h.gql(`{ functionHistory(name: "hist") { occurredAt } }`);
    const asOfCreate = first.data?.functionHistory[0].occurredAt as string;
    await new Promise((r) => setTimeout(r, 20)); // a later statement timestamp for the next change
    const updated = await h.gql(`mutation { updateFunction(name: "hist", input: { timeoutMs: 2000 }) { version } }`);
    expect(updated.errors).toBeUndefined();
    // an update that changes nothing is no change
    await h.gql(`mutation { updateFunction(name: "hist", input: { timeoutMs: 2000 }) { version } }`);
    await h.gql(`mutation { deleteFunction(name: "hist") }`);

    const r = await h.gql(`{ functionHistory(name: "hist") { resourceType resourceName seq action actor requestId data } }`);
    expect(r.errors).toBeUndefined();
    const history = r.data?.functionHistory as { seq: number; action: string; actor: string; requestId: string | null; data: Record<string, unknown> }[];
    expect(history.map((c) => [c.seq, c.action])).toEqual([
      [3, 'deleted'],
      [2, 'config_updated'],
      [1, 'created'],
    ]);
    expect(history[1]!.data).toMatchObject({ version: 2, before: { timeoutMs: 1000 }, after: { timeoutMs: 2000 } });
    // the HTTP signing secret is never copied into the ledger
    expect(JSON.stringify(history)).not.toContain('s3cret');
    expect((history[2]!.data['after'] as Record<string, unknown>)['secret']).toBe('(set)');
    expect(history.every((c) => typeof c.requestId === 'string' && c.actor.length > 0)).toBe(true);

    const asOf = await h.gql(`query($until: DateTime) { functionHistory(name: "hist", until: $until) { action data } }`, { until: asOfCreate });
    expect(asOf.data?.functionHistory.map((c: { action: string }) => c.action)).toEqual(['created']);
    expect(asOf.data?.functionHistory[0].data.after).toMatchObject({ timeoutMs: 1000 });
  });
});
