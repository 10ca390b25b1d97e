// The page shell and the small pieces every page uses. Server-rendered with Hono's JSX
// (which escapes every value); the pages work without scripts, and console.js adds
// charts, live updates and select-all on top.
import type { Child, FC } from 'hono/jsx';
import { can } from '../session.ts';
import type { Flash, PageContext } from '../page.ts';
import { ApiError } from '../api.ts';
import { importMap } from '../assets.ts';
import { bytes, STATUS_LABEL, utc } from './format.ts';

export type NavKey = 'overview' | 'functions' | 'invocations' | 'dead-letters' | 'queues' | 'schedules' | 'none';

const NAV: { key: NavKey; href: string; label: string }[] = [
  { key: 'overview', href: '/console/', label: 'Overview' },
  { key: 'functions', href: '/console/functions', label: 'Functions' },
  { key: 'invocations', href: '/console/invocations', label: 'Invocations' },
  { key: 'dead-letters', href: '/console/dead-letters', label: 'Dead letters' },
  { key: 'queues', href: '/console/queues', label: 'Queues & mappings' },
  { key: 'schedules', href: '/console/schedules', label: 'Schedules' },
];

/** What the page subscribes to: console.js opens /console/live with these and refreshes the live regions. */
export interface LiveFilter {
  invocationId?: string;
  functionName?: string;
}

export function liveUrl(filter: LiveFilter): string {
  const q = new URLSearchParams();
  if (filter.invocationId) q.set('invocationId', filter.invocationId);
  if (filter.functionName) q.set('functionName', filter.functionName);
  const s = q.toString();
  return `/console/live${s ? `?${s}` : ''}`;
}

const HTMX_CONFIG = JSON.stringify({
  includeIndicatorStyles: false,
  historyCacheSize: 0,
  refreshOnHistoryMiss: true,
  allowEval: false,
  allowScriptTags: false,
  selfRequestsOnly: true,
});

export const Layout: FC<{ ctx: PageContext; title: string; nav: NavKey; live?: LiveFilter | null; children?: Child }> = ({ ctx, title, nav, live, children }) => {
  const { session } = ctx;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light" />
        <meta name="htmx-config" content={HTMX_CONFIG} />
        <title>{`${title} · Invoke Ledger`}</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href={`${ctx.assets}/uPlot.min.css`} />
        <link rel="stylesheet" href={`${ctx.assets}/console.css`} />
        <script type="importmap" dangerouslySetInnerHTML={{ __html: importMap().json }}></script>
        <script type="module" src={`${ctx.assets}/console.js`}></script>
      </head>
      <body data-live-url={live ? liveUrl(live) : undefined}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="/console/">
            Invoke Ledger
          </a>
          {nav !== 'none' && can(session, 'audit') ? (
            <nav aria-label="Console">
              <ul>
                {NAV.map((n) => (
                  <li>
                    <a href={n.href} aria-current={n.key === nav ? 'page' : undefined}>
                      {n.label}
                    </a>
                  </li>
                ))}
                <li>
                  <a href="/console/graphiql">GraphQL</a>
                </li>
              </ul>
            </nav>
          ) : null}
          <Who ctx={ctx} />
        </header>
        <main id="main" tabindex={-1}>
          <h1>{title}</h1>
          {ctx.flash ? <FlashNote flash={ctx.flash} /> : null}
          {children}
        </main>
        <footer class="foot">
          <p>
            Times are UTC. <span class="live-state" data-live-state hidden></span>
          </p>
        </footer>
      </body>
    </html>
  );
};

const Who: FC<{ ctx: PageContext }> = ({ ctx }) => {
  const s = ctx.session;
  if (!s.authEnabled) return <p class="who">Authentication is off (LEDGER_AUTH=off)</p>;
  return (
    <div class="who">
      <span>
        Key <strong>{s.keyName ?? s.keyId}</strong> <span class="scopes">({[...s.scopes].sort().join(', ') || 'no scopes'})</span>
      </span>
      <form method="post" action="/console/sign-out">
        <button type="submit" class="link">
          Sign out
        </button>
      </form>
    </div>
  );
};

