// @ts-check
// What the console's pages do in the browser, on top of working without it: draw the
// charts (uPlot), keep live regions current from the ledger feed (/console/live, the
// GraphQL subscription over SSE; htmx swaps the re-rendered region in), and select-all.
// Served as is (no build step); checked by `npm run typecheck` (tsconfig.json here).
import htmx from 'htmx.org';
import uPlot from 'uplot';

// ---------------------------------------------------------------------------------
// charts

/**
 * @typedef {{ id: string, title: string, unit: string, x: number[], series: { label: string, values: (number | null)[] }[] }} ChartData
 */

/** Distinguishable on white (≥ 3:1), and told apart by dash as well as colour. */
const COLOURS = ['#1f2937', '#1d4ed8', '#b45309', '#b91c1c', '#047857', '#6d28d9'];
const DASHES = [[], [], [6, 3], [2, 3], [10, 4], [4, 2, 1, 2]];

/** @type {WeakMap<Element, uPlot>} */
const plots = new WeakMap();

/** @param {number | null} v @param {string} unit */
function formatValue(v, unit) {
  if (v === null || v === undefined) return '—';
  const rounded = Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100;
  return unit === '%' ? `${rounded} %` : unit === 'ms' ? `${rounded} ms` : String(rounded);
}

/** @param {number} t unix seconds @param {boolean} withDate */
function utcLabel(t, withDate) {
  const iso = new Date(t * 1000).toISOString();
  return withDate ? `${iso.slice(11, 16)}\n${iso.slice(5, 10)}` : iso.slice(11, 16);
}

/**
 * Points only where a value stands alone (no neighbour to draw a line to), so a single
 * bucket with data is still seen.
 * @param {uPlot} u @param {number} si
 */
function lonelyPoints(u, si) {
  const d = /** @type {(number | null | undefined)[]} */ (u.data[si]);
  /** @type {number[]} */
  const out = [];
  for (let i = 0; i < d.length; i++) if (d[i] != null && d[i - 1] == null && d[i + 1] == null) out.push(i);
  return out;
}

/** @param {HTMLElement} el */
function drawChart(el) {
  if (plots.has(el)) return;
  /** @type {ChartData} */
  const chart = JSON.parse(el.dataset.chartData ?? 'null');
  if (!chart) return;
  const width = Math.max(240, el.clientWidth);
  const withDate = (chart.x.at(-1) ?? 0) - (chart.x[0] ?? 0) > 86_400 / 2;
  /** @type {uPlot.Options} */
  const options = {
    width,
    height: 220,
    // ticks on UTC boundaries, as the labels are UTC
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: {
      x: { time: true },
      y: { range: (_u, min, max) => (chart.unit === '%' ? [0, 100] : [Math.min(0, min ?? 0), Math.max(1, (max ?? 1) * 1.1)]) },
    },
    series: [
      { label: 'UTC', value: (_u, v) => (v === null || v === undefined ? '—' : new Date(v * 1000).toISOString().slice(0, 16).replace('T', ' ')) },
      ...chart.series.map((s, i) => ({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        width: i === 0 ? 2 : 1.5,
        dash: DASHES[i % DASHES.length],
        points: { show: true, size: 6, filter: lonelyPoints },
        /** @type {(u: uPlot, v: number | null) => string} */
        value: (_u, v) => formatValue(v, chart.unit),
      })),
    ],
    axes: [
      { space: 60, values: (_u, splits) => splits.map((t) => utcLabel(t, withDate)) },
      { size: 56, values: (_u, vals) => vals.map((v) => formatValue(v, chart.unit)) },
    ],
    legend: { live: true },
    cursor: { focus: { prox: 16 } },
  };
  const plot = new uPlot(options, /** @type {uPlot.AlignedData} */ ([chart.x, ...chart.series.map((s) => s.values)]), el);
  plots.set(el, plot);
  new ResizeObserver(() => plot.setSize({ width: Math.max(240, el.clientWidth), height: 220 })).observe(el);
}

/** @param {ParentNode} root */
function drawCharts(root) {
  root.querySelectorAll('[data-chart-data]').forEach((el) => drawChart(/** @type {HTMLElement} */ (el)));
}

// ---------------------------------------------------------------------------------
// select all

