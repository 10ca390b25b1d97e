// The example functions/orders.ts against a real PostgreSQL: a retried attempt of the same
// invocation must not record a second order.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOrdersTable } from '../../functions/orders.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { createRuntimes, type Runtimes } from './index.ts';
import { moduleFunction } from './test-fixtures.ts';

let database: TestDatabase;
let runtimes: Runtimes;

beforeAll(async () => {
  database = await createTestDatabase({ verify: false });
  // Threads copy the environment when they start; the handler reads DATABASE_URL from it.
  process.env['DATABASE_URL'] = database.ownerUrl;
  runtimes = createRuntimes({ functionsDir: fileURLToPath(new URL('../../functions/', import.meta.url)), poolSize: 2 });
});

afterAll(async () => {
  await runtimes?.close();
  await database?.close();
});

const orders = moduleFunction('orders.ts', { name: 'orders', timeoutMs: 10_000 });

describe('functions/orders.ts', () => {
  it('records an order once however often the invocation is attempted', async () => {
    const invocationId = randomUUID();
    const event = { customer: 'ada', items: [{ sku: 'tea', quantity: 2, priceCents: 350 }] };
    const outcomes = await Promise.all([1, 2, 3].map((attempt) => runtimes.run(orders, { invocationId, attempt, payload: event })));
    for (const outcome of outcomes) {
      expect(outcome, JSON.stringify(outcome)).toMatchObject({ ok: true, result: { invocation_id: invocationId, customer: 'ada', total_cents: '700' } });
    }
    const firstAttempts = new Set(outcomes.map((o) => (o.ok ? (o.result as { first_attempt: number }).first_attempt : 0)));
    expect(firstAttempts.size).toBe(1);

    const client = new pg.Client({ connectionString: database.ownerUrl });
    await client.connect();
    try {
      const { rows } = await client.query('select count(*)::int as n from app_orders where invocation_id = $1', [invocationId]);
      expect(rows[0]).toEqual({ n: 1 });
    } finally {
      await client.end();
    }
  });

  it('creates its table from many connections at once without an error, whichever catalog row the race hits', async () => {
    // a fresh schema per round, six sessions creating the table in it at once: the losers
    // get 42P07, 23505 or (about 2 % of them) 42710, depending on the interleaving
    const admin = new pg.Client({ connectionString: database.ownerUrl });
    await admin.connect();
    try {
      for (let round = 0; round < 40; round++) {
        const schema = `orders_race_${round}`;
        await admin.query(`create schema ${schema}`);
        const pools = Array.from({ length: 6 }, () => new pg.Pool({ connectionString: database.ownerUrl, max: 1, options: `-c search_path=${schema}` }));
        try {
          await Promise.all(pools.map((p) => createOrdersTable(p)));
        } finally {
          await Promise.all(pools.map((p) => p.end()));
        }
        const { rows } = await admin.query(`select count(*)::int as n from pg_tables where schemaname = $1 and tablename = 'app_orders'`, [schema]);
        expect(rows[0]).toEqual({ n: 1 });
      }
    } finally {
      await admin.end();
    }
  });

  it('rejects a malformed order as a function error', async () => {
    const outcome = await runtimes.run(orders, { invocationId: randomUUID(), attempt: 1, payload: { customer: '' } });
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'InvalidOrder' } });
  });
});
