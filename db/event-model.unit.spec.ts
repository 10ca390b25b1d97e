// db/lifecycle.ts held to docs/event-model.md: the reference model is parsed from the doc's
// tables (test/helpers/event-model.ts), never derived from the code it judges.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  coverageKey,
  coverageKeys,
  enabledEvents,
  eventModel,
  parseEventModel,
  pendingOf,
  probeEvents,
  refFold,
  refStep,
  type RefState,
} from '../test/helpers/event-model.ts';
import { apply, attemptOf, fold, isQueued, LifecycleViolation, whyNot, whyNotAtEnd, type InvocationState, type LedgerEvent, type NewEvent } from './lifecycle.ts';

const ID = '00000000-0000-4000-8000-000000000029';
const T0 = new Date('2026-01-01T00:00:00Z');
const model = eventModel();

/** Where the implementation's state disagrees with the reference state, or null. */
function stateMismatch(impl: InvocationState, ref: RefState): string | null {
  const want = {
    status: model.states.get(ref.name),
    pendingAfterFailure: pendingOf(ref.name),
    attempts: ref.attempts,
    lastType: ref.lastType,
    lastSeq: ref.lastSeq,
    invocationType: ref.type,
    deadLetterReason: ref.name === 'dead_lettered' ? ref.deadLetterReason : null,
  };
  const got = {
    status: impl.status,
    pendingAfterFailure: impl.pendingAfterFailure,
    attempts: impl.attempts,
    lastType: impl.lastType,
    lastSeq: impl.lastSeq,
    invocationType: impl.invocationType,
    deadLetterReason: impl.deadLetterReason,
  };
  for (const k of Object.keys(want) as (keyof typeof want)[]) {
    if (want[k] !== got[k]) return `${k}: lifecycle has ${String(got[k])}, the model ${String(want[k])}`;
  }
  const atEnd = whyNotAtEnd(impl);
  if ((atEnd === null) !== (pendingOf(ref.name) === null)) return `whyNotAtEnd says ${atEnd === null ? 'may end' : 'may not end'} in ${ref.name}`;
  if (atEnd !== null && !atEnd.includes(pendingOf(ref.name) as string)) return `whyNotAtEnd does not say what must follow: ${atEnd}`;
  // the hot queue holds exactly the invocations that are not final
  const final = ['succeeded', 'failed', 'cancelled', 'dead_lettered'].includes(ref.name);
  if (isQueued(impl) !== !final) return `isQueued is ${isQueued(impl)} in ${ref.name}`;
  return null;
}

const show = (e: NewEvent) => `${e.type}${JSON.stringify(e.data).replace(/"(functionName|functionVersion|payload|idempotencyKey|workerId|result|durationMs|trace|errorMessage|runAt|delayMs|by)":[^,}]*,?/g, '')}`;

/**
 * One step checked both ways: the lifecycle accepts exactly what the table allows, and
 * the states agree after it. Returns the new pair, or the disagreement.
 */
