// Invocations: search (function, status, type, time range, idempotency key, error type),
// and one invocation's timeline drawn from its events, with each attempt's duration,
// error and log, and its payload and result folded when large.
import type { Child, FC } from 'hono/jsx';
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count, ms, shortId, STATUS_LABEL, utc } from '../views/format.ts';
import { ErrorNote, EventType, Json, Layout, NotAllowed, Status, Text, Time, withQuery } from '../views/ui.tsx';

export const PAGE_SIZE = 50;

export const STATUSES = ['QUEUED', 'RUNNING', 'RETRY_SCHEDULED', 'SUCCEEDED', 'FAILED', 'DEAD_LETTERED', 'CANCELLED'] as const;
export const TYPES = ['SYNC', 'ASYNC', 'POLL', 'REPLAY'] as const;
const WITHIN: Record<string, { label: string; seconds: number }> = {
  '15m': { label: 'the last 15 minutes', seconds: 900 },
  '1h': { label: 'the last hour', seconds: 3_600 },
  '24h': { label: 'the last 24 hours', seconds: 86_400 },
  '7d': { label: 'the last 7 days', seconds: 604_800 },
};

export interface ListEvent {
  seq: number;
  type: string;
  attempt: number | null;
  occurredAt: string;
  durationMs: number | null;
}

export interface ListInvocation {
  id: string;
  functionName: string;
  functionVersion: number;
  type: string;
  status: string;
  attempts: number;
  idempotencyKey: string | null;
  acceptedAt: string;
  finishedAt: string | null;
  deadLetterReason: string | null;
  error: { errorType: string; errorMessage: string } | null;
  events: ListEvent[];
}

export const LIST_FIELDS = /* GraphQL */ `
  id functionName functionVersion type status attempts idempotencyKey acceptedAt finishedAt deadLetterReason
  error { errorType errorMessage }
  events { seq type attempt occurredAt durationMs }
`;

const LIST_QUERY = /* GraphQL */ `
  query ConsoleInvocations($filter: InvocationFilter, $first: Int, $after: String) {
    invocations(filter: $filter, first: $first, after: $after) {
      edges { node { ${LIST_FIELDS} } }
      pageInfo { hasNextPage endCursor }
    }
    functions { name }
  }
`;

interface Connection {
  edges: { node: ListInvocation }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/** A `datetime-local` value (UTC, as the page says) → ISO, or an error message. */
function parseUtc(value: string | undefined, what: string, errors: string[]): string | null {
  if (!value) return null;
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d{1,3})?)?$/.exec(value.trim());
  const d = m ? new Date(`${m[1]}T${m[2]}${m[3] ?? ':00'}Z`) : null;
  if (!d || Number.isNaN(d.getTime())) {
    errors.push(`${what}: “${value}” is not a date and time like 2025-01-31T12:00`);
    return null;
  }
  return d.toISOString();
}

export interface SearchForm {
  fn: string;
  status: string;
  type: string;
  error: string;
  key: string;
  trace: string;
  within: string;
  from: string;
  to: string;
}

const TRACE_ID = /^[0-9a-f]{32}$/i;

