// Overview: what happened over the last hour, day or week (invocations per minute, error
// rate, attempt duration percentiles, dead letters), in total and per function, as charts
// drawn by uPlot in the browser from the numbers in the page; and what is happening now
// (running attempts, the oldest due invocation, queue lag behind each mapping).
//
// Each chart is an entry of CHARTS (a title, a unit and how to read a point), so a later
// series (stream lag) is one more entry. Throttles (reasonCharts) are the counts every
// process adds to ledger.throttle_counts (a throttle writes no event;
// docs/observability.md#throttles) plus the dead letters ZeroReservedConcurrency; dead
// letters by reason come from the dead_lettered events.
import type { FC } from 'hono/jsx';
import { DEAD_LETTER_REASONS } from '../../../db/lifecycle.ts';
import type { DeadLetterReasonPoint } from '../../../db/monitoring.ts';
import type { ThrottlePoint } from '../../../db/throttles.ts';
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count, seconds, shortId } from '../views/format.ts';
import { ApiError } from '../api.ts';
import { BROKER_MAPPING_FIELDS, brokerSource, STREAM_FIELDS, streamLag, type BrokerMappingRow, type StreamRow } from './queues.tsx';
import { ErrorNote, Layout, NotAllowed, Time, withQuery } from '../views/ui.tsx';

export const RANGES: Record<string, { label: string; seconds: number; bucket: number; refresh: string | null }> = {
  hour: { label: 'Last hour', seconds: 3_600, bucket: 60, refresh: 'every 60s' },
  day: { label: 'Last day', seconds: 86_400, bucket: 900, refresh: null },
  week: { label: 'Last week', seconds: 604_800, bucket: 7_200, refresh: null },
};

/** Series drawn per chart when no function is chosen: the total and the busiest few. */
const TOP_FUNCTIONS = 5;

interface Point {
  start: string;
  accepted: number;
  succeeded: number;
  failedAttempts: number;
  deadLettered: number;
  errorRate: number | null;
  p50DurationMs?: number | null;
  p95DurationMs?: number | null;
  p99DurationMs?: number | null;
}

interface Series {
  functionName: string | null;
  points: Point[];
}

interface Stats {
  since: string;
  until: string;
  bucketSeconds: number;
  total: Series;
  functions: Series[];
}

const POINT = 'start accepted succeeded failedAttempts deadLettered errorRate';
const STATS_QUERY = /* GraphQL */ `
  query ConsoleOverview($since: DateTime!, $until: DateTime!, $bucket: Int!, $fn: String) {
    invocationStats(since: $since, until: $until, bucketSeconds: $bucket, functionName: $fn) {
      since until bucketSeconds
      total { functionName points { ${POINT} p50DurationMs p95DurationMs p99DurationMs } }
      functions { functionName points { ${POINT} } }
    }
  }
`;

/** What console.js hands to uPlot: x in unix seconds, one array per series. */
export interface ChartData {
  id: string;
  title: string;
  unit: string;
  x: number[];
  series: { label: string; values: (number | null)[] }[];
}

interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  /** the series to draw: per function (total first) or the percentiles of the total */
  lines: 'per-function' | 'percentiles';
  value?: (p: Point, bucketSeconds: number) => number | null;
}

export const CHARTS: ChartSpec[] = [
  { id: 'rate', title: 'Invocations per minute', unit: '/min', lines: 'per-function', value: (p, b) => (p.accepted * 60) / b },
  { id: 'errors', title: 'Error rate (failed attempts / ended attempts)', unit: '%', lines: 'per-function', value: (p) => (p.errorRate === null ? null : p.errorRate * 100) },
  { id: 'duration', title: 'Attempt duration', unit: 'ms', lines: 'percentiles' },
  { id: 'dead-letters', title: 'Dead letters per bucket', unit: '', lines: 'per-function', value: (p) => p.deadLettered },
];

/** Every bucket start from since to until, so that quiet buckets are drawn as zero, not skipped. */
function axis(stats: Pick<Stats, 'since' | 'until' | 'bucketSeconds'>): number[] {
  const since = Date.parse(stats.since) / 1000;
  const until = Date.parse(stats.until) / 1000;
  const x: number[] = [];
  for (let t = since; t < until; t += stats.bucketSeconds) x.push(t);
  return x;
}

