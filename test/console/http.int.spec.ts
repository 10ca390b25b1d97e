// The console over plain HTTP (the browser test drives the pages; this one checks the
// rules): GET / for browsers and for scripts, sign-in and its cookie, what each scope
// sees, actions refused without the scope or from another origin (nothing written), the
// live feed and the GraphQL proxy carrying the session's key, and LEDGER_AUTH=off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBrokerMapping, deleteBrokerMapping } from '../../db/brokers.ts';
import { revokeApiKey } from '../../db/keys.ts';
import { countEvents, eventTypes, moduleFn } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { finishAsync } from '../graphql/harness.ts';
import { bearer, createKeys, startSecureApi, type Keys, type SecureApi } from '../security/helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let keys: Keys;
let deadId: string;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  keys = await createKeys(t.db);
  await revokeApiKey(t.db, keys.revoked.id);
  api = await startSecureApi(t.db);
  const res = await fetch(`${api.url}/invoke/echo?async=true`, { method: 'POST', headers: bearer(keys.invoke), body: '{"n":1}' });
  deadId = ((await res.json()) as { invocationId: string }).invocationId;
  await finishAsync(t.db, deadId, 'dead_lettered');
});

afterAll(async () => {
  await api?.close();
});

const origin = () => api.url;

/** Signs in with the key; the cookie header to send back. */
async function signIn(token: string): Promise<string> {
  const res = await fetch(`${api.url}/console/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: origin() },
    body: new URLSearchParams({ key: token, next: '/console/dead-letters' }),
  });
  expect(res.status).toBe(303);
  const cookie = res.headers.get('set-cookie') ?? '';
  return cookie.split(';')[0] as string;
}

const page = (path: string, cookie?: string) => fetch(`${api.url}${path}`, { redirect: 'manual', headers: cookie ? { cookie } : {} });

describe('GET /', () => {
  it('sends a browser to the console', async () => {
    const res = await fetch(`${api.url}/`, { redirect: 'manual', headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/console/');
  });

  it('answers a script with an index of where things are, without a key', async () => {
    const res = await fetch(`${api.url}/`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: 'invoke-ledger', console: '/console/', graphql: '/graphql', health: '/healthz' });
  });
});

describe('signing in', () => {
  it('a page without a session goes to the sign-in page, which comes back to it', async () => {
    const res = await page('/console/invocations?status=FAILED');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/console/sign-in?next=${encodeURIComponent('/console/invocations?status=FAILED')}`);
    const form = await page('/console/sign-in');
    expect(form.status).toBe(200);
    expect(form.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(await form.text()).toMatch(/<input[^>]*type="password"[^>]*name="key"/);
  });

  it('keeps a valid key in an HttpOnly, SameSite=Strict session cookie for /console, never in a URL', async () => {
    const res = await fetch(`${api.url}/console/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: origin() },
      body: new URLSearchParams({ key: keys.all.token, next: '/console/dead-letters' }),
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/console/dead-letters');
    const cookie = res.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^il_console_key=/);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\/console/);
    // a session cookie: gone when the browser session ends
    expect(cookie).not.toMatch(/Max-Age|Expires/i);
    expect(res.headers.get('location')).not.toContain(keys.all.token);
  });

  it('refuses an unknown, revoked or empty key with the form again (401), and sets no cookie', async () => {
    for (const key of [keys.revoked.token, `il_${keys.all.id}_${'A'.repeat(43)}`, '']) {
      const res = await fetch(`${api.url}/console/sign-in`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: origin() },
        body: new URLSearchParams({ key }),
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(await res.text()).toMatch(/role="alert"/);
    }
  });

  it('refuses a sign-in form posted from another site', async () => {
    const res = await fetch(`${api.url}/console/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
      body: new URLSearchParams({ key: keys.all.token }),
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
  });

  it('a next= outside the console goes to the overview instead', async () => {
    for (const next of ['https://evil.example/', '//evil.example/x', '/graphql', '/console/../metrics']) {
      const res = await fetch(`${api.url}/console/sign-in`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: origin() },
        body: new URLSearchParams({ key: keys.audit.token, next }),
      });
      expect(res.headers.get('location')).toBe('/console/');
    }
  });

  it('a key revoked after sign-in ends the session at the next page', async () => {
    const { createApiKey } = await import('../../db/keys.ts');
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    const cookie = await signIn(key.token);
    expect((await page('/console/functions', cookie)).status).toBe(200);
    await revokeApiKey(t.db, key.id);
    const res = await page('/console/functions', cookie);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(/^\/console\/sign-in/);
  });

  it('signing out clears the cookie', async () => {
    const cookie = await signIn(keys.audit.token);
    const res = await fetch(`${api.url}/console/sign-out`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: origin() } });
    expect(res.status).toBe(303);
    expect(res.headers.get('set-cookie')).toMatch(/il_console_key=;.*Max-Age=0/);
  });
});

