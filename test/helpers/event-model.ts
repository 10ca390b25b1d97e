// The reference model of the lifecycle, read from docs/event-model.md: the transition
// table and the append rules as the doc states them, parsed here and nowhere derived from
// db/lifecycle.ts. The property tests hold the lifecycle and the writer to it, so the doc
// and the test are one thing. Only types are imported from the code under test.
import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { fileURLToPath } from 'node:url';
import type { DeadLetterReason, EventType, InvocationStatus, InvocationType, NewEvent } from '../../db/lifecycle.ts';
import type { Executor } from '../../db/schema.ts';

export const EVENT_MODEL_DOC = fileURLToPath(new URL('../../docs/event-model.md', import.meta.url));

export type Condition =
  | { kind: 'attempt'; plus: 0 | 1 }
  | { kind: 'willRetry'; value: boolean }
  | { kind: 'reason'; values: DeadLetterReason[] }
  | { kind: 'previous'; type: EventType };

export interface Rule {
  id: string;
  from: string;
  event: EventType;
  for: InvocationType[];
  when: Condition[];
  to: string;
}

export interface EventModel {
  /** state name → the status a projection shows for it (null: no row) */
  states: Map<string, InvocationStatus | null>;
  rules: Rule[];
  /** append rule id → its text */
  appendRules: Map<string, string>;
}

const EVENTS: readonly EventType[] = ['accepted', 'started', 'failed', 'retried', 'succeeded', 'dead_lettered', 'cancelled', 'redriven'];
const TYPES: readonly InvocationType[] = ['async', 'sync', 'poll', 'replay'];
const REASONS: readonly DeadLetterReason[] = ['RetriesExhausted', 'EventAgeExceeded', 'ZeroReservedConcurrency', 'RecursiveInvocationLoop'];

/** The rows of the markdown table under `## heading`, as cells, header and separator dropped. */
function tableUnder(markdown: string, heading: string): string[][] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`docs/event-model.md has no "## ${heading}" section`);
  const rest = markdown.slice(start + heading.length + 5);
  const end = rest.search(/\n## /);
  const lines = (end < 0 ? rest : rest.slice(0, end)).split('\n').filter((l) => l.startsWith('|'));
  return lines.slice(2).map((l) => l.slice(1, -1).split('|').map((c) => c.trim().replace(/^`|`$/g, '')));
}

function parseCondition(text: string, rule: string): Condition {
  let m: RegExpMatchArray | null;
  if ((m = /^attempt = attempts( \+ 1)?$/.exec(text))) return { kind: 'attempt', plus: m[1] ? 1 : 0 };
  if ((m = /^willRetry = (true|false)$/.exec(text))) return { kind: 'willRetry', value: m[1] === 'true' };
  if ((m = /^reason in (.+)$/.exec(text))) {
    const values = (m[1] as string).split(',').map((s) => s.trim());
    for (const v of values) if (!REASONS.includes(v as DeadLetterReason)) throw new Error(`${rule}: unknown reason ${v}`);
    return { kind: 'reason', values: values as DeadLetterReason[] };
  }
  if ((m = /^previous = (\w+)$/.exec(text)) && EVENTS.includes(m[1] as EventType)) return { kind: 'previous', type: m[1] as EventType };
  throw new Error(`${rule}: the reference model cannot read the condition "${text}"`);
}

export function parseEventModel(markdown: string): EventModel {
  const states = new Map<string, InvocationStatus | null>();
  for (const [name, status] of tableUnder(markdown, 'States')) {
    states.set(name as string, status === '(no row)' ? null : (status as InvocationStatus));
  }
  const rules: Rule[] = tableUnder(markdown, 'Transitions').map((cells) => {
    const [id, from, event, types, when, to] = cells as [string, string, string, string, string, string];
    if (!states.has(from) || !states.has(to)) throw new Error(`${id}: unknown state ${from} or ${to}`);
    if (!EVENTS.includes(event as EventType)) throw new Error(`${id}: unknown event ${event}`);
    const forTypes = types.split(',').map((s) => s.trim());
    for (const t of forTypes) if (!TYPES.includes(t as InvocationType)) throw new Error(`${id}: unknown type ${t}`);
    return {
      id,
      from,
      event: event as EventType,
      for: forTypes as InvocationType[],
      when: when === '' ? [] : when.split(';').map((c) => parseCondition(c.trim(), id)),
      to,
    };
  });
  const appendRules = new Map(tableUnder(markdown, 'Append rules').map(([id, text]) => [id as string, text as string]));
  return { states, rules, appendRules };
}

