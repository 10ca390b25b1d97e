// A realistic idempotent function: records an order in its own table, once, however many
// times it runs. Invoke it twice with the same Idempotency-Key and you get one invocation;
// let it run twice for one invocation (a retry) and you get one order:
//
//   curl -s -H "Authorization: Bearer $TOKEN" -H 'Idempotency-Key: order-7' localhost:3000/invoke/orders \
//     -d '{"customer":"ada","items":[{"sku":"tea","quantity":2,"priceCents":450}]}'
//
// Delivery is at least once: a worker may die after the insert but before `succeeded` is
// written, and the attempt runs again. Keying the row by the invocation id (the same for
// every attempt) and inserting with `on conflict do nothing` makes the second run a no-op
// that returns the row the first run wrote, so a retry never creates a second order.
import pg from 'pg';

// retries a second or two apart, so a failed attempt shows its retry right away
export const config = { timeoutMs: 10_000, maxRetries: 3, retryBaseDelayMs: 1_000, retryMaxDelayMs: 5_000 };

interface OrderItem {
  sku: string;
  quantity: number;
  priceCents: number;
}

interface OrderEvent {
  customer: string;
  items: OrderItem[];
}

interface OrderContext {
  invocationId: string;
  attempt: number;
  log: (...args: unknown[]) => void;
}

export class InvalidOrder extends Error {
  override name = 'InvalidOrder';
}

// One small pool per runtime thread, reused across attempts; it dies with the thread.
let pool: pg.Pool | undefined;
let schemaReady: Promise<void> | undefined;

function database(): pg.Pool {
  const connectionString =
    process.env['DATABASE_URL'] ?? `postgres://postgres:postgres@127.0.0.1:${process.env['EMBEDDED_PG_PORT'] ?? '54329'}/ledger`;
  pool ??= new pg.Pool({ connectionString, max: 2, idleTimeoutMillis: 10_000, allowExitOnIdle: true });
  return pool;
}

// What PostgreSQL answers the loser of two sessions creating the table at once, depending on
// which catalog row the race hits: the table (42P07), its row type (23505 or 42710).
const CREATED_CONCURRENTLY = new Set(['42P07', '23505', '42710']);

/** Creates the orders table unless it exists; another thread or process creating it at the same time is not an error. */
export async function createOrdersTable(db: pg.Pool): Promise<void> {
  try {
    await db.query(
      `create table if not exists app_orders (
         invocation_id uuid primary key,
         customer      text not null,
         items         jsonb not null,
         total_cents   bigint not null,
         first_attempt int not null,
         created_at    timestamptz not null default now()
       )`,
    );
  } catch (err) {
    if (!CREATED_CONCURRENTLY.has((err as { code?: string }).code ?? '')) throw err;
  }
}

function ensureSchema(db: pg.Pool): Promise<void> {
  schemaReady ??= createOrdersTable(db).catch((err: unknown) => {
    schemaReady = undefined;
    throw err;
  });
  return schemaReady;
}

function parseOrder(event: unknown): OrderEvent {
  const e = event as Partial<OrderEvent> | null;
  if (typeof e?.customer !== 'string' || e.customer === '') throw new InvalidOrder('customer must be a non-empty string');
  if (!Array.isArray(e.items) || e.items.length === 0) throw new InvalidOrder('items must be a non-empty array');
  for (const item of e.items) {
    const ok =
      typeof item?.sku === 'string' &&
      Number.isInteger(item.quantity) &&
      item.quantity > 0 &&
      Number.isInteger(item.priceCents) &&
      item.priceCents >= 0;
    if (!ok) throw new InvalidOrder('each item needs sku (string), quantity (integer > 0) and priceCents (integer >= 0)');
  }
  return { customer: e.customer, items: e.items };
}

export async function handler(event: unknown, context: OrderContext): Promise<Record<string, unknown>> {
  const order = parseOrder(event);
  const total = order.items.reduce((sum, i) => sum + i.quantity * i.priceCents, 0);
  const db = database();
  await ensureSchema(db);
  // Both branches read the same snapshot: either our insert's row or the one an earlier attempt wrote.
  const { rows } = await db.query(
    `with inserted as (
       insert into app_orders (invocation_id, customer, items, total_cents, first_attempt)
       values ($1, $2, $3, $4, $5)
       on conflict (invocation_id) do nothing
       returning *
     )
     select * from inserted
     union all
     select * from app_orders where invocation_id = $1
     limit 1`,
    [context.invocationId, order.customer, JSON.stringify(order.items), total, context.attempt],
  );
  // A concurrent attempt that inserted first but committed after our snapshot is invisible
  // to the statement above; a fresh statement sees it.
  const row = (rows[0] ?? (await db.query('select * from app_orders where invocation_id = $1', [context.invocationId])).rows[0]) as Record<
    string,
    unknown
  >;
  context.log(row['first_attempt'] === context.attempt ? 'order recorded' : 'order already recorded by an earlier attempt');
  return row;
}