describe('what a key sees and may do', () => {
  it('every page renders for a key with audit, with a strict Content-Security-Policy and no caching', async () => {
    const cookie = await signIn(keys.audit.token);
    for (const path of ['/console/', '/console/functions', '/console/functions/echo', '/console/invocations', `/console/invocations/${deadId}`, '/console/dead-letters', '/console/queues', '/console/schedules', '/console/now', '/console/charts?range=week']) {
      const res = await page(path, cookie);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
      const html = await res.text();
      expect(html, path).not.toMatch(/Could not load/);
    }
  });

  it('the queues page, the function page and the overview show broker mappings with their state and lag, and never their credentials', async () => {
    const m = await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'rabbitmq', url: 'amqp://console-user:console-pass@127.0.0.1:5672', queue: 'console-orders', functionName: 'echo', enabled: false });
    const html = await (await page('/console/queues', await signIn(keys.audit.token))).text();
    expect(html).toMatch(/Broker mappings/);
    expect(html).toMatch(/RabbitMQ amqp:\/\/127\.0\.0\.1:5672 vhost \/ queue console-orders/);
    expect(html).toMatch(/Disabled/);
    expect(html).not.toMatch(/console-user|console-pass/);
    // on the function's page and in the overview's lag table too
    for (const path of ['/console/functions/echo', '/console/now']) {
      const other = await (await page(path, await signIn(keys.audit.token))).text();
      expect(other, path).toMatch(/RabbitMQ amqp:\/\/127\.0\.0\.1:5672 vhost \/ queue console-orders/);
      expect(other, path).not.toMatch(/console-user|console-pass/);
    }
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('a key with only invoke sees no ledger data and is told which scope it needs', async () => {
    const cookie = await signIn(keys.invoke.token);
    const html = await (await page('/console/dead-letters', cookie)).text();
    expect(html).toMatch(/the <strong>audit<\/strong> scope/);
    expect(html).not.toContain(deadId);
    expect(html).not.toMatch(/<nav aria-label="Console">/);
  });

  it('a key with only invoke gets no charts and no function page (their db reads check the audit scope too)', async () => {
    const cookie = await signIn(keys.invoke.token);
    const charts = await (await page('/console/charts?range=week', cookie)).text();
    expect(charts).toMatch(/Could not load the statistics: <span class="mono">Forbidden<\/span>/);
    expect(charts).not.toMatch(/data-chart=/);
    const fn = await (await page('/console/functions/echo', cookie)).text();
    expect(fn).toMatch(/the <strong>audit<\/strong> scope/);
    expect(fn).not.toMatch(/id="versions"/);
  });

  it('a function that does not exist is said not to', async () => {
    const html = await (await page('/console/functions/nobody-here', await signIn(keys.audit.token))).text();
    expect(html).toMatch(/No function is named <code>nobody-here<\/code>/);
  });

  it('a key with audit but not admin sees dead letters without the redrive controls', async () => {
    const cookie = await signIn(keys.audit.token);
    const list = await (await page('/console/dead-letters', cookie)).text();
    expect(list).toContain(deadId);
    expect(list).not.toMatch(/Redrive selected/);
    const one = await (await page(`/console/invocations/${deadId}`, cookie)).text();
    expect(one).not.toMatch(/>Redrive</);
  });

  it('a key with audit and admin gets them', async () => {
    const cookie = await signIn(keys.all.token);
    expect(await (await page('/console/dead-letters', cookie)).text()).toMatch(/Redrive selected/);
    expect(await (await page(`/console/invocations/${deadId}`, cookie)).text()).toMatch(/>Redrive</);
  });

  it('a redrive from another origin is refused and writes nothing', async () => {
    const cookie = await signIn(keys.all.token);
    const before = await countEvents(t.db);
    for (const headers of [{ cookie, origin: 'https://evil.example' }, { cookie }] as Record<string, string>[]) {
      const res = await fetch(`${api.url}/console/dead-letters/redrive`, {
        method: 'POST',
        redirect: 'manual',
        headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ id: deadId }),
      });
      expect(res.status).toBe(403);
    }
    expect(await countEvents(t.db)).toBe(before);
  });

  it('a redrive by a key without admin is refused by the API (the flash says so) and writes nothing', async () => {
    const cookie = await signIn(keys.audit.token);
    const before = await countEvents(t.db);
    const res = await fetch(`${api.url}/console/dead-letters/redrive`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, origin: origin(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ id: deadId, back: '/console/dead-letters' }),
    });
    expect(res.status).toBe(303);
    expect(await countEvents(t.db)).toBe(before);
    const flash = (res.headers.getSetCookie?.() ?? []).find((c) => c.startsWith('il_console_flash='))!.split(';')[0]!;
    const html = await (await page('/console/dead-letters', `${cookie}; ${flash}`)).text();
    expect(html).toMatch(/could not be redriven \(Forbidden/);
  });
});