let cached: EventModel | undefined;
export function eventModel(): EventModel {
  cached ??= parseEventModel(readFileSync(EVENT_MODEL_DOC, 'utf8'));
  return cached;
}

/** The reference state of one invocation: what the tables talk about, nothing more. */
export interface RefState {
  name: string;
  type: InvocationType;
  attempts: number;
  lastType: EventType;
  lastSeq: number;
  deadLetterReason: DeadLetterReason | null;
  chainDepth: number;
}

export type RefVerdict = { ok: true; rule: Rule; next: RefState } | { ok: false; why: string };

function holds(c: Condition, state: RefState | undefined, e: NewEvent): boolean {
  const d = e.data as { attempt?: number; willRetry?: boolean; reason?: DeadLetterReason };
  switch (c.kind) {
    case 'attempt':
      return d.attempt === (state?.attempts ?? 0) + c.plus;
    case 'willRetry':
      return d.willRetry === c.value;
    case 'reason':
      return d.reason !== undefined && c.values.includes(d.reason);
    case 'previous':
      return state?.lastType === c.type;
  }
}

/** Whether the table allows `e` after `state` (undefined: nothing recorded), and by which row. */
export function refStep(model: EventModel, state: RefState | undefined, e: NewEvent): RefVerdict {
  const from = state?.name ?? 'new';
  const type = state?.type ?? (e.type === 'accepted' ? e.data.invocationType : 'async');
  const rule = model.rules.find((r) => r.from === from && r.event === e.type && r.for.includes(type) && r.when.every((c) => holds(c, state, e)));
  if (!rule) return { ok: false, why: `no row of the table allows ${e.type} after ${from} (${type})` };
  const next: RefState = state
    ? { ...state, name: rule.to, lastType: e.type, lastSeq: state.lastSeq + 1 }
    : {
        name: rule.to,
        type,
        attempts: 0,
        lastType: e.type,
        lastSeq: 1,
        deadLetterReason: null,
        chainDepth: e.type === 'accepted' ? (e.data.chainDepth ?? 0) : 0,
      };
  if (e.type === 'started') next.attempts = e.data.attempt;
  next.deadLetterReason = e.type === 'dead_lettered' ? e.data.reason : rule.to === 'dead_lettered' ? next.deadLetterReason : null;
  return { ok: true, rule, next };
}

export type RefAppend = { ok: true; next: RefState; rules: Rule[] } | { ok: false; rule: string; why: string };

/**
 * Whether one append may be written: the append rules around the table. `maxChainDepth`
 * only matters for A3, which the accept path (not the writer) carries out.
 */
