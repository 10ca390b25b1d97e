// Functions: the list with recent volume, error rate and durations, and one function's
// configuration and code, activity, aliases with their routing weights, versions (code
// hash, published with which description, what changed), schedules and mappings that
// invoke it, and its change history from the ledger (ledger.changes).
//
// A function's page is a list of sections (FUNCTION_SECTIONS), each loading its own data
// (a GraphQL query, or a db/ read GraphQL has no field for: ../reads.ts) and its view, so
// a later capability is one more entry here.
import type { FC } from 'hono/jsx';
import type { Alias, PublishedVersion } from '../../../db/control-plane.ts';
import type { FunctionVersion } from '../../../db/functions.ts';
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count, ms, percent } from '../views/format.ts';
import { ErrorNote, Layout, NotAllowed, Time } from '../views/ui.tsx';
import { BROKER_MAPPING_FIELDS, brokerSource, type BrokerMappingRow } from './queues.tsx';

const RANGES: Record<string, { label: string; seconds: number }> = {
  '1h': { label: 'last hour', seconds: 3_600 },
  '24h': { label: 'last 24 hours', seconds: 86_400 },
};

interface Totals {
  accepted: number;
  succeeded: number;
  failedAttempts: number;
  deadLettered: number;
  errorRate: number | null;
  p50DurationMs: number | null;
  p95DurationMs: number | null;
  p99DurationMs: number | null;
}

interface FunctionRow {
  name: string;
  version: number;
  runtime: string;
  handler: string | null;
  url: string | null;
  timeoutMs: number;
  memoryMb: number;
  isolation: string;
  reservedConcurrency: number | null;
  createdAt: string;
}

const LIST_QUERY = /* GraphQL */ `
  query ConsoleFunctions($since: DateTime!, $until: DateTime!, $bucket: Int!) {
    functions { name version runtime handler url timeoutMs memoryMb isolation reservedConcurrency createdAt }
    invocationStats(since: $since, until: $until, bucketSeconds: $bucket) {
      functions { functionName points { accepted succeeded failedAttempts deadLettered errorRate p50DurationMs p95DurationMs p99DurationMs } }
    }
  }
`;

/** One bucket covers the whole range (until - since = bucketSeconds): its point is the range's totals. */
function totalsOf(points: Totals[] | undefined): Totals | null {
  return points?.[0] ?? null;
}

