// Cursor pagination, filters, the constant query count of a page with its events, and
// the query limits (cost, depth, aliases, page size, introspection switch).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, finishAsync, countQueries, mount, post, type Harness } from './harness.ts';

let h: Harness;
/** ids of the `page` function's invocations, newest first */
let pageIds: string[] = [];
let startedAt: Date;
let middle: Date;

beforeAll(async () => {
  h = await createHarness();
  await h.gql(`mutation { createFunction(input: { name: "page", runtime: MODULE, handler: "echo.ts", isolation: INLINE }) { name } }`);
  // the boundaries come from the database's clock, the one accepted_at is read from
  const dbMs = async (sqlText: string) => new Date(Number((await h.t.pool.query<{ ms: string }>(`select ${sqlText} as ms`)).rows[0]?.ms));
  startedAt = await dbMs(`(extract(epoch from date_trunc('milliseconds', clock_timestamp())) * 1000 - 1)::bigint`);
  // 25 async invocations, concurrently so that several share one group-committed accepted_at
  const first = await Promise.all(
    Array.from({ length: 12 }, (_, i) => h.gql(`mutation { invokeAsync(functionName: "page", payload: ${i}) { id } }`)),
  );
  // middle: the millisecond after the first batch's last accept; the second batch is sent
  // once the database's clock has passed it
  middle = await dbMs(`(select (extract(epoch from date_trunc('milliseconds', max(accepted_at))) * 1000 + 1)::bigint from ledger.invocations where function_name = 'page')`);
  while ((await dbMs(`(extract(epoch from clock_timestamp()) * 1000)::bigint`)).getTime() <= middle.getTime()) await new Promise((r) => setImmediate(r));
  const second = await Promise.all(
    Array.from({ length: 13 }, (_, i) => h.gql(`mutation { invokeAsync(functionName: "page", payload: ${12 + i}) { id } }`)),
  );
  const ids = [...first, ...second].map((r) => r.data?.invokeAsync.id as string);
  // two of them end; the rest stay queued (a valid state for the teardown verification)
  await finishAsync(h.t.db, ids[0] as string, 'succeeded');
  await finishAsync(h.t.db, ids[1] as string, 'dead_lettered');
  await finishAsync(h.t.db, ids[2] as string, 'retried');
  const { rows } = await h.t.pool.query<{ id: string }>(
    `select id from ledger.invocations where function_name = 'page' order by accepted_at desc, id desc`,
  );
  pageIds = rows.map((r) => r.id);
  expect(pageIds).toHaveLength(25);
});
afterAll(async () => {
  await h?.close();
});

interface Page {
  edges: { cursor: string; node: { id: string } }[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  totalCount: number;
}

async function page(args: string): Promise<Page> {
  const r = await h.gql<{ invocations: Page }>(`{ invocations(${args}) {
    edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }`);
  expect(r.errors).toBeUndefined();
  return r.data?.invocations as Page;
}

describe('cursor pagination', () => {
  it('walks every page with first/after, newest first, each invocation once', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    const pages: Page[] = [];
    for (;;) {
      const p: Page = await page(`filter: { functionName: "page" }, first: 10${after ? `, after: "${after}"` : ''}`);
      pages.push(p);
      seen.push(...p.edges.map((e) => e.node.id));
      if (!p.pageInfo.hasNextPage) break;
      after = p.pageInfo.endCursor;
    }
    expect(pages.map((p) => p.edges.length)).toEqual([10, 10, 5]);
    expect(seen).toEqual(pageIds);
    expect(pages.map((p) => p.pageInfo.hasPreviousPage)).toEqual([false, true, true]);
    expect(pages.every((p) => p.totalCount === 25)).toBe(true);
    const last = pages[2] as Page;
    expect(last.pageInfo.hasNextPage).toBe(false);
    expect(last.pageInfo.startCursor).toBe(last.edges[0]?.cursor);
    expect(last.pageInfo.endCursor).toBe(last.edges[4]?.cursor);
  });

  it('a page that ends exactly at the last row says there is no next page', async () => {
    const p = await page(`filter: { functionName: "page" }, first: 25`);
    expect(p.edges).toHaveLength(25);
    expect(p.pageInfo.hasNextPage).toBe(false);
  });

  it('after the last row, and first: 0, are empty pages', async () => {
    const all = await page(`filter: { functionName: "page" }, first: 25`);
    const after = await page(`filter: { functionName: "page" }, first: 10, after: "${all.pageInfo.endCursor}"`);
    expect(after.edges).toEqual([]);
    expect(after.pageInfo).toEqual({ hasNextPage: false, hasPreviousPage: true, startCursor: null, endCursor: null });
    const zero = await page(`filter: { functionName: "page" }, first: 0`);
    expect(zero.edges).toEqual([]);
    expect(zero.pageInfo.hasNextPage).toBe(false);
    const nothing = await page(`filter: { functionName: "no-such-function" }`);
    expect(nothing).toEqual({
      edges: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null },
      totalCount: 0,
    });
  });