export function readSearch(url: URL): { form: SearchForm; filter: Record<string, string>; errors: string[] } {
  const q = (k: string) => url.searchParams.get(k)?.trim() ?? '';
  const form: SearchForm = { fn: q('fn'), status: q('status'), type: q('type'), error: q('error'), key: q('key'), trace: q('trace'), within: q('within'), from: q('from'), to: q('to') };
  const errors: string[] = [];
  const filter: Record<string, string> = {};
  if (form.fn) filter.functionName = form.fn;
  if (form.status) {
    if ((STATUSES as readonly string[]).includes(form.status)) filter.status = form.status;
    else errors.push(`status: unknown status “${form.status}”`);
  }
  if (form.type) {
    if ((TYPES as readonly string[]).includes(form.type)) filter.type = form.type;
    else errors.push(`type: unknown type “${form.type}”`);
  }
  // a valid id was redirected to its page before this
  if (q('id')) errors.push(`invocation id: “${q('id')}” is not an invocation id (a UUID)`);
  if (form.error) filter.errorType = form.error;
  if (form.key) filter.idempotencyKey = form.key;
  if (form.trace) {
    if (TRACE_ID.test(form.trace)) filter.traceId = form.trace.toLowerCase();
    else errors.push(`trace id: “${form.trace}” is not a trace id (32 hexadecimal digits)`);
  }
  const within = WITHIN[form.within];
  if (form.within && !within) errors.push(`within: unknown range “${form.within}”`);
  const from = parseUtc(form.from, 'from', errors);
  const to = parseUtc(form.to, 'to', errors);
  if (within) filter.acceptedAfter = new Date(Date.now() - within.seconds * 1000).toISOString();
  if (from && (!filter.acceptedAfter || from > filter.acceptedAfter)) filter.acceptedAfter = from;
  if (to) filter.acceptedBefore = to;
  return { form, filter, errors };
}

export async function invocationsPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Invocations" nav="invocations">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const { form, filter, errors } = readSearch(ctx.url);
  const after = ctx.url.searchParams.get('after') || null;
  let data: { invocations: Connection; functions: { name: string }[] } | null = null;
  let failure: unknown = null;
  try {
    data = await ctx.gql(LIST_QUERY, { filter, first: PAGE_SIZE, after });
  } catch (e) {
    failure = e;
  }
  const rows = data?.invocations.edges.map((e) => e.node) ?? [];
  const functions = data?.functions.map((f) => f.name) ?? [];
  return (
    <Layout ctx={ctx} title="Invocations" nav="invocations" live={form.fn ? { functionName: form.fn } : {}}>
      <SearchFormView form={form} functions={functions} />
      {errors.length ? (
        <div class="flash flash-error" role="alert">
          <ul>
            {errors.map((e) => (
              <li>{e}</li>
            ))}
          </ul>
        </div>
      ) : null}
      {failure ? <ErrorNote error={failure} what="invocations" /> : null}
      <section
        id="invocation-list"
        aria-labelledby="results-heading"
        data-live-region
        data-live-ids={after ? rows.map((r) => r.id).join(' ') : undefined}
      >
        <h2 id="results-heading">
          {rows.length === 0 ? 'No invocations match' : `${rows.length}${data?.invocations.pageInfo.hasNextPage ? '+' : ''} invocations`}
          {after ? ' (a later page)' : ', newest first'}
        </h2>
        {rows.length > 0 ? <InvocationTable rows={rows} caption="Invocations matching the search, newest first" /> : null}
        <nav class="pager" aria-label="Pages">
          {after ? <a href={withQuery(ctx.url, { after: null })}>First page</a> : null}
          {data?.invocations.pageInfo.hasNextPage && data.invocations.pageInfo.endCursor ? (
            <a href={withQuery(ctx.url, { after: data.invocations.pageInfo.endCursor })} rel="next">
              Next {PAGE_SIZE}
            </a>
          ) : null}
        </nav>
      </section>
    </Layout>
  );
}

const Field: FC<{ id: string; label: string; children?: Child }> = ({ id, label, children }) => (
  <div class="field">
    <label for={id}>{label}</label>
    {children}
  </div>
);