export async function functionsPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Functions" nav="functions">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const rangeKey = RANGES[ctx.url.searchParams.get('range') ?? ''] ? (ctx.url.searchParams.get('range') as string) : '1h';
  const range = RANGES[rangeKey] as { label: string; seconds: number };
  const until = new Date();
  const since = new Date(until.getTime() - range.seconds * 1000);
  let data: { functions: FunctionRow[]; invocationStats: { functions: { functionName: string; points: Totals[] }[] } } | null = null;
  let failure: unknown = null;
  try {
    data = await ctx.gql(LIST_QUERY, { since: since.toISOString(), until: until.toISOString(), bucket: range.seconds });
  } catch (e) {
    failure = e;
  }
  const stats = new Map(data?.invocationStats.functions.map((s) => [s.functionName, totalsOf(s.points)]) ?? []);
  return (
    <Layout ctx={ctx} title="Functions" nav="functions">
      {failure ? <ErrorNote error={failure} what="functions" /> : null}
      <nav class="tabs" aria-label="Range">
        {Object.entries(RANGES).map(([k, r]) => (
          <a href={`/console/functions?range=${k}`} aria-current={k === rangeKey ? 'page' : undefined}>
            {r.label}
          </a>
        ))}
      </nav>
      <div id="function-list" data-live-region hx-get={`/console/functions?range=${rangeKey}`} hx-trigger="every 15s" hx-select="#function-list" hx-swap="outerHTML">
        <div class="table-wrap" tabindex={0} role="region" aria-label="Functions">
          <table class="list">
            <caption class="sr-only">Functions with their activity in the {range.label}</caption>
            <thead>
              <tr>
                <th scope="col">Function</th>
                <th scope="col" class="num">
                  Version
                </th>
                <th scope="col">Runtime</th>
                <th scope="col" class="num">
                  Invocations
                </th>
                <th scope="col" class="num">
                  Error rate
                </th>
                <th scope="col" class="num">
                  Dead letters
                </th>
                <th scope="col" class="num">
                  p50
                </th>
                <th scope="col" class="num">
                  p95
                </th>
                <th scope="col" class="num">
                  p99
                </th>
              </tr>
            </thead>
            <tbody>
              {(data?.functions ?? []).map((f) => {
                const s = stats.get(f.name) ?? null;
                return (
                  <tr>
                    <td>
                      <a href={`/console/functions/${encodeURIComponent(f.name)}`}>{f.name}</a>
                    </td>
                    <td class="num">{f.version}</td>
                    <td>
                      {f.runtime.toLowerCase()}
                      {f.runtime === 'MODULE' ? <span class="muted"> ({f.isolation.toLowerCase()})</span> : null}
                    </td>
                    <td class="num">{count(s?.accepted ?? 0)}</td>
                    <td class="num">{percent(s?.errorRate)}</td>
                    <td class="num">{count(s?.deadLettered ?? 0)}</td>
                    <td class="num">{ms(s?.p50DurationMs)}</td>
                    <td class="num">{ms(s?.p95DurationMs)}</td>
                    <td class="num">{ms(s?.p99DurationMs)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <p class="hint">
          Invocations accepted and attempts ended in the {range.label}; error rate = failed attempts / ended attempts.
        </p>
      </div>
    </Layout>
  );
}

// ---------------------------------------------------------------------------------
// one function

/** What a section is given: the function's name, the activity window, and its versions read once for the page. */
interface SectionInput {
  name: string;
  since: Date;
  until: Date;
  versions: Promise<FunctionVersion[]>;
  aliases: Promise<Alias[]>;
}

/** A section of a function's page: how it loads its data and how it shows it. */
interface FunctionSection<T> {
  id: string;
  title: string;
  load: (ctx: PageContext, input: SectionInput) => Promise<T>;
  view: FC<{ data: T; name: string }>;
}

const section = <T,>(s: FunctionSection<T>) => s as unknown as FunctionSection<unknown>;

/** Never shown: a value that is only a secret's stand-in, or environment values (names only). */
const names = (v: unknown) => {
  const keys = Object.keys((v ?? {}) as Record<string, unknown>).sort();
  return keys.length ? keys.join(', ') : 'none';
};

const text = (v: unknown) => (v === null || v === undefined || v === '' ? '—' : String(v));

/**
 * Each setting of a version, as the configuration shows it and as a version's changes
 * name it. Environment variables by name only: their values may be credentials.
 */
const SETTINGS: [keyof FunctionVersion, string, (v: unknown) => string][] = [
  ['description', 'Description', text],
  ['runtime', 'Runtime', (v) => String(v).toLowerCase()],
  ['lambdaRuntime', 'Lambda runtime', text],
  ['handler', 'Handler', text],
  ['url', 'URL', text],
  ['isolation', 'Isolation', (v) => String(v).toLowerCase()],
  ['codeSha256', 'Code package (SHA-256)', text],
  ['codeHash', 'Code file hash (FUNCTIONS_DIR)', text],
  ['timeoutMs', 'Timeout', (v) => ms(v as number)],
  ['memoryMb', 'Memory', (v) => `${String(v)} MB`],
  ['reservedConcurrency', 'Reserved concurrency', (v) => (v === null || v === undefined ? 'none' : String(v))],
  ['maxRetries', 'Retries (async)', (v) => String(v)],
  ['retryBaseDelayMs', 'Retry base delay', (v) => ms(v as number)],
  ['retryMaxDelayMs', 'Retry max delay', (v) => ms(v as number)],
  ['maxEventAgeSeconds', 'Max event age', (v) => ms((v as number) * 1000)],
  ['onSuccess', 'On success', text],
  ['onFailure', 'On failure', text],
  ['environment', 'Environment variables', names],
  ['secret', 'Signing secret', (v) => (v ? 'set' : 'none')],
  ['role', 'Role', text],
];

const MONO = new Set<keyof FunctionVersion>(['handler', 'url', 'codeSha256', 'codeHash', 'role']);
/** shown even when empty: they say something when unset */
const ALWAYS = new Set<keyof FunctionVersion>(['reservedConcurrency', 'codeSha256', 'environment', 'secret']);

const configSection = section<{ latest: FunctionVersion | null; revision: number | null }>({
  id: 'configuration',
  title: 'Configuration',
  load: async (ctx, input) => {
    const [versions, revision] = await Promise.all([input.versions, ctx.reads.revision(input.name)]);
    return { latest: versions[0] ?? null, revision: revision > 0 ? revision : null };
  },
  view: ({ data }) => {
    const fn = data.latest;
    if (!fn) return null;
    return (
      <dl class="facts">
        <div>
          <dt>Latest version</dt>
          <dd>
            {fn.version}, created <Time at={new Date(fn.createdAt).toISOString()} />
          </dd>
        </div>
        {data.revision !== null ? (
          <div data-setting="revision">
            <dt>Revision</dt>
            <dd>{data.revision}</dd>
          </div>
        ) : null}
        {SETTINGS.filter(([k]) => ALWAYS.has(k) || (fn[k] !== null && fn[k] !== '')).map(([k, label, show]) => (
          <div data-setting={k}>
            <dt>{label}</dt>
            <dd class={MONO.has(k) ? 'mono' : undefined}>{show(fn[k])}</dd>
          </div>
        ))}
      </dl>
    );
  },
});

interface Totals24h {
  invocationStats: { total: { points: Totals[] } };
}

const activitySection = section<Totals24h>({
  id: 'activity',
  title: 'Last 24 hours',
  load: (ctx, input) =>
    ctx.gql<Totals24h>(
      `query ConsoleFunctionActivity($name: String!, $since: DateTime!, $until: DateTime!) {
        invocationStats(since: $since, until: $until, bucketSeconds: 86400, functionName: $name) {
          total { points { accepted succeeded failedAttempts deadLettered errorRate p50DurationMs p95DurationMs p99DurationMs } } } }`,
      { name: input.name, since: input.since.toISOString(), until: input.until.toISOString() },
    ),
  view: ({ data, name }) => {
    const t = totalsOf(data.invocationStats.total.points);
    return (
      <>
        <dl class="facts">
          <div>
            <dt>Invocations</dt>
            <dd>{count(t?.accepted ?? 0)}</dd>
          </div>
          <div>
            <dt>Attempts succeeded / failed</dt>
            <dd>
              {count(t?.succeeded ?? 0)} / {count(t?.failedAttempts ?? 0)}
            </dd>
          </div>
          <div>
            <dt>Error rate</dt>
            <dd>{percent(t?.errorRate)}</dd>
          </div>
          <div>
            <dt>Dead letters</dt>
            <dd>{count(t?.deadLettered ?? 0)}</dd>
          </div>
          <div>
            <dt>Duration p50 / p95 / p99</dt>
            <dd>
              {ms(t?.p50DurationMs)} / {ms(t?.p95DurationMs)} / {ms(t?.p99DurationMs)}
            </dd>
          </div>
        </dl>
        <p>
          <a href={`/console/invocations?fn=${encodeURIComponent(name)}`}>Its invocations</a> ·{' '}
          <a href={`/console/dead-letters?fn=${encodeURIComponent(name)}`}>its dead letters</a> ·{' '}
          <a href={`/console/?fn=${encodeURIComponent(name)}`}>its charts</a>
        </p>
      </>
    );
  },
});

/** How an alias splits invocations: `[version, share]`, its own version first. */
export function routing(alias: Pick<Alias, 'functionVersion' | 'additionalWeights'>): [number, number][] {
  const extra = Object.entries(alias.additionalWeights).map(([v, w]) => [Number(v), w] as [number, number]);
  const rest = 1 - extra.reduce((n, [, w]) => n + w, 0);
  return [[alias.functionVersion, Math.max(0, rest)], ...extra];
}

const share = (w: number) => `${Math.round(w * 10_000) / 100} %`;

const aliasesSection = section<Alias[]>({
  id: 'aliases',
  title: 'Aliases',
  load: (_ctx, input) => input.aliases,
  view: ({ data }) =>
    data.length === 0 ? (
      <p>No alias: every invocation runs the latest version.</p>
    ) : (
      <div class="table-wrap" tabindex={0} role="region" aria-label="Aliases">
        <table class="list">
          <caption class="sr-only">Aliases with the versions they route invocations to</caption>
          <thead>
            <tr>
              <th scope="col">Alias</th>
              <th scope="col">Routes to</th>
              <th scope="col">Description</th>
              <th scope="col" class="num">
                Revision
              </th>
            </tr>
          </thead>
          <tbody>
            {data.map((a) => (
              <tr data-alias={a.name}>
                <td class="mono">{a.name}</td>
                <td>
                  <ul class="plain">
                    {routing(a).map(([v, w]) => (
                      <li>
                        version {v}: {share(w)}
                      </li>
                    ))}
                  </ul>
                </td>
                <td>{text(a.description)}</td>
                <td class="num">{a.revision}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    ),
});

/** What differs between a version and the one before it. */
export function changes(v: FunctionVersion, previous: FunctionVersion | undefined): string[] {
  if (!previous) return ['first version'];
  const out: string[] = [];
  for (const [k, label, show] of SETTINGS) {
    if (JSON.stringify(v[k]) === JSON.stringify(previous[k])) continue;
    // environment: which names changed, never the values
    if (k === 'environment') out.push(`${label}: ${names(previous[k])} → ${names(v[k])}${names(previous[k]) === names(v[k]) ? ' (values changed)' : ''}`);
    else out.push(`${label}: ${show(previous[k])} → ${show(v[k])}`);
  }
  return out.length ? out : ['no configuration change'];
}

interface VersionsData {
  versions: FunctionVersion[];
  published: Map<number, PublishedVersion>;
  aliases: Alias[];
}

const versionsSection = section<VersionsData>({
  id: 'versions',
  title: 'Versions',
  load: async (ctx, input) => {
    const [versions, published, aliases] = await Promise.all([input.versions, ctx.reads.publishedVersions(input.name), input.aliases]);
    return { versions, published: new Map(published.map((p) => [p.version, p])), aliases };
  },
  view: ({ data }) => {
    const { versions, published, aliases } = data;
    return (
      <div class="table-wrap" tabindex={0} role="region" aria-label="Versions">
        <table class="list">
          <caption class="sr-only">Versions, newest first: code, whether published, aliases, and what changed in each</caption>
          <thead>
            <tr>
              <th scope="col" class="num">
                Version
              </th>
              <th scope="col">Created</th>
              <th scope="col">Code (SHA-256)</th>
              <th scope="col">Published</th>
              <th scope="col">Aliases</th>
              <th scope="col">Changes from the version before</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((v, i) => {
              const p = published.get(v.version);
              const pointing = aliases.filter((a) => routing(a).some(([n, w]) => n === v.version && w > 0));
              return (
                <tr data-version={String(v.version)}>
                  <td class="num">{v.version}</td>
                  <td>
                    <Time at={new Date(v.createdAt).toISOString()} />
                  </td>
                  <td class="mono hash">{v.codeSha256 ?? (v.codeHash ? `file ${v.codeHash}` : '—')}</td>
                  <td class="published">
                    {p ? (
                      <>
                        <Time at={new Date(p.publishedAt).toISOString()} />
                        {p.description ? <div>{p.description}</div> : null}
                      </>
                    ) : (
                      <span class="muted">no</span>
                    )}
                  </td>
                  <td>
                    {pointing.length
                      ? pointing.map((a) => (
                          <div class="mono">
                            {a.name} ({share((routing(a).find(([n]) => n === v.version) as [number, number])[1])})
                          </div>
                        ))
                      : '—'}
                  </td>
                  <td class="changes">
                    <ul class="plain">
                      {changes(v, versions[i + 1]).map((c) => (
                        <li>{c}</li>
                      ))}
                    </ul>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {versions.length >= 100 ? <p class="hint">The newest 100 versions.</p> : null}
      </div>
    );
  },
});

interface ScheduleRow {
  name: string;
  groupName: string;
  description: string | null;
  expression: string;
  timezone: string;
  state: string;
  targetQualifier: string | null;
  nextFireAt: string | null;
}

/** Schedules a read looks through for the ones that target the function (the API lists at most 1,000). */
const SCHEDULES_READ = 1_000;

const schedulesSection = section<{ schedules: ScheduleRow[]; all: number }>({
  id: 'schedules',
  title: 'Schedules',
  load: async (ctx, input) => {
    const r = await ctx.gql<{ schedules: (ScheduleRow & { targetFunction: string })[] }>(
      `query ConsoleFunctionSchedules($first: Int) { schedules(first: $first) { name groupName description expression timezone state targetFunction targetQualifier nextFireAt } }`,
      { first: SCHEDULES_READ },
    );
    return { schedules: r.schedules.filter((s) => s.targetFunction === input.name), all: r.schedules.length };
  },
  view: ({ data }) => (
    <>
      {data.schedules.length === 0 ? (
        <p>No schedule invokes this function.</p>
      ) : (
        <div class="table-wrap" tabindex={0} role="region" aria-label="Schedules">
          <table class="list">
            <caption class="sr-only">Schedules that invoke this function</caption>
            <thead>
              <tr>
                <th scope="col">Schedule</th>
                <th scope="col">Expression</th>
                <th scope="col">State</th>
                <th scope="col">Next tick</th>
                <th scope="col">Description</th>
              </tr>
            </thead>
            <tbody>
              {data.schedules.map((s) => (
                <tr data-schedule={`${s.groupName}/${s.name}`}>
                  <td class="mono">
                    {s.groupName}/{s.name}
                    {s.targetQualifier ? `, version ${s.targetQualifier}` : ''}
                  </td>
                  <td class="mono">
                    {s.expression} <span class="muted">({s.timezone})</span>
                  </td>
                  <td>{s.state.toLowerCase()}</td>
                  <td>{s.state === 'ENABLED' ? <Time at={s.nextFireAt} /> : <span class="muted">—</span>}</td>
                  <td>{text(s.description)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {data.all >= SCHEDULES_READ ? <p class="hint">Looked through the first {count(SCHEDULES_READ)} schedules only.</p> : null}
    </>
  ),
});

interface Mapping {
  id: string;
  queueName: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  reportBatchItemFailures: boolean;
  maximumConcurrency: number | null;
  enabled: boolean;
}

const mappingsSection = section<{ eventSourceMappings: Mapping[]; brokerEventSourceMappings: BrokerMappingRow[] }>({
  id: 'mappings',
  title: 'Event source mappings',
  load: (ctx, input) =>
    ctx.gql(
      `query ConsoleFunctionMappings($name: String!) {
        eventSourceMappings(functionName: $name) { id queueName batchSize maxBatchingWindowMs reportBatchItemFailures maximumConcurrency enabled }
        brokerEventSourceMappings(functionName: $name) { ${BROKER_MAPPING_FIELDS} } }`,
      { name: input.name },
    ),
  view: ({ data }) =>
    data.eventSourceMappings.length + data.brokerEventSourceMappings.length === 0 ? (
      <p>No queue or broker delivers to this function.</p>
    ) : (
      <ul class="plain">
        {data.eventSourceMappings.map((m) => (
          <li>
            From queue <a href={`/console/queues#queue-${m.queueName}`}>{m.queueName}</a>: batches of up to {m.batchSize}
            {m.maxBatchingWindowMs ? `, gathered for up to ${ms(m.maxBatchingWindowMs)}` : ''}
            {m.maximumConcurrency ? `, at most ${m.maximumConcurrency} at once` : ''}, {m.enabled ? 'enabled' : 'disabled'}
          </li>
        ))}
        {data.brokerEventSourceMappings.map((m) => (
          <li>
            From {brokerSource(m)}: batches of up to {m.batchSize}, {m.enabled ? 'enabled' : 'disabled'}, {m.state.toLowerCase()}
            {m.lag !== null ? `, ${count(m.lag)} waiting` : ''} (<a href="/console/queues">queues & mappings</a>)
          </li>
        ))}
      </ul>
    ),
});

interface ChangeRow {
  position: string;
  resourceType: string;
  resourceName: string;
  seq: number;
  action: string;
  actor: string;
  requestId: string | null;
  data: Record<string, unknown>;
  occurredAt: string;
}

const HISTORY_SHOWN = 50;

/** A recorded value, short: environment variables by name only, long values cut. */
function recorded(key: string, v: unknown): string {
  if (key === 'environment') return `{${names(v)}}`;
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s === undefined ? '—' : s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** What a change's data says, one line per fact: before → after of each setting, then the rest. */
export function describeChange(data: Record<string, unknown>): string[] {
  const out: string[] = [];
  const before = (data.before ?? null) as Record<string, unknown> | null;
  const after = (data.after ?? null) as Record<string, unknown> | null;
  if (before && after) {
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
      const changed = k === 'environment' && names(before[k]) === names(after[k]) ? ' (values changed)' : '';
      out.push(`${k}: ${recorded(k, before[k])} → ${recorded(k, after[k])}${changed}`);
    }
  } else if (after) {
    // a creation: what was set (unset settings say nothing)
    for (const [k, v] of Object.entries(after)) if (v !== null && v !== '') out.push(`${k}: ${recorded(k, v)}`);
  } else if (before) {
    out.push(`was ${Object.entries(before).map(([k, v]) => `${k}: ${recorded(k, v)}`).join(', ')}`);
  }
  const shown = new Set(['before', 'after', ...Object.keys(after ?? {})]);
  for (const [k, v] of Object.entries(data)) {
    if (!shown.has(k)) out.push(`${k}: ${recorded(k, v)}`);
  }
  return out;
}

const historySection = section<{ functionHistory: ChangeRow[] }>({
  id: 'history',
  title: 'Change history',
  load: (ctx, input) =>
    ctx.gql(
      `query ConsoleFunctionHistory($name: String!, $first: Int) {
        functionHistory(name: $name, first: $first) { position resourceType resourceName seq action actor requestId data occurredAt } }`,
      { name: input.name, first: HISTORY_SHOWN },
    ),
  view: ({ data }) =>
    data.functionHistory.length === 0 ? (
      <p>No change is recorded for this function.</p>
    ) : (
      <>
        <ol class="plain history">
          {data.functionHistory.map((c) => (
            <li data-change={c.position} data-action={c.action}>
              <p>
                <Time at={c.occurredAt} /> <strong>{c.action.replace(/_/g, ' ')}</strong>{' '}
                {c.resourceType === 'alias' ? (
                  <>
                    alias <span class="mono">{c.resourceName.slice(c.resourceName.indexOf(':') + 1)}</span>
                  </>
                ) : (
                  'function'
                )}{' '}
                (revision {c.seq}) by <span class="mono">{c.actor}</span>
                {c.requestId ? <span class="muted small"> request {c.requestId}</span> : null}
              </p>
              <ul class="change-data">
                {describeChange(c.data).map((line) => (
                  <li>{line}</li>
                ))}
              </ul>
            </li>
          ))}
        </ol>
        {data.functionHistory.length >= HISTORY_SHOWN ? (
          <p class="hint">
            The newest {HISTORY_SHOWN} changes; the whole history: <code>functionHistory</code> in GraphQL, or <code>audit.changes</code>.
          </p>
        ) : null}
      </>
    ),
});

/** The sections of a function's page, in order. */
export const FUNCTION_SECTIONS: FunctionSection<unknown>[] = [
  configSection,
  activitySection,
  aliasesSection,
  versionsSection,
  schedulesSection,
  mappingsSection,
  historySection,
];

export async function functionPage(ctx: PageContext, name: string) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title={name} nav="functions">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const until = new Date();
  const since = new Date(until.getTime() - 86_400_000);
  const versions = ctx.reads.versions(name);
  const aliases = versions.then((v) => (v.length > 0 ? ctx.reads.aliases(name) : []));
  // read once for several sections; a failure shows in each section that needs them
  versions.catch(() => undefined);
  aliases.catch(() => undefined);
  const input: SectionInput = { name, since, until, versions, aliases };
  // each section loads on its own: one failing section does not blank the page
  const results = await Promise.all(
    FUNCTION_SECTIONS.map(async (s) => {
      try {
        return { data: await s.load(ctx, input), error: null };
      } catch (e) {
        return { data: null, error: e };
      }
    }),
  );
  const found = await versions.then(
    (v) => v.length > 0,
    () => true, // could not tell: the sections say what failed
  );
  if (!found) {
    return (
      <Layout ctx={ctx} title="Function not found" nav="functions">
        <p>
          No function is named <code>{name}</code>. <a href="/console/functions">All functions</a>
        </p>
      </Layout>
    );
  }
  return (
    <Layout ctx={ctx} title={`Function ${name}`} nav="functions">
      <nav class="tabs" aria-label="Sections">
        {FUNCTION_SECTIONS.map((s) => (
          <a href={`#${s.id}`}>{s.title}</a>
        ))}
      </nav>
      {FUNCTION_SECTIONS.map((s, i) => {
        const r = results[i] as { data: unknown; error: unknown };
        const View = s.view as FC<{ data: unknown; name: string }>;
        return (
          <section aria-labelledby={`${s.id}-heading`} id={s.id}>
            <h2 id={`${s.id}-heading`}>{s.title}</h2>
            {r.error ? <ErrorNote error={r.error} what={s.title.toLowerCase()} /> : <View data={r.data} name={name} />}
          </section>
        );
      })}
    </Layout>
  );
}
