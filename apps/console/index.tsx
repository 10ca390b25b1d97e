// The web console at /console: server-rendered pages (Hono JSX) over the public GraphQL
// API, with htmx and uPlot served from node_modules. See ./README.md for the map of files
// and where later capabilities plug in.
import type { Context } from 'hono';
import { Hono } from 'hono';
import type { JSX } from 'hono/jsx/jsx-runtime';
import type { Logger } from 'pino';
import { UUID } from '../../db/invocations.ts';
import type { Db } from '../../db/schema.ts';
import { AuthenticationError, Authenticator, MAX_SIGNED_BODY_BYTES, type AuthOptions } from '../api/auth/index.ts';
import { readBodyLimited } from '../api/body.ts';
import { DEFAULT_QUERY, renderOfflineGraphiQL } from '../api/graphql/graphiql.ts';
import { ApiError, graphqlClient, graphqlHeaders, type ApiFetch } from './api.ts';
import { assetBase, assetRoutes, importMap } from './assets.ts';
import { setFlash, takeFlash, type PageContext } from './page.ts';
import { consoleReads } from './reads.ts';
import { deadLettersPage, redriveInvocations } from './pages/dead-letters.tsx';
import { functionPage, functionsPage } from './pages/functions.tsx';
import { invocationPage, invocationsPage, invocationValue } from './pages/invocations.tsx';
import { chartsFragment, nowPanel, overviewPage } from './pages/overview.tsx';
import { proofPage } from './pages/proof.tsx';
import { queuesPage } from './pages/queues.tsx';
import { schedulesPage } from './pages/schedules.tsx';
import { SignInPage } from './pages/sign-in.tsx';
import { CONSOLE_PATH, endSession, keepSession, safeNext, sameOrigin, sessionOf, signIn, type Session } from './session.ts';
import { Layout } from './views/ui.tsx';

export interface ConsoleOptions {
  db: Db;
  logger: Logger;
  /** API keys; absent or disabled: no sign-in, every scope (LEDGER_AUTH=off) */
  auth?: AuthOptions;
  /** the whole app: the console's GraphQL requests pass the same gate as anyone's */
  api: ApiFetch;
  /** TRACE_URL_TEMPLATE: `{traceId}` is replaced by an invocation's trace id */
  traceUrlTemplate?: string;
}

type Env = { Variables: { session: Session } };

/**
 * Pages and fragments: scripts and styles from this origin only; no inline script or
 * style, no frames, forms post here only.
 */