const SearchFormView: FC<{ form: SearchForm; functions: string[] }> = ({ form, functions }) => (
  <form method="get" action="/console/invocations" class="search" role="search" aria-label="Search invocations">
    <div class="fields">
      <Field id="f-fn" label="Function">
        <select id="f-fn" name="fn">
          <option value="">any</option>
          {functions.map((f) => (
            <option value={f} selected={f === form.fn}>
              {f}
            </option>
          ))}
          {form.fn && !functions.includes(form.fn) ? (
            <option value={form.fn} selected>
              {form.fn}
            </option>
          ) : null}
        </select>
      </Field>
      <Field id="f-status" label="Status">
        <select id="f-status" name="status">
          <option value="">any</option>
          {STATUSES.map((s) => (
            <option value={s} selected={s === form.status}>
              {STATUS_LABEL[s]}
            </option>
          ))}
        </select>
      </Field>
      <Field id="f-type" label="Type">
        <select id="f-type" name="type">
          <option value="">any</option>
          {TYPES.map((t) => (
            <option value={t} selected={t === form.type}>
              {t.toLowerCase()}
            </option>
          ))}
        </select>
      </Field>
      <Field id="f-error" label="Error type">
        <input id="f-error" type="text" name="error" value={form.error} placeholder="e.g. Error, HTTP.Timeout" autocomplete="off" spellcheck={false} />
      </Field>
      <Field id="f-key" label="Idempotency key">
        <input id="f-key" type="text" name="key" value={form.key} autocomplete="off" spellcheck={false} />
      </Field>
      <Field id="f-trace" label="Trace id">
        <input id="f-trace" type="text" name="trace" value={form.trace} autocomplete="off" spellcheck={false} placeholder="32 hex digits" />
      </Field>
      <Field id="f-within" label="Accepted within">
        <select id="f-within" name="within">
          <option value="">any time</option>
          {Object.entries(WITHIN).map(([k, w]) => (
            <option value={k} selected={k === form.within}>
              {w.label}
            </option>
          ))}
        </select>
      </Field>
      <Field id="f-from" label="From (UTC)">
        <input id="f-from" type="datetime-local" name="from" value={form.from} step={1} />
      </Field>
      <Field id="f-to" label="To (UTC)">
        <input id="f-to" type="datetime-local" name="to" value={form.to} step={1} />
      </Field>
      <Field id="f-id" label="Invocation id">
        <input id="f-id" type="text" name="id" value="" autocomplete="off" spellcheck={false} placeholder="go straight to one" />
      </Field>
    </div>
    <div class="actions">
      <button type="submit">Search</button>
      <a href="/console/invocations">Clear</a>
    </div>
  </form>
);

export function lastDuration(events: ListEvent[]): number | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const d = events[i]?.durationMs;
    if (d !== null && d !== undefined) return d;
  }
  return null;
}

/** The invocations table (also used by the dead letters and function pages). */
export const InvocationTable: FC<{ rows: ListInvocation[]; caption: string; select?: { name: string; form: string } }> = ({ rows, caption, select }) => (
  <div class="table-wrap" tabindex={0} role="region" aria-label={caption}>
    <table class="list">
      <caption class="sr-only">{caption}</caption>
      <thead>
        <tr>
          {select ? (
            <th scope="col">
              <span class="sr-only">Select</span>
              <input type="checkbox" data-select-all={select.name} aria-label="Select every invocation on this page" form={select.form} hidden />
            </th>
          ) : null}
          <th scope="col">Invocation</th>
          <th scope="col">Function</th>
          <th scope="col">Type</th>
          <th scope="col">Status</th>
          <th scope="col" class="num">
            Attempts
          </th>
          <th scope="col">Error</th>
          <th scope="col">Accepted</th>
          <th scope="col" class="num">
            Last attempt
          </th>
          <th scope="col">Events</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr data-invocation={r.id}>
            {select ? (
              <td>
                <input type="checkbox" name={select.name} value={r.id} form={select.form} aria-label={`Select invocation ${r.id}`} />
              </td>
            ) : null}
            <td>
              <a href={`/console/invocations/${r.id}`} class="mono" aria-label={`Invocation ${r.id}`}>
                {shortId(r.id)}
              </a>
            </td>
            <td>
              <a href={`/console/functions/${encodeURIComponent(r.functionName)}`}>{r.functionName}</a>
              <span class="muted">:{r.functionVersion}</span>
            </td>
            <td>{r.type.toLowerCase()}</td>
            <td>
              <Status status={r.status} />
            </td>
            <td class="num">{r.attempts}</td>
            <td>{r.error ? <span title={r.error.errorMessage} class="mono">{r.error.errorType}</span> : <span class="muted">—</span>}</td>
            <td>
              <Time at={r.acceptedAt} />
            </td>
            <td class="num">{ms(lastDuration(r.events))}</td>
            <td>
              <ol class="chips" aria-label={`${r.events.length} events`}>
                {r.events.map((e) => (
                  <li>
                    <EventType type={e.type} />
                  </li>
                ))}
              </ol>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  </div>
);