export const FlashNote: FC<{ flash: Flash }> = ({ flash }) => (
  <div class={`flash flash-${flash.kind}`} role={flash.kind === 'error' ? 'alert' : 'status'}>
    <p>{flash.text}</p>
    {flash.invocationIds?.length ? (
      <ul class="inline-list">
        {flash.invocationIds.map((id) => (
          <li>
            <a href={`/console/invocations/${id}`} class="mono">
              {id}
            </a>
          </li>
        ))}
      </ul>
    ) : null}
  </div>
);

/** An error answered by the API, shown where the section would have been. */
export const ErrorNote: FC<{ error: unknown; what: string }> = ({ error, what }) => {
  const code = error instanceof ApiError ? error.code : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div class="flash flash-error" role="alert">
      <p>
        Could not load {what}: <span class="mono">{code}</span> {message}
      </p>
    </div>
  );
};

export const Time: FC<{ at: string | null | undefined }> = ({ at }) => (at ? <time datetime={at}>{utc(at)}</time> : <span>—</span>);

export const Status: FC<{ status: string }> = ({ status }) => <span class={`status status-${status.toLowerCase()}`}>{STATUS_LABEL[status] ?? status.toLowerCase()}</span>;

export const EventType: FC<{ type: string }> = ({ type }) => <span class={`ev ev-${type.toLowerCase()}`}>{type.toLowerCase().replace('_', ' ')}</span>;

/** Pretty JSON; large values folded, very large ones cut (the full value is a link away). */
export const FOLD_BYTES = 2_048;
export const FOLD_LINES = 30;
export const MAX_SHOWN_BYTES = 256 * 1024;

export const Json: FC<{ value: unknown; label: string; full?: string }> = ({ value, label, full }) => {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  const size = Buffer.byteLength(text, 'utf8');
  const lines = text.split('\n').length;
  const cut = size > MAX_SHOWN_BYTES;
  const shown = cut ? text.slice(0, MAX_SHOWN_BYTES) : text;
  const pre = (
    <pre class="json" tabindex={0}>
      {shown}
      {cut ? `\n… (${bytes(size - MAX_SHOWN_BYTES)} more)` : ''}
    </pre>
  );
  const download = full ? (
    <p class="hint">
      <a href={full}>Download the whole value (JSON)</a>
    </p>
  ) : null;
  if (size <= FOLD_BYTES && lines <= FOLD_LINES) return pre;
  return (
    <details class="fold">
      <summary>
        {label}: {bytes(size)}, {lines.toLocaleString('en-US')} lines
      </summary>
      {pre}
      {cut ? download : null}
    </details>
  );
};

/** Plain text (logs, traces); long texts folded, open when `open`. */
export const Text: FC<{ text: string; label: string; open?: boolean }> = ({ text, label, open }) => {
  const lines = text.split('\n').length;
  const pre = (
    <pre class="log" tabindex={0}>
      {text}
    </pre>
  );
  if (text.length <= FOLD_BYTES && lines <= FOLD_LINES) return pre;
  return (
    <details class="fold" open={open}>
      <summary>
        {label}: {bytes(Buffer.byteLength(text, 'utf8'))}, {lines.toLocaleString('en-US')} lines
      </summary>
      {pre}
    </details>
  );
};

/** Hidden form fields that keep the current query (filters) across a form that changes one of them. */
export const KeepQuery: FC<{ url: URL; except: string[] }> = ({ url, except }) => (
  <>
    {[...url.searchParams.entries()]
      .filter(([k]) => !except.includes(k))
      .map(([k, v]) => (
        <input type="hidden" name={k} value={v} />
      ))}
  </>
);

export function withQuery(url: URL, changes: Record<string, string | null>): string {
  const next = new URL(url);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === '') next.searchParams.delete(k);
    else next.searchParams.set(k, v);
  }
  return `${next.pathname}${next.search}`;
}

export const NotAllowed: FC<{ ctx: PageContext }> = ({ ctx }) => (
  <div class="panel">
    <p>
      This key has the {[...ctx.session.scopes].sort().join(' and ') || 'no'} scope{ctx.session.scopes.size === 1 ? '' : 's'}. The console shows
      the ledger to keys with the <strong>audit</strong> scope, and its actions (redrive, cancel, enabling mappings) to keys with{' '}
      <strong>admin</strong> as well.
    </p>
    <p>
      Create one with <code>npx invoke-ledger keys create --scopes audit,admin --name console</code>, then sign out and in again.
    </p>
  </div>
);