function step(impl: InvocationState | undefined, ref: RefState | undefined, e: NewEvent, at: Date) {
  const verdict = refStep(model, ref, e);
  const why = whyNot(impl, e);
  const from = ref?.name ?? 'new';
  if (verdict.ok !== (why === null)) {
    return { error: `after ${from}/${ref?.type ?? '-'} (attempts ${ref?.attempts ?? 0}, last ${ref?.lastType ?? '-'}): ${show(e)} is ${verdict.ok ? `allowed by ${verdict.rule.id}` : 'allowed by no row'} but the lifecycle ${why === null ? 'accepts it' : `refuses it (${why})`}` };
  }
  if (!verdict.ok) {
    // a refusal says why, in words a caller can act on (GraphQL and HTTP pass it on)
    if (!why || !/\w{3,}/.test(why)) return { error: `${show(e)} after ${from} refused without a reason: "${why}"` };
    try {
      apply(impl, e, ID, at);
      return { error: `apply accepted ${show(e)} that whyNot refused` };
    } catch (x) {
      if (!(x instanceof LifecycleViolation)) throw x;
      const v = x as LifecycleViolation;
      const expected = `invocation ${ID}: ${e.type} may not follow ${impl?.lastType ?? 'nothing'}: ${why}`;
      if (v.code !== 'LifecycleViolation' || v.name !== 'LifecycleViolation' || v.from !== (impl?.lastType ?? null) || v.to !== e.type || v.message !== expected) {
        return { error: `the violation does not say what happened: ${v.name}/${v.code} from ${String(v.from)} to ${v.to}: ${v.message}` };
      }
    }
    return { impl, ref, refused: true as const };
  }
  // the attempt column of the event
  const a = (e.data as { attempt?: number }).attempt;
  if (attemptOf(e) !== (e.type === 'started' || e.type === 'failed' || e.type === 'retried' || e.type === 'succeeded' ? a : null)) {
    return { error: `attemptOf(${show(e)}) is ${attemptOf(e)}` };
  }
  const nextImpl = apply(impl, e, ID, at);
  const mismatch = stateMismatch(nextImpl, verdict.next);
  if (mismatch) return { error: `${from} --${show(e)}--> ${verdict.next.name}: ${mismatch}` };
  return { impl: nextImpl, ref: verdict.next, rule: verdict.rule, refused: false as const };
}

const coverage = new Map<string, number>(coverageKeys(model).map((k) => [k, 0]));

afterAll(() => {
  // the transition coverage the random walks reached, for the log
  const line = [...coverage].map(([k, n]) => `${k}=${n}`).join(' ');
  console.log(`event-model coverage (${[...coverage.values()].filter((n) => n > 0).length}/${coverage.size} transitions): ${line}`);
});

describe('docs/event-model.md, the statement of the rules', () => {
  it('parses into fifteen transitions and five append rules, and refuses what it cannot read', () => {
    expect(model.rules.map((r) => r.id)).toEqual(Array.from({ length: 15 }, (_, i) => `T${i + 1}`));
    expect([...model.appendRules.keys()]).toEqual(['A1', 'A2', 'A3', 'A4', 'A5']);
    const doc = '\n## States\n\n| state | status | meaning |\n| --- | --- | --- |\n| `new` | (no row) | x |\n| `queued` | `queued` | x |\n';
    const table = (when: string) => `${doc}\n## Transitions\n\n| rule | from | event | for | when | to |\n| --- | --- | --- | --- | --- | --- |\n| T1 | new | accepted | async | ${when} | queued |\n\n## Append rules\n\n| rule | text |\n| --- | --- |\n`;
    expect(parseEventModel(table('')).rules).toHaveLength(1);
    expect(() => parseEventModel(table('attempt is odd'))).toThrow(/cannot read the condition "attempt is odd"/);
    expect(() => parseEventModel(table('reason in Bored'))).toThrow(/unknown reason Bored/);
  });
});