const CSP = () => [
  "default-src 'none'",
  `script-src 'self' ${importMap().cspHash}`,
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function pageHeaders(c: Context, csp = true): void {
  if (csp) c.header('Content-Security-Policy', CSP());
  c.header('X-Frame-Options', 'DENY');
  c.header('X-Content-Type-Options', 'nosniff');
  c.header('Referrer-Policy', 'same-origin');
  // pages show ledger data: not kept by the browser or a proxy after sign-out
  c.header('Cache-Control', 'no-store');
}

async function render(c: Context, node: JSX.Element | Promise<JSX.Element>, status: 200 | 401 | 403 | 404 = 200): Promise<Response> {
  const html = await (await node).toString();
  pageHeaders(c);
  return c.html(`<!doctype html>\n${html}`, status);
}

const liveQuery = /* GraphQL */ `
  subscription ConsoleLive($invocationId: ID, $functionName: String) {
    invocationEvents(invocationId: $invocationId, functionName: $functionName) { invocationId functionName seq type }
  }
`;

export function consoleRoutes(o: ConsoleOptions): Hono<Env> {
  const authenticator = o.auth?.enabled ? new Authenticator(o.db, o.auth, o.logger) : null;
  const app = new Hono<Env>();
  const assets = assetBase();
  const reads = consoleReads(o.db);
  const template = o.traceUrlTemplate;
  const traceUrl = template ? (traceId: string) => template.replaceAll('{traceId}', encodeURIComponent(traceId)) : null;

  const P = CONSOLE_PATH;
  app.route('/', assetRoutes());
  app.get(P, (c) => c.redirect(`${P}/`, 301));

  // ---------------------------------------------------------------- sign-in
  app.get(`${P}/sign-in`, (c) => {
    if (!authenticator) return c.redirect(`${CONSOLE_PATH}/`, 303);
    return render(c, <SignInPage assets={assets} next={safeNext(c.req.query('next'))} error={null} />);
  });
  app.post(`${P}/sign-in`, async (c) => {
    if (!authenticator) return c.redirect(`${CONSOLE_PATH}/`, 303);
    if (!sameOrigin(c)) return c.text('This form must be sent from the console’s own page.', 403);
    const form = await c.req.parseBody();
    const key = typeof form.key === 'string' ? form.key : '';
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined);
    try {
      const session = await signIn(authenticator, key);
      keepSession(c, session.token as string);
      return c.redirect(next, 303);
    } catch (e) {
      if (!(e instanceof AuthenticationError)) throw e;
      const why = key.trim() === '' ? 'Enter an API key.' : 'That key is not valid: it is unknown, revoked or mistyped.';
      return render(c, <SignInPage assets={assets} next={next} error={why} />, 401);
    }
  });
  app.post(`${P}/sign-out`, (c) => {
    if (!sameOrigin(c)) return c.text('This form must be sent from the console’s own page.', 403);
    endSession(c);
    return c.redirect(authenticator ? `${CONSOLE_PATH}/sign-in` : `${CONSOLE_PATH}/`, 303);
  });

  // ---------------------------------------------------------------- everything else needs a session
  app.use(`${P}/*`, async (c, next) => {
    const session = await sessionOf(c, authenticator);
    if (!session) {
      endSession(c);
      if (c.req.method === 'GET' && !c.req.header('hx-request') && !c.req.path.startsWith(`${CONSOLE_PATH}/live`)) {
        const back = `${c.req.path}${new URL(c.req.url).search}`;
        return c.redirect(`${CONSOLE_PATH}/sign-in?next=${encodeURIComponent(back)}`, 303);
      }
      // htmx follows HX-Redirect; anything else gets the status
      c.header('HX-Redirect', `${CONSOLE_PATH}/sign-in`);
      return c.text('Sign in to the console again.', 401);
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !sameOrigin(c)) {
      return c.text('This request must come from the console’s own pages (Origin does not match).', 403);
    }
    c.set('session', session);
    await next();
  });

  const ctxOf = (c: Context<Env>): PageContext => ({
    session: c.get('session'),
    gql: graphqlClient(o.api, c.get('session'), c.req.url),
    reads,
    url: new URL(c.req.url),
    flash: takeFlash(c),
    assets,
    ...(traceUrl ? { traceUrl } : {}),
  });

  // ---------------------------------------------------------------- pages
  app.get(`${P}/`, (c) => render(c, overviewPage(ctxOf(c))));
  app.get(`${P}/now`, async (c) => {
    pageHeaders(c);
    return c.html(await (await nowPanel(ctxOf(c))).toString());
  });
  app.get(`${P}/charts`, async (c) => {
    pageHeaders(c);
    return c.html(await (await chartsFragment(ctxOf(c))).toString());
  });
  app.get(`${P}/functions`, (c) => render(c, functionsPage(ctxOf(c))));
  app.get(`${P}/functions/:name`, (c) => render(c, functionPage(ctxOf(c), c.req.param('name'))));
  app.get(`${P}/invocations`, (c) => {
    const id = c.req.query('id')?.trim();
    if (id && UUID.test(id)) return c.redirect(`${CONSOLE_PATH}/invocations/${id.toLowerCase()}`, 303);
    return render(c, invocationsPage(ctxOf(c)));
  });
  app.get(`${P}/invocations/:id`, (c) => render(c, invocationPage(ctxOf(c), c.req.param('id'))));
  app.get(`${P}/invocations/:id/proof`, (c) => render(c, proofPage(ctxOf(c), c.req.param('id'))));
  app.get(`${P}/invocations/:id/:which{payload\\.json|result\\.json}`, async (c) => {
    const which = c.req.param('which') === 'payload.json' ? 'payload' : 'result';
    const id = c.req.param('id');
    const value = await invocationValue(ctxOf(c), id, which);
    if (value === undefined) return c.notFound();
    pageHeaders(c);
    c.header('Content-Disposition', `attachment; filename="${id}-${which}.json"`);
    return c.json(value);
  });
  app.get(`${P}/dead-letters`, (c) => render(c, deadLettersPage(ctxOf(c))));
  app.get(`${P}/queues`, (c) => render(c, queuesPage(ctxOf(c))));
  app.get(`${P}/schedules`, (c) => render(c, schedulesPage(ctxOf(c))));

  // ---------------------------------------------------------------- actions (POST → redirect → GET)
  const act = async (c: Context<Env>, back: string, run: (ctx: PageContext) => Promise<void>) => {
    const ctx = ctxOf(c);
    try {
      await run(ctx);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      setFlash(c, { kind: 'error', text: `${e.code}: ${e.message}` });
    }
    return c.redirect(back, 303);
  };

  const redriveAndSay = async (c: Context<Env>, ctx: PageContext, ids: string[]) => {
    const { redriven, refused } = await redriveInvocations(ctx, ids);
    if (refused.length > 0) {
      const first = refused[0] as { id: string; message: string };
      setFlash(c, {
        kind: 'error',
        text: `Redrove ${redriven.length}; ${refused.length} could not be redriven (${first.message}${refused.length > 1 ? ', …' : ''}).`,
        invocationIds: [...redriven, ...refused.map((r) => r.id)],
      });
    } else {
      setFlash(c, { kind: 'ok', text: `Redrove ${redriven.length} invocation${redriven.length === 1 ? '' : 's'}; each is queued again.`, invocationIds: redriven });
    }
  };

  app.post(`${P}/invocations/:id/redrive`, (c) => {
    const id = c.req.param('id');
    return act(c, `${CONSOLE_PATH}/invocations/${encodeURIComponent(id)}`, (ctx) => redriveAndSay(c, ctx, [id]));
  });
  app.post(`${P}/invocations/:id/cancel`, (c) => {
    const id = c.req.param('id');
    return act(c, `${CONSOLE_PATH}/invocations/${encodeURIComponent(id)}`, async (ctx) => {
      await ctx.gql(`mutation ConsoleCancel($id: ID!) { cancelInvocation(id: $id) { id } }`, { id });
      setFlash(c, { kind: 'ok', text: 'Cancelled.' });
    });
  });
  app.post(`${P}/dead-letters/redrive`, async (c) => {
    const form = await c.req.parseBody({ all: true });
    const ids = ([] as unknown[]).concat(form.id ?? []).filter((v): v is string => typeof v === 'string');
    const back = safeNext(typeof form.back === 'string' ? form.back : `${CONSOLE_PATH}/dead-letters`);
    if (ids.length === 0) {
      setFlash(c, { kind: 'error', text: 'Select the invocations to redrive first.' });
      return c.redirect(back, 303);
    }
    return act(c, back, (ctx) => redriveAndSay(c, ctx, ids));
  });
  app.post(`${P}/mappings/:id/enabled`, async (c) => {
    const form = await c.req.parseBody();
    const enabled = form.enabled === 'true';
    return act(c, `${CONSOLE_PATH}/queues`, async (ctx) => {
      const r = await ctx.gql<{ updateEventSourceMapping: { queueName: string; functionName: string } }>(
        `mutation ConsoleMapping($id: ID!, $enabled: Boolean!) { updateEventSourceMapping(id: $id, input: { enabled: $enabled }) { queueName functionName } }`,
        { id: c.req.param('id'), enabled },
      );
      const m = r.updateEventSourceMapping;
      setFlash(c, { kind: 'ok', text: `The mapping from ${m.queueName} to ${m.functionName} is ${enabled ? 'enabled' : 'disabled'}.` });
    });
  });
  app.post(`${P}/schedules/state`, async (c) => {
    const form = await c.req.parseBody();
    const text = (k: string) => (typeof form[k] === 'string' ? form[k] : '');
    const state = text('state') === 'ENABLED' ? 'ENABLED' : 'DISABLED';
    return act(c, `${CONSOLE_PATH}/schedules`, async (ctx) => {
      const r = await ctx.gql<{ setScheduleState: { groupName: string; name: string; state: string } }>(
        `mutation ConsoleScheduleState($name: String!, $group: String, $state: String!) { setScheduleState(name: $name, groupName: $group, state: $state) { groupName name state } }`,
        { name: text('name'), group: text('group') || null, state },
      );
      const s = r.setScheduleState;
      setFlash(c, { kind: 'ok', text: `Schedule ${s.groupName}/${s.name} is ${s.state.toLowerCase()}.` });
    });
  });
  app.post(`${P}/queues/:name/redrive-dead-letters`, (c) =>
    act(c, `${CONSOLE_PATH}/queues`, async (ctx) => {
      const name = c.req.param('name');
      const r = await ctx.gql<{ redriveQueueDeadLetters: number }>(`mutation ConsoleQueueRedrive($name: String!) { redriveQueueDeadLetters(queueName: $name) }`, { name });
      setFlash(c, { kind: 'ok', text: `Returned ${r.redriveQueueDeadLetters} dead-lettered messages to queue ${name}.` });
    }),
  );

  // ---------------------------------------------------------------- live: the ledger feed over SSE
  // The public GraphQL subscription, asked with the session's key; its SSE stream (event
  // ids included, so EventSource resumes with Last-Event-ID) is passed through as is.
  app.get(`${P}/live`, async (c) => {
    const session = c.get('session');
    const invocationId = c.req.query('invocationId') || null;
    const functionName = c.req.query('functionName') || null;
    const headers = graphqlHeaders(session, 'text/event-stream');
    const lastEventId = c.req.header('last-event-id');
    if (lastEventId) headers.set('last-event-id', lastEventId);
    const res = await o.api(
      new Request(new URL('/graphql', c.req.url), {
        method: 'POST',
        headers,
        body: JSON.stringify({ query: liveQuery, variables: { invocationId, functionName } }),
        signal: c.req.raw.signal,
      }),
      { outgoing: (c.env as { outgoing?: unknown } | undefined)?.outgoing },
    );
    return new Response(res.body, {
      status: res.status,
      headers: {
        'Content-Type': res.headers.get('content-type') ?? 'text/event-stream',
        'Cache-Control': 'no-cache, no-store',
        'X-Accel-Buffering': 'no',
      },
    });
  });

  // ---------------------------------------------------------------- GraphiQL carrying the session's key
  const graphiql = renderOfflineGraphiQL('/graphql');
  app.get(`${P}/graphiql`, (c) => {
    pageHeaders(c, false);
    return c.html(
      graphiql({
        title: 'Invoke Ledger GraphiQL (console session)',
        defaultQuery: DEFAULT_QUERY,
        subscriptionsProtocol: 'SSE',
        endpoint: `${CONSOLE_PATH}/graphql`,
      }),
    );
  });
  app.post(`${P}/graphql`, async (c) => {
    const session = c.get('session');
    const body = await readBodyLimited(c, MAX_SIGNED_BODY_BYTES);
    const headers = graphqlHeaders(session, c.req.header('accept') ?? 'application/graphql-response+json, application/json');
    const res = await o.api(
      new Request(new URL('/graphql', c.req.url), { method: 'POST', headers, body: new Uint8Array(body), signal: c.req.raw.signal }),
      { outgoing: (c.env as { outgoing?: unknown } | undefined)?.outgoing },
    );
    return new Response(res.body, { status: res.status, headers: { 'Content-Type': res.headers.get('content-type') ?? 'application/json', 'Cache-Control': 'no-store' } });
  });

  app.get(`${P}/:rest{.+}`, (c) => {
    const ctx = ctxOf(c);
    return render(
      c,
      <Layout ctx={ctx} title="Not found" nav="none">
        <p>
          Nothing is at <code>{c.req.path}</code>. <a href={`${CONSOLE_PATH}/`}>Go to the overview</a>.
        </p>
      </Layout>,
      404,
    );
  });
  return app;
}

/**
 * GET /: a browser (it asks for HTML) is sent to the console; other clients get a small
 * index of where things are.
 */
export function rootRoute(): Hono {
  const app = new Hono();
  app.get('/', (c) => {
    if (/\btext\/html\b/.test(c.req.header('accept') ?? '')) return c.redirect(`${CONSOLE_PATH}/`, 302);
    return c.json({ name: 'invoke-ledger', console: `${CONSOLE_PATH}/`, graphql: '/graphql', health: '/healthz' });
  });
  return app;
}
