// `invoke-ledger replay …` (docs/replay.md): start a run and wait for its report table,
// show the JSON export, list runs, refuse a bad target with exit 1 and nothing written.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlias, publishVersion } from '../../db/control-plane.ts';
import { updateFunction } from '../../db/functions.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, invokeAsync, startWorker, waitFor, type RunningWorker } from '../worker/helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase();
  worker = await startWorker(t.db, t.url);
  env = { DATABASE_URL: t.ownerUrl };
});

afterAll(async () => {
  await worker?.stop();
});

describe('invoke-ledger replay', () => {
  it('starts a run, waits for it and prints the report; show --json exports every pair', async () => {
    const v1 = await fn(t.db, 'quote', 'quote-v1.ts', { maxRetries: 0 });
    await invokeAsync(t.db, v1, Array.from({ length: 20 }, (_, i) => ({ n: i + 1 })));
    await waitFor('originals', async () => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations where status in ('succeeded', 'dead_lettered')`.execute(t.db);
      return rows[0]?.n === 20;
    });
    await updateFunction(t.db, 'quote', { handler: 'quote-v2.ts' });

    const started = await cli(['replay', 'start', 'quote', '--target', '2', '--concurrency', '4', '--wait', '--examples', '5'], env);
    expect(started.err).toBe('');
    expect(started.code).toBe(0);
    // 7 and 14 change their label, 13 gets a tag, 11 fails now, 17 failed before
    expect(started.out).toMatch(/20\/20 finished/);
    expect(started.out).toMatch(/^ changed +\| +3 \|/m);
    expect(started.out).toContain('/label "n7" → "N7"');
    expect(started.out).toContain('+/tags/1 "lucky"');
    expect(started.out).toMatch(/^ error_now +\| +1 \|/m);
    expect(started.out).toContain('now Error: v2 cannot quote 11');
    expect(started.out).toMatch(/^ error_before +\| +1 \|/m);
    expect(started.out).toMatch(/^ same +\| +15 \|/m);
    const id = /replay ([0-9a-f-]{36})/.exec(started.out)?.[1] as string;

    const shown = await cli(['replay', 'show', id, '--json'], env);
    expect(shown.code).toBe(0);
    const report = JSON.parse(shown.out) as { total: number; pairs: { kind: string; payload: { n: number } }[] };
    expect(report.total).toBe(20);
    expect(report.pairs.filter((p) => p.kind !== 'same').map((p) => p.payload.n)).toEqual([7, 11, 13, 14, 17]);

    const listed = await cli(['replay', 'list'], env);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain(id);
  }, 120_000);

  it('replays against an alias and says which version each replay ran', async () => {
    await publishVersion(t.db, { actor: 'test' }, 'quote'); // version 2
    await createAlias(t.db, { actor: 'test' }, 'quote', 'live', { functionVersion: 2 });
    const r = await cli(['replay', 'start', 'quote', '--target', 'live', '--id', await firstOriginals(5), '--wait'], env);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('against alias live (version 2 when it started)');
    expect(r.out).toMatch(/^version 2: 5 replay\(s\), /m);
  }, 60_000);

  it('refuses a target it cannot resolve: exit 1, one line, nothing written', async () => {
    const r = await cli(['replay', 'start', 'quote', '--target', 'prod'], env);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^replay: Alias not found: quote:prod/);
    const odd = await cli(['replay', 'start', 'quote', '--target', 'v2!'], env);
    expect(odd.code).toBe(1);
    expect(odd.err).toMatch(/^replay: Replay target must be \$LATEST, a version number or an alias name/);
    const bad = await cli(['replay', 'start', 'quote', '--sample', 'lots'], env);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('--sample: not a whole number');
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.replays`.execute(t.db);
    expect(rows[0]?.n).toBe(2);
  });
});

/** The first `n` recorded quote invocations, comma-separated (for --id). */
async function firstOriginals(n: number): Promise<string> {
  const { rows } = await sql<{ id: string }>`
    select id from ledger.invocations where function_name = 'quote' and invocation_type = 'async' order by accepted_at, id limit ${n}`.execute(t.db);
  return rows.map((r) => r.id).join(',');
}