// ---------------------------------------------------------------------------------
// one invocation

interface DetailEvent {
  seq: number;
  type: string;
  attempt: number | null;
  occurredAt: string;
  durationMs: number | null;
  data: Record<string, unknown>;
}

export interface InvocationDetail {
  id: string;
  functionName: string;
  functionVersion: number;
  type: string;
  status: string;
  attempts: number;
  payload: unknown;
  result: unknown;
  error: { errorType: string; errorMessage: string; trace: string[] } | null;
  deadLetterReason: string | null;
  idempotencyKey: string | null;
  traceId: string | null;
  acceptedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  events: DetailEvent[];
  attemptLogs: { attempt: number; log: string }[];
  /** set for invocations of type REPLAY (docs/replay.md) */
  replay: { replayId: string; originalInvocationId: string } | null;
}

const DETAIL_QUERY = /* GraphQL */ `
  query ConsoleInvocation($id: ID!) {
    invocation(id: $id) {
      id functionName functionVersion type status attempts payload result
      error { errorType errorMessage trace }
      deadLetterReason idempotencyKey acceptedAt startedAt finishedAt traceId
      events { seq type attempt occurredAt durationMs data }
      attemptLogs { attempt log }
      replay { replayId originalInvocationId }
    }
  }
`;

/** A block of the timeline: one attempt (started … its outcome), or a single event. */
type TimelineItem =
  | { kind: 'attempt'; attempt: number; started: DetailEvent | null; outcome: DetailEvent | null }
  | { kind: 'event'; event: DetailEvent };

export function timelineOf(events: DetailEvent[]): TimelineItem[] {
  const items: TimelineItem[] = [];
  let open: Extract<TimelineItem, { kind: 'attempt' }> | null = null;
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    if (e.type === 'STARTED') {
      open = { kind: 'attempt', attempt: e.attempt ?? Number(e.data.attempt ?? 0), started: e, outcome: null };
      items.push(open);
    } else if (e.type === 'SUCCEEDED' || e.type === 'FAILED') {
      const attempt = e.attempt ?? Number(e.data.attempt ?? 0);
      if (open && open.attempt === attempt && !open.outcome) open.outcome = e;
      else items.push({ kind: 'attempt', attempt, started: null, outcome: e });
      open = null;
    } else {
      items.push({ kind: 'event', event: e });
    }
  }
  return items;
}

export async function invocationPage(ctx: PageContext, id: string) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Invocation" nav="invocations">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  let inv: InvocationDetail | null = null;
  let failure: unknown = null;
  try {
    inv = (await ctx.gql<{ invocation: InvocationDetail | null }>(DETAIL_QUERY, { id })).invocation;
  } catch (e) {
    failure = e;
  }
  if (!inv) {
    return (
      <Layout ctx={ctx} title="Invocation not found" nav="invocations">
        {failure ? <ErrorNote error={failure} what="the invocation" /> : <p>No invocation has the id <code>{id}</code>.</p>}
        <p>
          <a href="/console/invocations">Search invocations</a>
        </p>
      </Layout>
    );
  }
  return (
    <Layout ctx={ctx} title={`Invocation ${inv.id}`} nav="invocations" live={{ invocationId: inv.id }}>
      <InvocationView ctx={ctx} inv={inv} />
    </Layout>
  );
}

