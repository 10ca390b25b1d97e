// What the console's browser tests share: a watch on everything a page does wrong, a
// wait with a deadline, and a GraphQL call to the server under test.
import type { Page } from 'playwright-core';

export interface Problems {
  /** console errors and uncaught exceptions */
  errors: string[];
  /** failed requests and answers of 400 and above */
  failed: string[];
  /** requests to anywhere but the server under test (the console loads nothing from outside) */
  foreign: string[];
}

export function watch(page: Page, base: string): Problems {
  const p: Problems = { errors: [], failed: [], foreign: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') p.errors.push(`${page.url()}: console: ${m.text()}`);
  });
  page.on('pageerror', (e) => p.errors.push(`${page.url()}: ${e.message}`));
  page.on('requestfailed', (r) => {
    // the live stream is cut by the browser when the page is left (net::ERR_ABORTED): not a failure
    if (r.url().includes('/console/live') && r.failure()?.errorText === 'net::ERR_ABORTED') return;
    p.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) p.failed.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
  });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) p.foreign.push(url);
  });
  return p;
}

export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface GraphQLAnswer<T> {
  data: T | null;
  errors?: { message: string }[];
}

/** One GraphQL request, with the key's bearer token when there is one. */
export async function graphql<T>(base: string, token: string | undefined, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLAnswer<T>> {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GraphQLAnswer<T>;
}

/** The same, for a request that must succeed: its data, or the errors thrown. */
export async function graphqlData<T>(base: string, token: string | undefined, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const body = await graphql<T>(base, token, query, variables);
  if (body.errors || body.data === null) throw new Error(JSON.stringify(body.errors));
  return body.data;
}