  it('an edge cursor continues right after that edge', async () => {
    const p = await page(`filter: { functionName: "page" }, first: 10`);
    const next = await page(`filter: { functionName: "page" }, first: 3, after: "${p.edges[6]?.cursor}"`);
    expect(next.edges.map((e) => e.node.id)).toEqual(pageIds.slice(7, 10));
  });

  it('bad cursors and page sizes are InvalidParameter', async () => {
    for (const after of ['garbage', Buffer.from('["x","y"]').toString('base64url'), '']) {
      const r = await h.gql(`{ invocations(first: 5, after: "${after}") { edges { cursor } } }`);
      if (after === '') continue; // empty after = from the start
      expect(r.errors?.[0]?.extensions?.code, after).toBe('InvalidParameter');
      expect(r.errors?.[0]?.message).toMatch(/cursor/);
    }
    for (const first of [101, -1]) {
      const r = await h.gql(`{ invocations(first: ${first}) { edges { cursor } } }`);
      expect(r.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
      expect(r.errors?.[0]?.message).toMatch(/first must be between 0 and 100/);
    }
    const dl = await h.gql(`{ deadLetters(first: 1000) { edges { cursor } } }`);
    expect(dl.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
  });

  it('defaults to 20 per page', async () => {
    const p = await page(`filter: { functionName: "page" }`);
    expect(p.edges).toHaveLength(20);
    expect(p.pageInfo.hasNextPage).toBe(true);
  });

  it('deadLetters pages the same way', async () => {
    const r = await h.gql(`{ deadLetters(functionName: "page", first: 1) { edges { node { id status } } pageInfo { hasNextPage } totalCount } }`);
    expect(r.data?.deadLetters).toEqual({ edges: [{ node: { id: expect.any(String), status: 'DEAD_LETTERED' } }], pageInfo: { hasNextPage: false }, totalCount: 1 });
  });
});

describe('filters', () => {
  const ids = async (filter: string) => {
    const r = await h.gql(`{ invocations(filter: ${filter}, first: 100) { edges { node { id status type } } totalCount } }`);
    expect(r.errors).toBeUndefined();
    return r.data?.invocations as { edges: { node: { id: string; status: string; type: string } }[]; totalCount: number };
  };

  it('by status, type, error type and function', async () => {
    expect((await ids(`{ functionName: "page", status: SUCCEEDED }`)).totalCount).toBe(1);
    expect((await ids(`{ functionName: "page", status: DEAD_LETTERED }`)).totalCount).toBe(1);
    expect((await ids(`{ functionName: "page", status: RETRY_SCHEDULED }`)).totalCount).toBe(1);
    expect((await ids(`{ functionName: "page", status: QUEUED }`)).totalCount).toBe(22);
    expect((await ids(`{ functionName: "page", errorType: "Boom" }`)).totalCount).toBe(2);
    expect((await ids(`{ functionName: "page", type: SYNC }`)).totalCount).toBe(0);
    expect((await ids(`{ functionName: "page", type: ASYNC }`)).totalCount).toBe(25);
    await h.gql(`mutation { invoke(functionName: "echo") { id } }`);
    const sync = await ids(`{ type: SYNC }`);
    expect(sync.edges.every((e) => e.node.type === 'SYNC')).toBe(true);
    expect(sync.totalCount).toBeGreaterThan(0);
    const failedEcho = await ids(`{ functionName: "echo", status: FAILED }`);
    expect(failedEcho.totalCount).toBe(0);
  });

  it('by accepted time range', async () => {
    const before = await ids(`{ functionName: "page", acceptedAfter: "${startedAt.toISOString()}", acceptedBefore: "${middle.toISOString()}" }`);
    const after = await ids(`{ functionName: "page", acceptedAfter: "${middle.toISOString()}" }`);
    expect(before.totalCount).toBe(12);
    expect(after.totalCount).toBe(13);
    expect([...after.edges, ...before.edges].map((e) => e.node.id)).toEqual(pageIds);
    const none = await ids(`{ functionName: "page", acceptedBefore: "${startedAt.toISOString()}" }`);
    expect(none.totalCount).toBe(0);
  });
});

describe('query count', () => {
  it('a page of 100 invocations with their events and payloads costs as many queries as a page of 2', async () => {
    // a fresh handle on the same database, so that every client it checks out is counted
    const handle = h.t.open({ max: 4 });
    const counter = countQueries(handle.pool);
    const app = mount({ ...h.deps, db: handle.db });
    for (let chunk = 0; chunk < 5; chunk++) {
      await Promise.all(Array.from({ length: 15 }, (_, i) => h.gql(`mutation { invoke(functionName: "echo", payload: ${chunk * 15 + i}) { id } }`)));
    }
    const q = (n: number) => `{ invocations(first: ${n}) {
      edges { node { id status payload result error { errorType } events { position seq type attempt occurredAt data } } }
      pageInfo { hasNextPage endCursor } } }`;
    counter.reset();
    const small = await post<{ invocations: { edges: unknown[] } }>(app, q(2));
    const smallCount = counter.count();
    counter.reset();
    const big = await post<{ invocations: { edges: { node: { events: unknown[] } }[] } }>(app, q(100));
    const bigCount = counter.count();
    expect(small.errors).toBeUndefined();
    expect(big.errors).toBeUndefined();
    expect(big.data?.invocations.edges).toHaveLength(100);
    expect(big.data?.invocations.edges.every((e) => e.node.events.length >= 1)).toBe(true);
    // one read for the page, one batched `= any($1)` read for all the events
    expect(bigCount).toBe(2);
    expect(smallCount).toBe(bigCount);
    expect(counter.texts.some((t) => /invocation_id = any/.test(t))).toBe(true);
  });
});

describe('limits', () => {
  it('a query of 2,000 aliases is refused by the cost limit before anything runs', async () => {
    const aliases = Array.from({ length: 2000 }, (_, i) => `a${i}: function(name: "echo") { name }`).join('\n');
    const res = await h.app.request('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ ${aliases} }` }),
    });
    const body = (await res.json()) as { data?: unknown; errors: { message: string; extensions?: { code?: string } }[] };
    expect(body.data).toBeUndefined();
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]?.message).toMatch(/Query Cost limit of 5000 exceeded, found 6000/);
    expect(body.errors[0]?.extensions?.code).toBe('QueryTooComplex');
  });

  it('aliases of cheap fields are refused by the alias limit', async () => {
    // 200 × cost 3 stays under the cost limit; the alias limit is what refuses it
    const aliases = Array.from({ length: 200 }, (_, i) => `a${i}: function(name: "echo") { name }`).join(' ');
    const r = await h.gql(`{ ${aliases} }`);
    expect(r.errors?.[0]?.message).toMatch(/Aliases limit of 100 exceeded/);
    expect(r.errors?.[0]?.extensions?.code).toBe('TooManyAliases');
  });

  it('deep queries are refused by the depth limit', async () => {
    // the schema has no cycles, so __type (which armor does not exempt, unlike __schema) is the way down
    let nested = 'name';
    for (let i = 0; i < 12; i++) nested = `ofType { ${nested} }`;
    const r = await h.gql(`{ __type(name: "Query") { fields { type { ${nested} } } } }`);
    expect(r.errors?.[0]?.message).toMatch(/Query depth limit of 10 exceeded/);
    expect(r.errors?.[0]?.extensions?.code).toBe('QueryTooDeep');
    const deepest = await h.gql(`{ invocations { edges { node { events { data } } } } }`);
    expect(deepest.errors).toBeUndefined();
    const schema = await h.gql(`{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }`);
    expect(schema.errors).toBeUndefined(); // what GraphiQL asks for is exempt
  });

  it('introspection can be switched off', async () => {
    const app = mount({ ...h.deps, graphqlIntrospection: false });
    const off = await post(app, `{ __schema { queryType { name } } }`);
    expect(off.errors?.[0]?.message).toMatch(/introspection/i);
    const stillWorks = await post<{ functions: unknown[] }>(app, `{ functions { name } }`);
    expect(stillWorks.errors).toBeUndefined();
    const on = await h.gql(`{ __schema { queryType { name } } }`);
    expect(on.data?.__schema.queryType.name).toBe('Query');
  });
});