/** The reason a throttle is recorded by: a function with reservedConcurrency 0 dead-letters what it is sent. */
export const THROTTLE_REASON = 'ZeroReservedConcurrency';

/**
 * Two charts: throttles per function (sync 429s and async invocations held back, from
 * ledger.throttle_counts, and invocations dead-lettered as ZeroReservedConcurrency; total
 * first, then the functions that had any), and every dead letter by reason.
 */
export function reasonCharts(
  range: Pick<Stats, 'since' | 'until' | 'bucketSeconds'>,
  points: DeadLetterReasonPoint[],
  throttled: ThrottlePoint[],
  chosen: string | null,
): ChartData[] {
  const x = axis(range);
  const index = new Map(x.map((t, i) => [t, i]));
  const zeros = () => x.map(() => 0 as number | null);
  const add = (values: (number | null)[], p: { start: Date; count: number }) => {
    const i = index.get(p.start.getTime() / 1000);
    if (i !== undefined) values[i] = (values[i] ?? 0) + p.count;
  };
  const throttles = [...throttled, ...points.filter((p) => p.reason === THROTTLE_REASON)];
  const total = zeros();
  const perFunction = new Map<string, (number | null)[]>();
  for (const p of throttles) {
    add(total, p);
    let v = perFunction.get(p.functionName);
    if (!v) perFunction.set(p.functionName, (v = zeros()));
    add(v, p);
  }
  const busiest = [...perFunction.entries()]
    .map(([name, values]) => ({ name, values, n: values.reduce<number>((a, b) => a + (b ?? 0), 0) }))
    .sort((a, b) => b.n - a.n || a.name.localeCompare(b.name))
    .slice(0, TOP_FUNCTIONS);
  const byReason = DEAD_LETTER_REASONS.map((reason) => {
    const values = zeros();
    for (const p of points) if (p.reason === reason) add(values, p);
    return { label: reason, values };
  });
  return [
    {
      id: 'throttles',
      title: `Throttles: 429s, invocations held back, and dead letters ${THROTTLE_REASON}${chosen ? ` of ${chosen}` : ''}`,
      unit: '',
      x,
      series: chosen
        ? [{ label: chosen, values: total }]
        : [{ label: 'all functions', values: total }, ...busiest.map((b) => ({ label: b.name, values: b.values }))],
    },
    { id: 'dead-letter-reasons', title: `Dead letters by reason${chosen ? ` of ${chosen}` : ''}`, unit: '', x, series: byReason },
  ];
}

function column(x: number[], points: Point[], read: (p: Point) => number | null, empty: number | null): (number | null)[] {
  const at = new Map(points.map((p) => [Date.parse(p.start) / 1000, p]));
  return x.map((t) => {
    const p = at.get(t);
    return p ? read(p) : empty;
  });
}

export function chartData(stats: Stats, chosen: string | null): ChartData[] {
  const x = axis(stats);
  return CHARTS.map((spec) => {
    if (spec.lines === 'percentiles') {
      const pick = (k: 'p50DurationMs' | 'p95DurationMs' | 'p99DurationMs') => column(x, stats.total.points, (p) => p[k] ?? null, null);
      return {
        id: spec.id,
        title: `${spec.title}${chosen ? ` of ${chosen}` : ''}`,
        unit: spec.unit,
        x,
        series: [
          { label: 'p50', values: pick('p50DurationMs') },
          { label: 'p95', values: pick('p95DurationMs') },
          { label: 'p99', values: pick('p99DurationMs') },
        ],
      };
    }
    const value = (p: Point) => (spec.value as NonNullable<ChartSpec['value']>)(p, stats.bucketSeconds);
    // a rate of nothing is a gap, a count of nothing is zero
    const empty = spec.id === 'errors' ? null : 0;
    const series = chosen
      ? [{ label: chosen, values: column(x, stats.total.points, value, empty) }]
      : [
          { label: 'all functions', values: column(x, stats.total.points, value, empty) },
          ...stats.functions.slice(0, TOP_FUNCTIONS).map((s) => ({ label: s.functionName as string, values: column(x, s.points, value, empty) })),
        ];
    return { id: spec.id, title: spec.title, unit: spec.unit, x, series };
  });
}