describe('live feed and GraphQL through the session', () => {
  // no clock of its own: it reads until the dead letter arrives (the test timeout is the backstop)
  it('/console/live relays the invocation subscription over SSE with the session key', { timeout: 120_000 }, async () => {
    const cookie = await signIn(keys.audit.token);
    const controller = new AbortController();
    const res = await fetch(`${api.url}/console/live?invocationId=${deadId}`, { headers: { cookie }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    const decoder = new TextDecoder();
    // the invocation's earlier events come first on a subscription to one invocation
    while (!text.includes('"DEAD_LETTERED"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before the dead letter arrived:\n${text}`);
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
    expect(text).toMatch(/"invocationEvents":\{"invocationId":"[^"]+","functionName":"echo","seq":1,"type":"ACCEPTED"\}/);
    expect(text).toContain('"DEAD_LETTERED"');
  });

  it('/console/live without a session is 401', async () => {
    expect((await page('/console/live')).status).toBe(401);
  });

  it('/console/graphql runs operations with the session key and the key’s scopes', async () => {
    const post = (cookie: string, query: string) =>
      fetch(`${api.url}/console/graphql`, { method: 'POST', headers: { cookie, origin: origin(), 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
    const audit = await signIn(keys.audit.token);
    const ok = (await (await post(audit, '{ functions { name } }')).json()) as { data: unknown };
    expect(ok.data).toEqual({ functions: [{ name: 'echo' }] });
    const refused = (await (await post(audit, `mutation { redrive(invocationId: "${deadId}") { id } }`)).json()) as { errors: { extensions: { code: string } }[] };
    expect(refused.errors[0]?.extensions.code).toBe('Forbidden');
    expect(await eventTypes(t.db, deadId)).not.toContain('redriven');
    const foreign = await fetch(`${api.url}/console/graphql`, { method: 'POST', headers: { cookie: audit, origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{"query":"{ functions { name } }"}' });
    expect(foreign.status).toBe(403);
  });

  it('GraphiQL at /graphql opens with an Authorization header template when keys are on', async () => {
    const html = await (await fetch(`${api.url}/graphql`, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain('"headers":"{\\n  \\"Authorization\\": \\"Bearer \\u003cpaste a key');
    expect(html).toContain('"defaultEditorToolsVisibility":"headers"');
    const consoleGraphiql = await (await page('/console/graphiql', await signIn(keys.audit.token))).text();
    expect(consoleGraphiql).toContain('"endpoint":"/console/graphql"');
  });
});

describe('LEDGER_AUTH=off', () => {
  it('needs no sign-in and offers every action', async () => {
    const open = await startSecureApi(t.db, { auth: { enabled: false } });
    try {
      const res = await fetch(`${open.url}/console/dead-letters`, { redirect: 'manual' });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toMatch(/Authentication is off/);
      expect(html).toMatch(/Redrive selected/);
      expect((await fetch(`${open.url}/console/sign-in`, { redirect: 'manual' })).headers.get('location')).toBe('/console/');
    } finally {
      await open.close();
    }
  });
});