export function refAppend(
  model: EventModel,
  state: RefState | undefined,
  append: { expectedSeq: number; events: readonly NewEvent[] },
  options: { maxChainDepth?: number } = {},
): RefAppend {
  const need = (id: string) => {
    if (!model.appendRules.has(id)) throw new Error(`docs/event-model.md lost append rule ${id}`);
    return id;
  };
  if (append.expectedSeq !== (state?.lastSeq ?? 0)) return { ok: false, rule: need('A4'), why: `expectedSeq ${append.expectedSeq} is not the last seq ${state?.lastSeq ?? 0}` };
  let s = state;
  const rules: Rule[] = [];
  for (const e of append.events) {
    const v = refStep(model, s, e);
    if (!v.ok) return { ok: false, rule: 'table', why: v.why };
    rules.push(v.rule);
    s = v.next;
  }
  if (!s || s === state) return { ok: false, rule: 'A5', why: 'nothing to append' };
  if (s.name === 'failing-retry' || s.name === 'failing-final') return { ok: false, rule: need('A1'), why: `the append ends in ${s.name}` };
  const accepted = append.events.find((e) => e.type === 'accepted');
  if (accepted && s.type !== 'async' && !append.events.some((e) => e.type === 'started')) {
    return { ok: false, rule: need('A2'), why: `a ${s.type} invocation is accepted without its started` };
  }
  if (accepted && s.type === 'async' && options.maxChainDepth !== undefined) {
    const stopped = options.maxChainDepth > 0 && s.chainDepth >= options.maxChainDepth;
    const second = append.events[append.events.indexOf(accepted) + 1];
    const stops = second?.type === 'dead_lettered' && second.data.reason === 'RecursiveInvocationLoop';
    if (stopped !== stops) return { ok: false, rule: need('A3'), why: stopped ? 'a loop at the limit must be stopped in its accept' : 'only a loop at the limit is stopped' };
    if (stopped && append.events.some((e) => e.type === 'started')) return { ok: false, rule: need('A3'), why: 'a stopped loop has no attempt' };
  }
  return { ok: true, next: s, rules };
}

/** Folds a whole stream read back: seq 1, 2, 3 … and every event allowed by the table. */
export function refFold(model: EventModel, events: readonly (NewEvent & { seq: number })[]): { ok: true; state: RefState | undefined } | { ok: false; why: string } {
  let s: RefState | undefined;
  for (const e of events) {
    if (e.seq !== (s?.lastSeq ?? 0) + 1) return { ok: false, why: `seq ${e.seq} out of order` };
    const v = refStep(model, s, e);
    if (!v.ok) return { ok: false, why: v.why };
    s = v.next;
  }
  return { ok: true, state: s };
}

/** The pending decision the implementation keeps for a reference state. */
export function pendingOf(name: string): 'retried' | 'dead_lettered' | null {
  return name === 'failing-retry' ? 'retried' : name === 'failing-final' ? 'dead_lettered' : null;
}

/**
 * The coverage keys a run must reach: each row for each invocation type it names, each
 * dead-letter reason it allows, and each `failed` row once more as a lost worker's.
 */
export function coverageKeys(model: EventModel): string[] {
  const keys: string[] = [];
  for (const r of model.rules) {
    for (const t of r.for) {
      const reasons = r.when.find((c) => c.kind === 'reason');
      if (reasons?.kind === 'reason') for (const why of reasons.values) keys.push(`${r.id}:${t}:${why}`);
      else keys.push(`${r.id}:${t}`);
      if (r.event === 'failed') keys.push(`${r.id}:${t}:WorkerLost`);
    }
  }
  return keys;
}

export function coverageKey(rule: Rule, state: RefState, e: NewEvent): string {
  if (e.type === 'dead_lettered') return `${rule.id}:${state.type}:${e.data.reason}`;
  if (e.type === 'failed' && e.data.error.errorType === 'WorkerLost') return `${rule.id}:${state.type}:WorkerLost`;
  return `${rule.id}:${state.type}`;
}

const ERR = { errorType: 'Error', errorMessage: 'boom', trace: [] };
const LOST = { errorType: 'WorkerLost', errorMessage: 'Worker w lost attempt 1: its lease expired', trace: [] };

/** Events that every enabled row allows from `state`: one per row, type and variant. */
export function enabledEvents(model: EventModel, state: RefState | undefined): NewEvent[] {
  const from = state?.name ?? 'new';
  const out: NewEvent[] = [];
  for (const r of model.rules) {
    if (r.from !== from) continue;
    const types = state ? (r.for.includes(state.type) ? [state.type] : []) : r.for;
    for (const t of types) {
      if (r.when.some((c) => c.kind === 'previous' && c.type !== state?.lastType)) continue;
      out.push(...instances(r, t, state));
    }
  }
  return out;
}

