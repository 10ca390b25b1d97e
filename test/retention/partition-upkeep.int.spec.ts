// Partition upkeep falling behind (docs/retention.md#partition-upkeep): verify says so when
// next month, or this month, has no partition yet, and the months-ahead count that /metrics
// reports drops below 1; premaking again clears it. The clock is a parameter: the ledger's
// partitions stay as they are, "now" moves to the months they run out.
import { beforeAll, describe, expect, it } from 'vitest';
import { partitionMonthsAhead, partitionProblems, premakeEventPartitions } from '../../db/retention/partitions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
const monthStart = (k: number, now = new Date()) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1, 12));

beforeAll(async () => {
  t = await createTestDatabase();
  await premakeEventPartitions(t.db, 3);
});

describe('partition upkeep behind', () => {
  it('is clean while next month has a partition', async () => {
    expect(await partitionMonthsAhead(t.db)).toBeGreaterThanOrEqual(3);
    expect(await partitionProblems(t.db)).toEqual([]);
  });

  it('names a missing partition for next month, then for the current month, and the months-ahead count /metrics reports is 0, then -1', async () => {
    const ahead = await partitionMonthsAhead(t.db);
    const lastMonth = monthStart(ahead);
    expect(await partitionMonthsAhead(t.db, lastMonth)).toBe(0);
    expect(await partitionProblems(t.db, lastMonth)).toEqual([
      'no partition for next month yet: premake is behind (run `invoke-ledger archive partitions`)',
    ]);
    const beyond = monthStart(ahead + 1);
    expect(await partitionMonthsAhead(t.db, beyond)).toBe(-1);
    expect((await partitionProblems(t.db, beyond))[0]).toMatch(/^no partition for the current month: new invocations land in events_default/);
  });

  it('premaking further ahead clears it', async () => {
    const ahead = await partitionMonthsAhead(t.db);
    const made = await premakeEventPartitions(t.db, ahead + 2);
    expect(made.length).toBeGreaterThanOrEqual(2);
    expect(await partitionProblems(t.db, monthStart(ahead))).toEqual([]);
  });
});