const fmt = (v: number | null, unit: string) => (v === null ? '—' : `${Math.round(v * 100) / 100}${unit && unit !== '/min' ? ` ${unit}` : ''}`);

export const Chart: FC<{ chart: ChartData }> = ({ chart }) => (
  <figure class="chart" data-chart={chart.id} aria-labelledby={`chart-${chart.id}-title`}>
    <figcaption id={`chart-${chart.id}-title`}>
      {chart.title}
      {chart.unit ? <span class="muted"> ({chart.unit})</span> : null}
    </figcaption>
    {/* the numbers travel in an attribute: escaped by JSX, decoded by the HTML parser */}
    <div class="chart-canvas" aria-hidden="true" data-chart-data={JSON.stringify(chart)}></div>
    <details class="chart-table">
      <summary>Numbers of this chart</summary>
      <div class="table-wrap" tabindex={0} role="region" aria-label={`${chart.title}: numbers`}>
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Bucket (UTC)</th>
              {chart.series.map((s) => (
                <th scope="col" class="num">
                  {s.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {chart.x.map((t, i) =>
              chart.series.some((s) => s.values[i] !== null && s.values[i] !== 0) ? (
                <tr>
                  <td>
                    <Time at={new Date(t * 1000).toISOString()} />
                  </td>
                  {chart.series.map((s) => (
                    <td class="num">{fmt(s.values[i] ?? null, chart.unit)}</td>
                  ))}
                </tr>
              ) : null,
            )}
          </tbody>
        </table>
      </div>
    </details>
  </figure>
);

function rangeOf(url: URL): { key: string; range: (typeof RANGES)[string]; fn: string | null } {
  const key = RANGES[url.searchParams.get('range') ?? ''] ? (url.searchParams.get('range') as string) : 'hour';
  return { key, range: RANGES[key] as (typeof RANGES)[string], fn: url.searchParams.get('fn')?.trim() || null };
}

const chartsUrl = (key: string, fn: string | null) => `/console/charts?range=${key}${fn ? `&fn=${encodeURIComponent(fn)}` : ''}`;

/**
 * The charts of a range: served alone at /console/charts, which the overview loads after
 * it has shown (a week of a large ledger takes a while to count), or inline without scripts.
 */
export async function chartsFragment(ctx: PageContext) {
  const { key, range, fn } = rangeOf(ctx.url);
  // whole buckets, the last one ending at the next bucket boundary after now
  const until = new Date(Math.ceil(Date.now() / (range.bucket * 1000)) * range.bucket * 1000);
  const since = new Date(until.getTime() - range.seconds * 1000);
  let stats: Stats | null = null;
  let reasons: DeadLetterReasonPoint[] = [];
  let throttled: ThrottlePoint[] = [];
  let failure: unknown = null;
  try {
    // the dead letters are read from db/ (no GraphQL field yet), so the scope is checked here
    if (!can(ctx.session, 'audit')) throw new ApiError('Forbidden', 'The statistics need a key with the audit scope.', [], null);
    const [r, byReason, throttleCounts] = await Promise.all([
      ctx.gql<{ invocationStats: Stats }>(STATS_QUERY, { since: since.toISOString(), until: until.toISOString(), bucket: range.bucket, fn }),
      ctx.reads.deadLettersByReason({ since, until, bucketSeconds: range.bucket, functionName: fn }),
      ctx.reads.throttles({ since, until, bucketSeconds: range.bucket, functionName: fn }),
    ]);
    stats = r.invocationStats;
    reasons = byReason;
    throttled = throttleCounts;
  } catch (e) {
    failure = e;
  }
  return (
    <div
      id="charts"
      class="charts"
      aria-busy="false"
      {...(range.refresh ? { 'hx-get': chartsUrl(key, fn), 'hx-trigger': range.refresh, 'hx-swap': 'outerHTML' } : {})}
    >
      {failure ? <ErrorNote error={failure} what="the statistics" /> : null}
      {stats ? [...chartData(stats, fn), ...reasonCharts(stats, reasons, throttled, fn)].map((c) => <Chart chart={c} />) : null}
    </div>
  );
}

export async function overviewPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Overview" nav="overview">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const { key: rangeKey, range, fn } = rangeOf(ctx.url);
  const inline = ctx.url.searchParams.get('charts') === 'inline';
  let functions: string[] = [];
  try {
    functions = (await ctx.gql<{ functions: { name: string }[] }>('query ConsoleFunctionNames { functions { name } }')).functions.map((f) => f.name);
  } catch {
    // the charts fragment reports what went wrong
  }
  const [now$, charts$] = await Promise.all([nowPanel(ctx), inline ? chartsFragment(ctx) : null]);
  return (
    <Layout ctx={ctx} title="Overview" nav="overview">
      {now$}
      <section aria-labelledby="charts-heading">
        <h2 id="charts-heading">
          {range.label}
          {fn ? ` of ${fn}` : ''}
        </h2>
        <div class="toolbar">
          <nav class="tabs" aria-label="Range">
            {Object.entries(RANGES).map(([k, r]) => (
              <a href={withQuery(ctx.url, { range: k })} aria-current={k === rangeKey ? 'page' : undefined}>
                {r.label}
              </a>
            ))}
          </nav>
          <form method="get" action="/console/" class="inline">
            <input type="hidden" name="range" value={rangeKey} />
            <label for="f-fn">Function</label>{' '}
            <select id="f-fn" name="fn">
              <option value="">all, busiest {TOP_FUNCTIONS} drawn</option>
              {functions.map((f) => (
                <option value={f} selected={f === fn}>
                  {f}
                </option>
              ))}
            </select>{' '}
            <button type="submit">Show</button>
          </form>
        </div>
        {charts$ ?? (
          <div id="charts" class="charts" aria-busy="true" hx-get={chartsUrl(rangeKey, fn)} hx-trigger="load" hx-swap="outerHTML">
            <p class="hint">
              Counting the {range.label.toLowerCase()}… <a href={withQuery(ctx.url, { charts: 'inline' })}>(without scripts: show the numbers)</a>
            </p>
          </div>
        )}
        <p class="hint">
          Buckets of {seconds(range.bucket)}. Invocations count when accepted; attempts (their errors and durations) when they end. A throttle
          writes no event (a synchronous 429, or an asynchronous invocation held back by its function's reserved concurrency): every process adds
          the throttles it counted to a shared count about every ten seconds, which the throttles chart draws with the invocations dead-lettered
          because their function's reserved concurrency is 0. Invocations held back until they grew too old are dead-lettered as EventAgeExceeded
          (dead letters by reason).
        </p>
      </section>
    </Layout>
  );
}

interface NowData {
  activity: {
    at: string;
    runningAttempts: number;
    dueInvocations: number;
    scheduledInvocations: number;
    oldestDue: { invocationId: string; functionName: string; dueSince: string; waitingSeconds: number } | null;
  };
  deadLetterGroups: { count: number }[];
  queues: {
    name: string;
    approximateNumberOfMessages: number;
    approximateNumberOfMessagesNotVisible: number;
    approximateAgeOfOldestMessageSeconds: number | null;
    eventSourceMappings: { id: string; functionName: string; enabled: boolean }[];
  }[];
  brokerEventSourceMappings: BrokerMappingRow[];
  streams: StreamRow[];
}

const NOW_QUERY = /* GraphQL */ `
  query ConsoleNow {
    activity { at runningAttempts dueInvocations scheduledInvocations oldestDue { invocationId functionName dueSince waitingSeconds } }
    deadLetterGroups { count }
    queues { name approximateNumberOfMessages approximateNumberOfMessagesNotVisible approximateAgeOfOldestMessageSeconds
      eventSourceMappings { id functionName enabled } }
    brokerEventSourceMappings { ${BROKER_MAPPING_FIELDS} }
    streams { ${STREAM_FIELDS} }
  }
`;

/** The "now" panel; also served alone at /console/now, which the page polls. */
export async function nowPanel(ctx: PageContext) {
  let d: NowData | null = null;
  let failure: unknown = null;
  try {
    d = await ctx.gql<NowData>(NOW_QUERY);
  } catch (e) {
    failure = e;
  }
  const mappings = (d?.queues ?? []).flatMap((q) => q.eventSourceMappings.map((m) => ({ ...m, q })));
  const brokers = d?.brokerEventSourceMappings ?? [];
  const streamMappings = (d?.streams ?? []).flatMap((s) => s.eventSourceMappings.map((m) => ({ ...m, s, lag: streamLag(s, m) })));
  const deadLetters = (d?.deadLetterGroups ?? []).reduce((n, g) => n + g.count, 0);
  return (
    <section id="now" aria-labelledby="now-heading" hx-get="/console/now" hx-trigger="every 5s" hx-swap="outerHTML">
      <h2 id="now-heading">Now</h2>
      {failure ? <ErrorNote error={failure} what="current activity" /> : null}
      {d ? (
        <>
          <dl class="tiles">
            <div>
              <dt>Running attempts</dt>
              <dd>{count(d.activity.runningAttempts)}</dd>
            </div>
            <div>
              <dt>Due, waiting for a worker</dt>
              <dd>{count(d.activity.dueInvocations)}</dd>
            </div>
            <div>
              <dt>Waiting for a retry</dt>
              <dd>{count(d.activity.scheduledInvocations)}</dd>
            </div>
            <div>
              <dt>Oldest due invocation</dt>
              <dd>
                {d.activity.oldestDue ? (
                  <>
                    <a href={`/console/invocations/${d.activity.oldestDue.invocationId}`} class="mono">
                      {shortId(d.activity.oldestDue.invocationId)}
                    </a>{' '}
                    <span class="small">
                      ({d.activity.oldestDue.functionName}), waiting {seconds(d.activity.oldestDue.waitingSeconds)}
                    </span>
                  </>
                ) : (
                  'none'
                )}
              </dd>
            </div>
            <div>
              <dt>Dead letters</dt>
              <dd>
                <a href="/console/dead-letters">{count(deadLetters)}</a>
              </dd>
            </div>
          </dl>
          {mappings.length + brokers.length + streamMappings.length > 0 ? (
            <div class="table-wrap" tabindex={0} role="region" aria-label="Mapping and stream lag">
              <table class="list">
                <caption>Mapping and stream lag</caption>
                <thead>
                  <tr>
                    <th scope="col">Queue or stream → function</th>
                    <th scope="col">State</th>
                    <th scope="col" class="num">
                      Waiting
                    </th>
                    <th scope="col" class="num">
                      In flight
                    </th>
                    <th scope="col" class="num">
                      Oldest message
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {mappings.map((m) => (
                    <tr>
                      <td>
                        <a href={`/console/queues#queue-${m.q.name}`}>{m.q.name}</a> → {m.functionName}
                      </td>
                      <td>{m.enabled ? 'enabled' : 'disabled'}</td>
                      <td class="num">{count(m.q.approximateNumberOfMessages)}</td>
                      <td class="num">{count(m.q.approximateNumberOfMessagesNotVisible)}</td>
                      <td class="num">{seconds(m.q.approximateAgeOfOldestMessageSeconds)}</td>
                    </tr>
                  ))}
                  {streamMappings.map((m) => (
                    <tr data-stream-mapping={m.id}>
                      <td>
                        <a href={`/console/queues#stream-${m.s.name}`}>stream {m.s.name}</a> → {m.functionName}
                      </td>
                      <td>{m.enabled ? 'enabled' : 'disabled'}</td>
                      <td class="num">{m.lag.total === null ? 'unknown' : count(m.lag.total)}</td>
                      <td class="num">—</td>
                      <td class="num">—</td>
                    </tr>
                  ))}
                  {brokers.map((m) => (
                    <tr>
                      <td>
                        <a href="/console/queues#broker-mappings">{brokerSource(m)}</a> → {m.functionName}
                      </td>
                      <td>
                        {m.enabled ? 'enabled' : 'disabled'}, {m.state.toLowerCase()}
                      </td>
                      <td class="num">{m.lag === null ? 'unknown' : count(m.lag)}</td>
                      <td class="num">—</td>
                      <td class="num">—</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
          <p class="hint">
            As of <Time at={d.activity.at} />.
          </p>
        </>
      ) : null}
    </section>
  );
}
