// Tumbling windows of stream mappings (docs/streams.md, "Tumbling windows"), Lambda's
// TumblingWindowInSeconds: a shard's records are grouped into windows of that length by
// their arrival time (a change stream's: the commit time of its source transaction),
// aligned to the epoch. A batch never spans two windows; each invocation gets the state
// the previous invocation of the same window and shard returned, and once the window has
// ended and the shard has no more records of it, one more invocation without records,
// marked isFinalInvokeForWindow, hands the function the window's last state. Pure: the
// poller applies the plan, the unit tests pin it.
import { CHANGE_STREAM_ARN_PREFIX } from '../../../db/change-streams.ts';
import { streamArn, type OpenWindow, type StreamMapping, type StreamRecord } from '../../../db/streams.ts';
import type { AttemptOutcome } from '../../runtimes/index.ts';

/** Lambda: the state is at most 1 MB per shard; past it the window is terminated early. */
export const MAX_WINDOW_STATE_BYTES = 1_048_576;
export const INVALID_WINDOW_RESPONSE = 'InvalidTumblingWindowResponse';

/** The window a batch carries, as its invocation receives it. */
export interface BatchWindow {
  start: Date;
  end: Date;
  /** the state the window's previous invocation returned ({} for its first) */
  state: Record<string, unknown>;
  isFinalInvokeForWindow: boolean;
  isWindowTerminatedEarly: boolean;
}

export type WindowPlan =
  /** the window's final invocation, without records */
  | { kind: 'final'; window: BatchWindow }
  /** the first `count` records of the read belong to the window; `cut`: a record of a later window follows */
  | { kind: 'records'; window: BatchWindow; count: number; cut: boolean }
  /** the window is open and has no more records yet: nothing to do before its end */
  | { kind: 'wait'; ms: number }
  | { kind: 'idle' };

/** When a record counts for its window: its arrival, or a change record's source commit time. */
export function windowTimeOf(m: Pick<StreamMapping, 'sourceTable'>, r: StreamRecord): number {
  if (m.sourceTable === null) return r.arrivedAt.getTime();
  try {
    const at = (JSON.parse(r.data.toString('utf8')) as { dynamodb?: { ApproximateCreationDateTime?: unknown } }).dynamodb?.ApproximateCreationDateTime;
    if (typeof at === 'number' && Number.isFinite(at)) return Math.round(at * 1000);
  } catch {
    // not a change record: its arrival
  }
  return r.arrivedAt.getTime();
}

const final = (w: OpenWindow, terminatedEarly: boolean): WindowPlan => ({
  kind: 'final',
  window: { start: w.start, end: w.end, state: w.state, isFinalInvokeForWindow: true, isWindowTerminatedEarly: terminatedEarly },
});

/**
 * What the shard's next batch is. `read`: the records after the checkpoint, in order.
 * A record counts at its time, but never before the open window's start or the end of the
 * last closed window: a put that committed late joins the window in progress, so a window
 * is never opened twice. An open window whose mapping no longer has tumbling windows ends
 * at once (its final invocation).
 */
export function planWindow(
  m: Pick<StreamMapping, 'sourceTable' | 'tumblingWindowInSeconds'>,
  cp: { window: OpenWindow | null; windowClosedUntil: Date | null },
  read: readonly StreamRecord[],
  now: Date,
): WindowPlan {
  const w = cp.window;
  const lengthMs = m.tumblingWindowInSeconds * 1000;
  if (w && (w.terminatedEarly || lengthMs === 0)) return final(w, w.terminatedEarly || now < w.end);
  const floor = Math.max(w?.start.getTime() ?? -Infinity, cp.windowClosedUntil?.getTime() ?? -Infinity);
  const at = (r: StreamRecord) => Math.max(windowTimeOf(m, r), floor);
  const within = (end: number) => {
    let n = 0;
    while (n < read.length && at(read[n] as StreamRecord) < end) n++;
    return n;
  };
  if (w) {
    const n = within(w.end.getTime());
    if (n > 0) return { kind: 'records', window: { start: w.start, end: w.end, state: w.state, isFinalInvokeForWindow: false, isWindowTerminatedEarly: false }, count: n, cut: n < read.length };
    if (now >= w.end) return final(w, false);
    return { kind: 'wait', ms: w.end.getTime() - now.getTime() };
  }
  const first = read[0];
  if (!first || lengthMs === 0) return { kind: 'idle' };
  const start = Math.floor(at(first) / lengthMs) * lengthMs;
  const n = within(start + lengthMs);
  return {
    kind: 'records',
    window: { start: new Date(start), end: new Date(start + lengthMs), state: {}, isFinalInvokeForWindow: false, isWindowTerminatedEarly: false },
    count: n,
    cut: n < read.length,
  };
}

/** The event's source ARN without a record to take it from (a final invocation). */
export function mappingSourceArn(m: Pick<StreamMapping, 'id' | 'sourceTable'>, streamName: string): string {
  return m.sourceTable === null ? streamArn(streamName) : `${CHANGE_STREAM_ARN_PREFIX}${m.sourceTable}/stream/${m.id}`;
}

/** The invocation's event: the records and Lambda's tumbling window fields. */
export function windowEvent(records: unknown[], w: BatchWindow, shardId: string, eventSourceARN: string): Record<string, unknown> {
  return {
    Records: records,
    window: { start: w.start.toISOString(), end: w.end.toISOString() },
    state: w.state,
    shardId,
    eventSourceARN,
    isFinalInvokeForWindow: w.isFinalInvokeForWindow,
    isWindowTerminatedEarly: w.isWindowTerminatedEarly,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Lambda: with tumbling windows the response must hold a `state` object, or the
 * invocation failed (a final invocation's state is dropped, so it may leave it out).
 * Returns the run as it counts, and the state it returned.
 */
export function windowResponse(run: AttemptOutcome, w: BatchWindow): { run: AttemptOutcome; state: Record<string, unknown> | null } {
  if (!run.ok) return { run, state: null };
  const state = isObject(run.result) ? run.result['state'] : undefined;
  if (isObject(state)) return { run, state };
  if (w.isFinalInvokeForWindow) return { run, state: null };
  const response = JSON.stringify(run.result) ?? String(run.result);
  return {
    run: {
      ok: false,
      error: {
        errorType: INVALID_WINDOW_RESPONSE,
        errorMessage: `With a tumbling window the function returns {"state": {...}}; the batch is retried. Response: ${response.slice(0, 1024)}`,
        trace: [],
      },
      durationMs: run.durationMs,
      log: run.log,
    },
    state: null,
  };
}

/** The state's size as stored and passed on: its JSON's UTF-8 bytes. */
export const stateBytes = (state: Record<string, unknown>) => Buffer.byteLength(JSON.stringify(state), 'utf8');