/** Everything below the title: one live region, refreshed as the invocation's events arrive. */
export const InvocationView: FC<{ ctx: PageContext; inv: InvocationDetail }> = ({ ctx, inv }) => {
  const logs = new Map(inv.attemptLogs.map((l) => [l.attempt, l.log]));
  const base = `/console/invocations/${inv.id}`;
  const admin = can(ctx.session, 'admin');
  const trace = inv.traceId && ctx.traceUrl ? ctx.traceUrl(inv.traceId) : null;
  return (
    <div id="invocation" data-live-region data-live-seen={`${inv.id}:${Math.max(0, ...inv.events.map((e) => e.seq))}`}>
      <section aria-labelledby="summary-heading" class="panel">
        <h2 id="summary-heading" class="sr-only">
          Summary
        </h2>
        <dl class="facts">
          <div>
            <dt>Status</dt>
            <dd>
              <Status status={inv.status} />
              {inv.deadLetterReason ? <span class="muted"> ({inv.deadLetterReason})</span> : null}
            </dd>
          </div>
          <div>
            <dt>Function</dt>
            <dd>
              <a href={`/console/functions/${encodeURIComponent(inv.functionName)}`}>{inv.functionName}</a>
              <span class="muted"> version {inv.functionVersion}</span>
            </dd>
          </div>
          <div>
            <dt>Type</dt>
            <dd>
              {inv.type.toLowerCase()}
              {inv.replay ? (
                <span class="muted">
                  {' '}
                  of <a href={`/console/invocations/${encodeURIComponent(inv.replay.originalInvocationId)}`}>{inv.replay.originalInvocationId}</a> (replay run{' '}
                  {inv.replay.replayId})
                </span>
              ) : null}
            </dd>
          </div>
          <div>
            <dt>Attempts</dt>
            <dd>{inv.attempts}</dd>
          </div>
          <div>
            <dt>Accepted</dt>
            <dd>
              <Time at={inv.acceptedAt} />
            </dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>
              <Time at={inv.finishedAt} />
            </dd>
          </div>
          {inv.idempotencyKey ? (
            <div>
              <dt>Idempotency key</dt>
              <dd class="mono">{inv.idempotencyKey}</dd>
            </div>
          ) : null}
          {inv.traceId ? (
            <div>
              <dt>Trace</dt>
              <dd>
                {trace ? (
                  <a href={trace} class="mono" rel="noreferrer" target="_blank">
                    {inv.traceId}
                  </a>
                ) : (
                  <span class="mono">{inv.traceId}</span>
                )}{' '}
                <a href={`/console/invocations?trace=${inv.traceId}`}>its invocations</a>
              </dd>
            </div>
          ) : null}
          <div>
            <dt>Tamper evidence</dt>
            <dd>
              <a href={`${base}/proof`}>Its inclusion proof</a>
            </dd>
          </div>
        </dl>
        {admin && (inv.status === 'DEAD_LETTERED' || inv.status === 'QUEUED' || inv.status === 'RETRY_SCHEDULED') ? (
          <div class="actions">
            {inv.status === 'DEAD_LETTERED' ? (
              <form method="post" action={`${base}/redrive`}>
                <button type="submit">Redrive</button>
              </form>
            ) : (
              <form method="post" action={`${base}/cancel`}>
                <button type="submit" class="danger">
                  Cancel
                </button>
              </form>
            )}
          </div>
        ) : null}
      </section>

      <section aria-labelledby="timeline-heading">
        <h2 id="timeline-heading">Timeline</h2>
        <ol class="timeline" id="timeline">
          {timelineOf(inv.events).map((item) =>
            item.kind === 'attempt' ? <AttemptItem item={item} log={logs.get(item.attempt) ?? null} trace={trace} /> : <EventItem e={item.event} />,
          )}
        </ol>
      </section>

      <section aria-labelledby="payload-heading">
        <h2 id="payload-heading">Payload</h2>
        <Json value={inv.payload} label="Payload" full={`${base}/payload.json`} />
      </section>
      {inv.status === 'SUCCEEDED' ? (
        <section aria-labelledby="result-heading">
          <h2 id="result-heading">Result</h2>
          <Json value={inv.result} label="Result" full={`${base}/result.json`} />
        </section>
      ) : null}
      {inv.error ? (
        <section aria-labelledby="error-heading">
          <h2 id="error-heading">Last error</h2>
          <p>
            <strong class="mono">{inv.error.errorType}</strong>: {inv.error.errorMessage}
          </p>
        </section>
      ) : null}
    </div>
  );
};