describe('db/lifecycle.ts against the reference model', () => {
  it('every event tried from every state reachable in 14 steps: accepted exactly when a row allows it', () => {
    // breadth-first over the model's states, probing each with every kind of event
    type Node = { impl: InvocationState | undefined; ref: RefState | undefined; depth: number };
    const seen = new Set<string>();
    const queue: Node[] = [{ impl: undefined, ref: undefined, depth: 0 }];
    const disagreements: string[] = [];
    const rows = new Set<string>();
    let probed = 0;
    while (queue.length > 0) {
      const { impl, ref, depth } = queue.shift() as Node;
      const key = ref ? `${ref.name}|${ref.type}|${ref.attempts}|${ref.lastType}|${ref.deadLetterReason}` : 'new';
      if (seen.has(key)) continue;
      seen.add(key);
      for (const e of probeEvents(ref)) {
        probed++;
        const r = step(impl, ref, e, T0);
        if ('error' in r) {
          disagreements.push(r.error as string);
          continue;
        }
        if (r.refused) continue;
        rows.add(r.rule.id);
        if (depth < 14) queue.push({ impl: r.impl, ref: r.ref, depth: depth + 1 });
      }
    }
    expect(disagreements.slice(0, 10)).toEqual([]);
    expect([...rows].sort()).toEqual(model.rules.map((r) => r.id).sort());
    expect(seen.size).toBeGreaterThan(50);
    expect(probed).toBeGreaterThan(1000);
  });

  it('property: state-aware random walks agree with the model at every step and reach every transition', () => {
    const walk = fc.array(fc.record({ valid: fc.nat(9), pick: fc.nat(), probe: fc.nat() }), { minLength: 4, maxLength: 40, size: 'max' });
    fc.assert(
      fc.property(walk, (choices) => {
        let impl: InvocationState | undefined;
        let ref: RefState | undefined;
        const stream: LedgerEvent[] = [];
        choices.forEach((c, i) => {
          const enabled = enabledEvents(model, ref);
          // mostly what the table allows (so walks get deep), sometimes anything at all
          const probes = probeEvents(ref);
          const e = c.valid < 8 && enabled.length > 0 ? (enabled[c.pick % enabled.length] as NewEvent) : (probes[c.probe % probes.length] as NewEvent);
          const at = new Date(T0.getTime() + i * 1000);
          const r = step(impl, ref, e, at);
          if ('error' in r) throw new Error(r.error);
          if (r.refused) return;
          coverage.set(coverageKey(r.rule, r.ref, e), (coverage.get(coverageKey(r.rule, r.ref, e)) ?? 0) + 1);
          ({ impl, ref } = r);
          stream.push({ ...e, invocationId: ID, seq: stream.length + 1, attempt: null, occurredAt: at } as LedgerEvent);
        });
        // the stream read back folds to the same state, by the lifecycle and by the model
        expect(fold(stream)).toEqual(impl);
        const replay = refFold(model, stream);
        expect(replay.ok && replay.state?.name).toBe(ref?.name ?? undefined);
      }),
      { numRuns: 2_000 },
    );
    const missing = [...coverage].filter(([, n]) => n === 0).map(([k]) => k);
    expect(missing, 'transitions no walk reached').toEqual([]);
  });

  it('property: a stream whose seqs are not 1, 2, 3 … does not fold, whatever its events', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { minLength: 2, maxLength: 12, size: 'max' }), fc.nat(), fc.constantFrom('swap', 'gap', 'repeat', 'from0'), (picks, where, how) => {
        let ref: RefState | undefined;
        const stream: LedgerEvent[] = [];
        for (const p of picks) {
          const enabled = enabledEvents(model, ref);
          if (enabled.length === 0) break;
          const e = enabled[p % enabled.length] as NewEvent;
          const v = refStep(model, ref, e);
          if (!v.ok) throw new Error(v.why);
          ref = v.next;
          stream.push({ ...e, invocationId: ID, seq: stream.length + 1, attempt: null, occurredAt: T0 } as LedgerEvent);
        }
        fc.pre(stream.length >= 2);
        expect(fold(stream)?.lastSeq).toBe(stream.length);
        const i = where % (stream.length - 1);
        const bad = stream.map((e) => ({ ...e }));
        if (how === 'swap') [bad[i]!.seq, bad[i + 1]!.seq] = [bad[i + 1]!.seq, bad[i]!.seq];
        else if (how === 'gap') for (const e of bad.slice(i + 1)) e.seq += 1;
        else if (how === 'repeat') bad[i + 1]!.seq = bad[i]!.seq;
        else for (const e of bad) e.seq -= 1;
        expect(refFold(model, bad).ok).toBe(false);
        try {
          fold(bad);
          expect.unreachable('fold took a stream out of order');
        } catch (x) {
          const v = x as LifecycleViolation;
          expect(v).toBeInstanceOf(LifecycleViolation);
          expect(v.message).toMatch(/seq -?\d+ out of order/);
          // it names where the stream was when it broke
          const at = bad.findIndex((e, k) => e.seq !== k + 1);
          expect(v.from).toBe(at === 0 ? null : bad[at - 1]!.type);
        }
      }),
      { numRuns: 500 },
    );
  });
});
