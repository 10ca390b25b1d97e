// A transaction PostgreSQL rolls back because of a concurrent one (here a real deadlock)
// wrote nothing and may simply be retried: clients get 503 with Retry-After, not a 500.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { isTransientConflict } from '../../db/errors.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { toGraphQLError } from './graphql/errors.ts';
import { httpErrorOf } from './errors.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

/** Two sessions lock two rows in opposite orders; PostgreSQL aborts one of them. */
async function realDeadlock(): Promise<unknown> {
  const a = new pg.Client({ connectionString: t.ownerUrl });
  const b = new pg.Client({ connectionString: t.ownerUrl });
  await Promise.all([a.connect(), b.connect()]);
  try {
    await a.query('create table if not exists deadlock_demo (id int primary key); insert into deadlock_demo values (1), (2) on conflict do nothing');
    await Promise.all([a.query('begin'), b.query('begin')]);
    await a.query('update deadlock_demo set id = id where id = 1');
    await b.query('update deadlock_demo set id = id where id = 2');
    const results = await Promise.allSettled([
      a.query('update deadlock_demo set id = id where id = 2'),
      b.query('update deadlock_demo set id = id where id = 1'),
    ]);
    await Promise.all([a.query('rollback'), b.query('rollback')]);
    const failed = results.find((r) => r.status === 'rejected');
    return failed?.status === 'rejected' ? failed.reason : null;
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

describe('a deadlock victim', () => {
  it('is retryable: 503 ServiceException with Retry-After over HTTP, ServiceUnavailable in GraphQL', async () => {
    const e = await realDeadlock();
    expect((e as { code?: string }).code).toBe('40P01');
    expect(isTransientConflict(e)).toBe(true);
    expect(httpErrorOf(e)).toMatchObject({ status: 503, code: 'ServiceUnavailable', awsType: 'ServiceException', headers: { 'Retry-After': '1' } });
    expect(toGraphQLError(e)?.extensions.code).toBe('ServiceUnavailable');
    // anything else unexpected stays a masked 500
    expect(httpErrorOf(new Error('boom'))).toMatchObject({ status: 500, code: 'InternalError' });
  });
});
