// ReplicaReads when DATABASE_READ_URL is not a usable standby: a server that is not in
// recovery, or one that does not answer, is never read; the primary serves, so nothing
// older than the caller's write comes back. (A real streaming replica, lagging and caught
// up: test/scale/replica.int.spec.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { freePort } from '../test/helpers/pg-admin.ts';
import type { DatabaseHandle } from './connection.ts';
import { openDatabase } from './connection.ts';
import { ReplicaReads, type ReadSource } from './replica.ts';

let t: TestDatabase;
let notStandby: DatabaseHandle;
let nobody: DatabaseHandle;

beforeAll(async () => {
  t = await createTestDatabase();
  notStandby = t.open({ max: 1 });
  nobody = openDatabase(`postgres://postgres@127.0.0.1:${await freePort()}/nothing`, { max: 1 });
});

afterAll(async () => {
  await nobody?.close();
});

describe('reads that could use a replica', () => {
  it('go to the primary when the replica is not a standby', async () => {
    const seen: [ReadSource, string][] = [];
    const reads = new ReplicaReads(t.db, notStandby.db, { onRead: (s, r) => seen.push([s, r]) });
    const { db, source } = await reads.fresh();
    expect(source).toBe('primary');
    expect(db).toBe(t.db);
    expect(seen).toEqual([['primary', 'not-a-standby']]);
  });

  it('go to the primary when the replica does not answer', async () => {
    const seen: [ReadSource, string][] = [];
    const reads = new ReplicaReads(t.db, nobody.db, { onRead: (s, r) => seen.push([s, r]) });
    expect((await reads.fresh()).source).toBe('primary');
    expect(seen).toEqual([['primary', 'replica-error']]);
    expect(reads.served).toEqual({ replica: 0, primary: 1 });
  });
});