function instances(r: Rule, type: InvocationType, state: RefState | undefined): NewEvent[] {
  const attempts = state?.attempts ?? 0;
  const plus = (r.when.find((c) => c.kind === 'attempt') as { plus: number } | undefined)?.plus ?? 0;
  const attempt = attempts + plus;
  const willRetry = (r.when.find((c) => c.kind === 'willRetry') as { value: boolean } | undefined)?.value ?? false;
  switch (r.event) {
    case 'accepted':
      return [{ type: 'accepted', data: { functionName: 'model', functionVersion: 1, invocationType: type, payload: null, idempotencyKey: null } }];
    case 'started':
      return [{ type: 'started', data: { attempt, workerId: 'w' } }];
    case 'succeeded':
      return [{ type: 'succeeded', data: { attempt, result: { attempt }, durationMs: 1 } }];
    case 'failed':
      return [ERR, LOST].map((error) => ({ type: 'failed', data: { attempt, error, willRetry, durationMs: 1 } }));
    case 'retried':
      return [{ type: 'retried', data: { attempt, runAt: '2026-01-01T00:00:01.000Z', delayMs: 1000 } }];
    case 'dead_lettered': {
      const reasons = (r.when.find((c) => c.kind === 'reason') as { values: DeadLetterReason[] } | undefined)?.values ?? [...REASONS];
      return reasons.map((reason) => ({ type: 'dead_lettered', data: { reason } }));
    }
    case 'cancelled':
      return [{ type: 'cancelled', data: { reason: 'model' } }];
    case 'redriven':
      return [{ type: 'redriven', data: { by: 'model' } }];
  }
}

/**
 * Every event worth trying from `state`, allowed or not: each type, attempt numbers
 * around the current one, both willRetry values, every reason. The lifecycle must
 * accept exactly those the table allows.
 */
export function probeEvents(state: RefState | undefined): NewEvent[] {
  const a = state?.attempts ?? 0;
  const attempts = [...new Set([a - 1, a, a + 1, a + 2].filter((n) => n >= 0))];
  const out: NewEvent[] = TYPES.map((t) => ({ type: 'accepted', data: { functionName: 'model', functionVersion: 1, invocationType: t, payload: null, idempotencyKey: null } }));
  for (const attempt of attempts) {
    out.push({ type: 'started', data: { attempt, workerId: 'w' } });
    out.push({ type: 'succeeded', data: { attempt, result: null, durationMs: 1 } });
    out.push({ type: 'retried', data: { attempt, runAt: '2026-01-01T00:00:01.000Z', delayMs: 1000 } });
    for (const willRetry of [true, false]) out.push({ type: 'failed', data: { attempt, error: ERR, willRetry, durationMs: 1 } });
  }
  for (const reason of REASONS) out.push({ type: 'dead_lettered', data: { reason } });
  out.push({ type: 'cancelled', data: { reason: 'probe' } }, { type: 'redriven', data: { by: 'probe' } });
  return out;
}

/**
 * Every stream of a ledger judged by the model, independently of `verify` (which folds with
 * db/lifecycle.ts, the rules it is meant to check): seqs, transitions, and no stream left
 * in the middle of a failure (A1). One line per refused stream.
 */
export async function judgeLedger(db: Executor): Promise<string[]> {
  const model = eventModel();
  const { rows } = await sql<{ invocation_id: string; seq: number; type: EventType; data: Record<string, unknown> }>`
    select invocation_id, seq, type,
           jsonb_build_object('attempt', data->'attempt', 'willRetry', data->'willRetry', 'reason', data->'reason',
                              'invocationType', data->'invocationType', 'chainDepth', data->'chainDepth', 'error', data->'error') as data
    from ledger.events order by invocation_id, seq`.execute(db);
  const problems: string[] = [];
  let i = 0;
  while (i < rows.length) {
    const id = rows[i]!.invocation_id;
    let j = i;
    while (j < rows.length && rows[j]!.invocation_id === id) j++;
    const stream = rows.slice(i, j).map((r) => ({ type: r.type, seq: r.seq, data: r.data }) as unknown as NewEvent & { seq: number });
    const judged = refFold(model, stream);
    if (!judged.ok) problems.push(`${id}: ${judged.why}`);
    else if (judged.state && pendingOf(judged.state.name) !== null) problems.push(`${id}: ends in ${judged.state.name} (A1)`);
    i = j;
  }
  return problems;
}
