// The comparison of a replay run (docs/replay.md): each original beside its replay, and a
// summary by kind of difference. Pure: the caller reads both outcomes from the ledger.
//
// Results are compared structurally with microdiff (a maintained, dependency-free deep
// diff that yields one change per JSON path, which is exactly what the report shows);
// jsondiffpatch's delta format would need translating back into paths.
import diff from 'microdiff';

/** What one invocation ended with, as its events say. */
export interface ReplayOutcome {
  invocationId: string;
  version: number;
  /** the alias it was invoked through (a replay of a run whose target is an alias), else null */
  alias: string | null;
  status: string;
  /** true: succeeded; false: failed (or dead-lettered); null: not finished */
  ok: boolean | null;
  result: unknown;
  errorType: string | null;
  errorMessage: string | null;
  /** the handler's duration in the last attempt */
  durationMs: number | null;
}

export const DIFFERENCE_KINDS = [
  /** both succeeded with structurally equal results */
  'same',
  /** both succeeded, with different results */
  'changed',
  /** the original succeeded, the replay failed */
  'error_now',
  /** the original failed, the replay succeeded */
  'error_before',
  /** both failed with the same errorType */
  'same_error',
  /** both failed, with different errorTypes */
  'changed_error',
  /** the replay has not finished (or not started) yet */
  'pending',
] as const;
export type DifferenceKind = (typeof DIFFERENCE_KINDS)[number];

/** One difference between two results, at a JSON Pointer (RFC 6901) path; `/` is the whole result. */
export interface JsonChange {
  op: 'CREATE' | 'REMOVE' | 'CHANGE';
  path: string;
  before?: unknown;
  after?: unknown;
}

export interface ReplayPair {
  ordinal: number;
  payload: unknown;
  before: ReplayOutcome;
  after: ReplayOutcome | null;
  kind: DifferenceKind;
  /** for `changed`: every difference, by path */
  diff: JsonChange[];
  /** after − before, when both durations are known */
  durationChangeMs: number | null;
}

export interface KindSummary {
  kind: DifferenceKind;
  count: number;
  /** the worst few: most differences first for `changed`, else the largest slowdown */
  examples: ReplayPair[];
}

export interface DurationSummary {
  /** pairs with both durations */
  pairs: number;
  beforeMedianMs: number | null;
  afterMedianMs: number | null;
  /** median of after/before over pairs where before > 0 */
  medianRatio: number | null;
  /** the largest slowdowns (after − before), worst first */
  slowest: ReplayPair[];
}

/** The pairs whose replay ran one version (several when the target is a weighted alias). */
export interface VersionSummary {
  version: number;
  count: number;
  byKind: { kind: DifferenceKind; count: number }[];
}

export interface ReplaySummary {
  total: number;
  finished: number;
  byKind: KindSummary[];
  /** by the version each replay ran, lowest first (pairs not started yet are left out) */
  byVersion: VersionSummary[];
  durations: DurationSummary;
}

const escapePointer = (segment: string | number): string => String(segment).replaceAll('~', '~0').replaceAll('/', '~1');

/** JSON Pointer of a path: [] is "" (the whole document), shown as "/" for readability. */
export function pointer(path: readonly (string | number)[]): string {
  return path.length === 0 ? '/' : `/${path.map(escapePointer).join('/')}`;
}

const isContainer = (v: unknown): v is Record<string, unknown> | unknown[] => typeof v === 'object' && v !== null;

const byPath = new Intl.Collator('en', { numeric: true });

/**
 * The structural difference of two JSON values, sorted by path (so `/tags/2` before
 * `/tags/10`); empty when equal. Key order does not matter: the ledger stores jsonb,
 * which keeps its own key order.
 */
export function diffResults(before: unknown, after: unknown): JsonChange[] {
  // microdiff compares two containers of the same shape; anything else differs as a whole
  if (!isContainer(before) || !isContainer(after) || Array.isArray(before) !== Array.isArray(after)) {
    return Object.is(before, after) ? [] : [{ op: 'CHANGE', path: '/', before, after }];
  }
  return diff(before, after)
    .map((d): JsonChange => {
      const path = pointer(d.path);
      if (d.type === 'CREATE') return { op: 'CREATE', path, after: d.value };
      if (d.type === 'REMOVE') return { op: 'REMOVE', path, before: d.oldValue };
      return { op: 'CHANGE', path, before: d.oldValue, after: d.value };
    })
    .sort((a, b) => byPath.compare(a.path, b.path));
}

export function comparePair(ordinal: number, payload: unknown, before: ReplayOutcome, after: ReplayOutcome | null): ReplayPair {
  const durationChangeMs = after?.durationMs != null && before.durationMs != null ? round(after.durationMs - before.durationMs) : null;
  const pair = (kind: DifferenceKind, changes: JsonChange[] = []): ReplayPair => ({ ordinal, payload, before, after, kind, diff: changes, durationChangeMs });
  if (after === null || after.ok === null) return pair('pending');
  if (before.ok && after.ok) {
    const changes = diffResults(before.result, after.result);
    return changes.length === 0 ? pair('same') : pair('changed', changes);
  }
  if (before.ok) return pair('error_now');
  if (after.ok) return pair('error_before');
  return before.errorType === after.errorType ? pair('same_error') : pair('changed_error');
}

const round = (n: number) => Math.round(n * 1000) / 1000;

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return round(s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2);
}

const slowdown = (p: ReplayPair) => p.durationChangeMs ?? Number.NEGATIVE_INFINITY;

/** The worst first: for `changed` the most differences, then (and for every kind) the largest slowdown. */
function worstFirst(a: ReplayPair, b: ReplayPair): number {
  return b.diff.length - a.diff.length || slowdown(b) - slowdown(a) || a.ordinal - b.ordinal;
}

export function summarise(pairs: readonly ReplayPair[], examples = 5): ReplaySummary {
  const byKind = DIFFERENCE_KINDS.map((kind) => {
    const of = pairs.filter((p) => p.kind === kind);
    return { kind, count: of.length, examples: [...of].sort(worstFirst).slice(0, examples) };
  }).filter((k) => k.count > 0);
  const versions = [...new Set(pairs.flatMap((p) => (p.after ? [p.after.version] : [])))].sort((a, b) => a - b);
  const byVersion = versions.map((version) => {
    const of = pairs.filter((p) => p.after?.version === version);
    const byKind = DIFFERENCE_KINDS.map((kind) => ({ kind, count: of.filter((p) => p.kind === kind).length })).filter((k) => k.count > 0);
    return { version, count: of.length, byKind };
  });
  const timed = pairs.filter((p) => p.durationChangeMs !== null);
  const ratios = timed.filter((p) => (p.before.durationMs ?? 0) > 0).map((p) => (p.after?.durationMs as number) / (p.before.durationMs as number));
  return {
    total: pairs.length,
    finished: pairs.filter((p) => p.kind !== 'pending').length,
    byKind,
    byVersion,
    durations: {
      pairs: timed.length,
      beforeMedianMs: median(timed.map((p) => p.before.durationMs as number)),
      afterMedianMs: median(timed.map((p) => p.after?.durationMs as number)),
      medianRatio: median(ratios),
      slowest: [...timed].sort((a, b) => slowdown(b) - slowdown(a) || a.ordinal - b.ordinal).slice(0, examples),
    },
  };
}
