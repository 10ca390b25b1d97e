import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { appendChange, latestChangeSeq, listChanges } from './changes.ts';
import { LedgerError } from './errors.ts';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

describe('the control-plane ledger (ledger.changes)', () => {
  it('numbers each resource\'s changes from 1, and lists them newest first', async () => {
    const a = await appendChange(t.db, { resourceType: 'function', resourceName: 'numbered', action: 'created', actor: 'cli:test', data: { after: { timeout: 3 } } });
    const b = await appendChange(t.db, {
      resourceType: 'function', resourceName: 'numbered', action: 'config_updated', actor: 'key-1', requestId: 'req-1',
      data: { before: { timeout: 3 }, after: { timeout: 9 } },
    });
    await appendChange(t.db, { resourceType: 'alias', resourceName: 'numbered:live', action: 'created', actor: 'key-1' });
    expect([a.seq, b.seq]).toEqual([1, 2]);
    expect(await latestChangeSeq(t.db, 'function', 'numbered')).toBe(2);
    expect(await latestChangeSeq(t.db, 'function', 'never-changed')).toBe(0);
    const history = await listChanges(t.db, { resourceType: 'function', resourceName: 'numbered' });
    expect(history.map((c) => [c.seq, c.action, c.actor, c.requestId])).toEqual([
      [2, 'config_updated', 'key-1', 'req-1'],
      [1, 'created', 'cli:test', null],
    ]);
    expect(history[0]!.data).toEqual({ before: { timeout: 3 }, after: { timeout: 9 } });
  });

  it('refuses a change made against a stale revision with RevisionConflict, writing nothing', async () => {
    await appendChange(t.db, { resourceType: 'function', resourceName: 'stale', action: 'created', actor: 'a', expectedSeq: 0 });
    await appendChange(t.db, { resourceType: 'function', resourceName: 'stale', action: 'config_updated', actor: 'a', expectedSeq: 1 });
    const stale = appendChange(t.db, { resourceType: 'function', resourceName: 'stale', action: 'config_updated', actor: 'b', expectedSeq: 1 });
    await expect(stale).rejects.toMatchObject({ code: 'RevisionConflict' });
    const ahead = appendChange(t.db, { resourceType: 'function', resourceName: 'stale', action: 'config_updated', actor: 'b', expectedSeq: 7 });
    await expect(ahead).rejects.toBeInstanceOf(LedgerError);
    const again = appendChange(t.db, { resourceType: 'function', resourceName: 'stale', action: 'created', actor: 'b', expectedSeq: 0 });
    await expect(again).rejects.toMatchObject({ code: 'RevisionConflict' });
    expect((await listChanges(t.db, { resourceName: 'stale' })).map((c) => c.actor)).toEqual(['a', 'a']);
  });

  it('concurrent writers of one resource: each change gets its own seq, none lost, no gap', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        appendChange(t.db, { resourceType: 'function', resourceName: 'raced', action: 'config_updated', actor: `w${i}` }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'RevisionConflict' });
    expect(ok).toBeGreaterThan(0);
    const seqs = (await listChanges(t.db, { resourceName: 'raced' })).map((c) => c.seq).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: ok }, (_, i) => i + 1));
  });

  it('refuses data PostgreSQL cannot store, alone and before writing', async () => {
    const bad = appendChange(t.db, { resourceType: 'function', resourceName: 'nul', action: 'created', actor: 'a', data: { description: 'a\u0000b' } });
    await expect(bad).rejects.toMatchObject({ code: 'InvalidParameter' });
    expect(await latestChangeSeq(t.db, 'function', 'nul')).toBe(0);
  });

  it('is immutable for the owner too, and auditors read it through audit.changes', async () => {
    await appendChange(t.db, { resourceType: 'api_key', resourceName: 'k1', action: 'revoked', actor: 'admin' });
    // the application role may not even try; the owner is stopped by the triggers
    await expect(sql`update ledger.changes set actor = 'someone else'`.execute(t.db)).rejects.toThrow(/permission denied/);
    const owner = t.open({ role: '', max: 1 }).pool;
    await expect(owner.query(`update ledger.changes set actor = 'someone else'`)).rejects.toThrow(/append-only/);
    await expect(owner.query('delete from ledger.changes')).rejects.toThrow(/append-only/);
    await expect(owner.query('truncate ledger.changes')).rejects.toThrow(/append-only/);
    const gap = sql`insert into ledger.changes (resource_type, resource_name, seq, action, actor) values ('api_key', 'k1', 5, 'x', 'a')`;
    await expect(gap.execute(t.db)).rejects.toThrow(/leaves a gap/);
    const auditor = t.open({ role: 'ledger_auditor', max: 1 }).pool;
    const { rows } = await auditor.query(`select resource_type, action, actor from audit.changes where resource_name = 'k1'`);
    expect(rows).toEqual([{ resource_type: 'api_key', action: 'revoked', actor: 'admin' }]);
    await expect(auditor.query('select * from ledger.changes')).rejects.toThrow(/permission denied/);
  });
});
