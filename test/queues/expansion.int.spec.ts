// A message's size is what PostgreSQL stores and serves, not what was sent: jsonb keeps
// numbers as numerics and prints them in full, so `1e308` (5 bytes) comes back as 309
// digits. A 252 KB message of such numbers was stored and read as 11.2 MB, and a batch
// capped at 6 MB of sent bytes moved 257 MB. Both limits now count the stored text.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { receiveBatch, type ReceivedBatch } from '../../apps/worker/event-sources/index.ts';
import { LedgerError } from '../../db/errors.ts';
import { createEventSourceMapping, deleteEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { listPollableMappings, type PollableMapping } from '../../db/queues/poller.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { MAX_BATCH_BYTES, MAX_MESSAGE_BYTES } from '../../db/queues/schemas.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startApi } from '../api/helpers.ts';
import { batchFunction } from './helpers.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await createQueue(t.db, { name: 'numbers', visibilityTimeoutSeconds: 60 });
});

const huge = (n: number) => Array.from({ length: n }, () => 1e308);

async function stored(): Promise<{ sent: number; served: number }[]> {
  const { rows } = await sql<{ sent: number; served: number }>`
    select body_bytes as sent, octet_length(body::text) as served from ledger.messages where queue_name = 'numbers' order by seq`.execute(t.db);
  return rows;
}

describe('a message of numbers that expand when stored', () => {
  it('is refused when what would be stored and served exceeds 256 KB, whatever was sent', async () => {
    const body = huge(36_000); // 252 KB as sent, 11.2 MB as jsonb prints it
    expect(Buffer.byteLength(JSON.stringify(body))).toBeLessThan(MAX_MESSAGE_BYTES);
    const e = await sendMessages(t.db, 'numbers', [{ body }]).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(LedgerError);
    expect((e as LedgerError).code).toBe('PayloadTooLarge');
    expect((e as LedgerError).message).toMatch(/message 0 is 11\d{6} bytes as stored/);
    expect(await stored()).toEqual([]);
  });

  it('is refused over HTTP with 413, and the queue stays empty', async () => {
    const api = await startApi(t.db);
    try {
      const res = await fetch(`${api.url}/queues/numbers/messages`, { method: 'POST', body: `[${Array(36_000).fill('1e308').join(',')}]` });
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ error: { code: 'PayloadTooLarge', message: expect.stringMatching(/bytes as stored/) } });
    } finally {
      await api.close();
    }
    expect(await stored()).toEqual([]);
  });

  it('records the stored size of what it accepts, and a batch stays within 6 MB of it', async () => {
    // each message: 5.6 KB as sent, about 248 KB stored; a send batch too is at most 6 MB stored
    const entries = Array.from({ length: 30 }, () => ({ body: huge(800) }));
    const e = await sendMessages(t.db, 'numbers', entries).catch((err: unknown) => err);
    expect((e as LedgerError).message).toMatch(/^a send batch is at most 6291456 bytes as stored; this one is 74\d{5}$/);
    const ids = [...(await sendMessages(t.db, 'numbers', entries.slice(0, 15))), ...(await sendMessages(t.db, 'numbers', entries.slice(15)))];
    const sizes = await stored();
    expect(sizes).toHaveLength(30);
    for (const s of sizes) expect(s.sent).toBe(s.served);
    const fn = await batchFunction(t.db, 'numbers', { timeoutMs: 60_000 });
    const m = await createEventSourceMapping(t.db, { queueName: 'numbers', functionName: 'numbers', batchSize: 100 });
    const mapping = (await listPollableMappings(t.db)).find((p) => p.id === m.id) as PollableMapping;
    const r = await receiveBatch(t.db, mapping, fn, { workerId: 'w', leaseGraceMs: 2_000 });
    expect(r.kind).toBe('batch');
    const batch = (r as { batch: ReceivedBatch }).batch;
    const { rows } = await sql<{ served: number }>`
      select octet_length((data -> 'payload')::text) as served from ledger.events where invocation_id = ${batch.state.id}::uuid and seq = 1`.execute(t.db);
    expect(batch.records.length).toBeLessThan(ids.length);
    expect(rows[0]!.served).toBeLessThan(MAX_BATCH_BYTES + batch.records.length * 300);
    await deleteEventSourceMapping(t.db, m.id);
    // the batch is still in flight: end it so the ledger verifies at teardown
    const { completeBatch } = await import('../../apps/worker/event-sources/index.ts');
    await completeBatch(t.db, batch, { ok: true, result: null, durationMs: 1, log: '' });
  });
});