const AttemptItem: FC<{ item: Extract<TimelineItem, { kind: 'attempt' }>; log: string | null; trace: string | null }> = ({ item, log, trace }) => {
  const o = item.outcome;
  const failed = o?.type === 'FAILED';
  const error = failed ? (o?.data.error as { errorType?: string; errorMessage?: string; trace?: string[] } | undefined) : undefined;
  const state = o ? (failed ? 'failed' : 'succeeded') : 'running';
  return (
    <li class={`attempt attempt-${state}`} data-attempt={item.attempt}>
      <h3>
        Attempt {item.attempt}: <span class={`ev ev-${state}`}>{state}</span>
        {o?.durationMs !== null && o?.durationMs !== undefined ? <span class="muted"> in {ms(o.durationMs)}</span> : null}
      </h3>
      <p class="muted">
        {item.started ? (
          <>
            started <Time at={item.started.occurredAt} />
            {typeof item.started.data.workerId === 'string' ? <> by <span class="mono">{item.started.data.workerId}</span></> : null}
          </>
        ) : null}
        {o ? (
          <>
            {item.started ? '; ' : ''}ended <Time at={o.occurredAt} /> (event {o.seq})
          </>
        ) : null}
        {trace ? (
          <>
            {' '}
            <a href={trace} rel="noreferrer" target="_blank">
              Trace of attempt {item.attempt}
            </a>
          </>
        ) : null}
      </p>
      {error ? (
        <div class="attempt-error">
          <p>
            <strong class="mono">{error.errorType}</strong>: {error.errorMessage}
          </p>
          {error.trace?.length ? <Text text={error.trace.join('\n')} label="Stack trace" /> : null}
        </div>
      ) : null}
      <details class="attempt-log" open={failed || undefined}>
        <summary>Log of attempt {item.attempt}</summary>
        {log ? <pre class="log" tabindex={0}>{log}</pre> : <p class="muted">Nothing was logged.</p>}
      </details>
    </li>
  );
};

function describe(e: DetailEvent): string {
  const d = e.data;
  switch (e.type) {
    case 'ACCEPTED':
      return `as ${String(d.invocationType ?? '')} invocation of ${String(d.functionName ?? '')} version ${String(d.functionVersion ?? '')}`;
    case 'RETRIED':
      return `attempt ${String(d.attempt)} scheduled for ${utc(String(d.runAt))} (after ${ms(Number(d.delayMs))})`;
    case 'DEAD_LETTERED':
      return `reason ${String(d.reason)}`;
    case 'REDRIVEN':
      return `by ${String(d.by)}: queued again with a fresh retry budget`;
    case 'CANCELLED':
      return String(d.reason ?? '');
    default:
      return '';
  }
}

const EventItem: FC<{ e: DetailEvent }> = ({ e }) => (
  <li class={`event event-${e.type.toLowerCase()}`}>
    <EventType type={e.type} /> <Time at={e.occurredAt} /> <span>{describe(e)}</span> <span class="muted">(event {e.seq})</span>
  </li>
);

/** GET …/payload.json and …/result.json: the whole value, as stored. */
export async function invocationValue(ctx: PageContext, id: string, which: 'payload' | 'result'): Promise<unknown> {
  const r = await ctx.gql<{ invocation: { payload: unknown; result: unknown } | null }>(
    /* GraphQL */ `query ConsoleInvocationValue($id: ID!) { invocation(id: $id) { payload result } }`,
    { id },
  );
  if (!r.invocation) return undefined;
  return r.invocation[which];
}

export const countLabel = (n: number, one: string, many: string) => `${count(n)} ${n === 1 ? one : many}`;