/** @param {ParentNode} root */
function wireSelectAll(root) {
  root.querySelectorAll('input[data-select-all]').forEach((el) => {
    const all = /** @type {HTMLInputElement} */ (el);
    if (all.dataset.wired) return;
    all.dataset.wired = 'yes';
    all.hidden = false;
    const boxes = () => /** @type {HTMLInputElement[]} */ ([...document.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`)]);
    all.addEventListener('change', () => boxes().forEach((b) => (b.checked = all.checked)));
  });
}

// ---------------------------------------------------------------------------------
// live regions

/**
 * @typedef {{ invocationId: string, functionName: string, seq: number, type: string }} FeedEvent
 * @typedef {{ timer: number | null, running: boolean, dirty: boolean, last: number }} RefreshState
 */

/** Refreshes of one region are at least this far apart; events in between make one more. */
const MIN_INTERVAL_MS = 1000;
/** @type {Map<string, RefreshState>} */
const refreshes = new Map();

/** @param {HTMLElement} region @param {FeedEvent} e */
function concerns(region, e) {
  const types = region.dataset.liveTypes;
  if (types && !types.split(',').includes(e.type)) return false;
  const ids = region.dataset.liveIds;
  if (ids !== undefined && !ids.split(' ').includes(e.invocationId)) return false;
  // events the page was rendered with (a subscription to one invocation replays its past first)
  const seen = region.dataset.liveSeen;
  if (seen) {
    const [id, seq] = seen.split(':');
    if (id === e.invocationId && e.seq <= Number(seq)) return false;
  }
  return true;
}

/** @param {string} id */
function refresh(id) {
  let s = refreshes.get(id);
  if (!s) refreshes.set(id, (s = { timer: null, running: false, dirty: false, last: 0 }));
  const state = s;
  if (state.running) {
    state.dirty = true;
    return;
  }
  if (state.timer !== null) return;
  const wait = Math.max(150, state.last + MIN_INTERVAL_MS - Date.now());
  state.timer = window.setTimeout(async () => {
    state.timer = null;
    state.running = true;
    state.dirty = false;
    state.last = Date.now();
    const region = document.getElementById(id);
    try {
      if (region) {
        const src = region.dataset.liveSrc || `${location.pathname}${location.search}`;
        await htmx.ajax('get', src, { target: `#${id}`, select: `#${id}`, swap: 'outerHTML' });
      }
    } finally {
      state.running = false;
      if (state.dirty) refresh(id);
    }
  }, wait);
}

/** @param {string} text @param {'on' | 'off' | 'wait'} kind */
function showLiveState(text, kind) {
  const el = /** @type {HTMLElement | null} */ (document.querySelector('[data-live-state]'));
  if (!el) return;
  el.hidden = false;
  el.textContent = text;
  el.dataset.state = kind;
}

function startLive() {
  const url = document.body.dataset.liveUrl;
  if (!url) return;
  const source = new EventSource(url);
  showLiveState('Connecting to live updates…', 'wait');
  source.addEventListener('open', () => showLiveState('Live: updates as events are recorded.', 'on'));
  source.addEventListener('next', (msg) => {
    /** @type {{ data?: { invocationEvents?: FeedEvent }, errors?: { message: string }[] }} */
    const body = JSON.parse(/** @type {MessageEvent} */ (msg).data);
    const e = body.data?.invocationEvents;
    if (!e) {
      if (body.errors?.length) showLiveState(`Live updates: ${body.errors[0]?.message}`, 'off');
      return;
    }
    document.querySelectorAll('[data-live-region]').forEach((el) => {
      const region = /** @type {HTMLElement} */ (el);
      if (region.id && concerns(region, e)) refresh(region.id);
    });
  });
  source.addEventListener('error', () => {
    // EventSource reconnects by itself (with Last-Event-ID) unless the server refused it
    showLiveState(source.readyState === EventSource.CLOSED ? 'Live updates stopped: reload the page.' : 'Live updates: reconnecting…', source.readyState === EventSource.CLOSED ? 'off' : 'wait');
  });
  // leaving the page: close the stream instead of letting the browser abort it
  window.addEventListener('pagehide', () => source.close());
}

// ---------------------------------------------------------------------------------

function init() {
  drawCharts(document);
  wireSelectAll(document);
  startLive();
  // swapped-in content: both skip what they already handled
  document.body.addEventListener('htmx:afterSettle', () => {
    drawCharts(document);
    wireSelectAll(document);
  });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
