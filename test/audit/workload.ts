// A realistic day in a small ledger, written through the real writer (acceptInvocations,
// appendBatch, recordOutcomes, redrive, cancel): sync successes and failures with
// idempotency keys and refused duplicates, async retries, WorkerLost attempts, dead
// letters (RetriesExhausted and EventAgeExceeded), redrives, a cancellation, and work
// still queued. Deterministic apart from ids and timestamps. The cookbook test and the
// docs' sample output (render-samples.ts) both run on it.
import { recordOutcomes, type Outcome } from '../../db/attempts.ts';
import { createFunction, updateFunction, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations, cancel, redrive } from '../../db/invocations.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import type { Db } from '../../db/schema.ts';
import { appendBatch } from '../../db/writer.ts';

export const WORKERS = ['worker-a', 'worker-b', 'worker-c'] as const;
export const API_WORKER = 'api-1';

export interface WorkloadSummary {
  invocations: number;
  duplicatesRefused: number;
  deadLetters: number;
  redriven: number;
  workerLost: number;
  cancelled: number;
  queued: number;
}

/** A small deterministic PRNG, so durations look real and runs compare. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Planned {
  fn: FunctionVersion;
  index: number;
  redrives: number;
}

type Plan = (p: Planned, attempt: number, worker: string) => Outcome;

export async function runAuditWorkload(db: Db, scale = 1): Promise<WorkloadSummary> {
  const random = prng(42);
  const ms = (lo: number, hi: number) => Math.round((lo + (hi - lo) * random()) * 10) / 10;
  const fail = (errorType: string, errorMessage: string, durationMs: number): Outcome => ({
    ok: false,
    error: { errorType, errorMessage, trace: [`${errorType}: ${errorMessage}`, '    at handler (index.mjs:12:11)'] },
    durationMs,
  });
  const lost = (worker: string, attempt: number): Outcome => ({
    ok: false,
    // as apps/worker/leases.ts words it when the reaper records an expired lease
    error: {
      errorType: 'WorkerLost',
      errorMessage: `Worker ${worker} lost attempt ${attempt}: its lease expired at ${new Date().toISOString()}`,
      trace: [],
    },
    durationMs: ms(30_000, 31_000),
  });

  const resize = await createFunction(db, 'resize-image', { runtime: 'MODULE', handler: 'resize.ts', maxRetries: 2, retryBaseDelayMs: 0, timeoutMs: 30_000 });
  let email = await createFunction(db, 'send-email', { runtime: 'MODULE', handler: 'email.ts', maxRetries: 0, retryBaseDelayMs: 0 });
  // a config change mid-day: later invocations record version 2
  email = await updateFunction(db, 'send-email', { maxRetries: 1, timeoutMs: 10_000 });
  const charge = await createFunction(db, 'charge-card', { runtime: 'HTTP', url: 'https://payments.internal/charge', timeoutMs: 5_000 });
  const report = await createFunction(db, 'nightly-report', {
    runtime: 'MODULE', handler: 'report.ts', maxRetries: 2, retryBaseDelayMs: 3_600_000, maxEventAgeSeconds: 60, timeoutMs: 900_000,
  });

  const plans = new Map<string, Plan>([
    ['resize-image', ({ index }, attempt, worker) => {
      if (index % 23 === 5) return fail('InvalidImage', `input ${index}.png is not a PNG file`, ms(5, 20));
      if (index % 10 === 3 && attempt === 1) return lost(worker, attempt);
      if (index % 7 === 2 && attempt === 1) return fail('S3SlowDown', 'Please reduce your request rate', ms(900, 1_500));
      return { ok: true, result: { width: 640, height: 480 }, durationMs: ms(80, index % 17 === 0 ? 2_400 : 400) };
    }],
    ['send-email', ({ index, redrives }, attempt) => {
      if (index % 4 === 0 && (redrives === 0 || index % 8 === 4)) return fail('SmtpTimeout', 'smtp.relay.internal:587 did not answer within 10000 ms', ms(9_990, 10_010));
      if (index % 5 === 1 && attempt === 1) return fail('MailboxUnavailable', '452 4.2.2 mailbox full, try later', ms(40, 90));
      return { ok: true, result: { messageId: `<${index}@mail.internal>` }, durationMs: ms(30, 150) };
    }],
    ['nightly-report', ({ index }) => {
      if (index % 3 === 0) return fail('TimeoutError', 'Task timed out after 900.00 seconds', ms(900_000, 900_050));
      return { ok: true, result: { rows: 1000 + index }, durationMs: ms(2_000, 9_000) };
    }],
  ]);

  const summary: WorkloadSummary = { invocations: 0, duplicatesRefused: 0, deadLetters: 0, redriven: 0, workerLost: 0, cancelled: 0, queued: 0 };
  const planned = new Map<string, Planned>();

  // --- sync: charge-card, every request with an idempotency key; retried requests reuse theirs
  const syncCount = 40 * scale;
  const syncAccepted = await acceptInvocations(
    db,
    Array.from({ length: syncCount }, (_, i) => ({
      fn: charge, invocationType: 'sync' as const, payload: { orderId: 1000 + i, amountCents: 500 + 37 * i },
      idempotencyKey: i % 4 === 3 ? null : `order-${1000 + i}`, startedBy: API_WORKER,
    })),
  );
  summary.invocations += syncAccepted.length;
  await recordOutcomes(
    db,
    syncAccepted.map((a, i) => ({
      state: a.state as InvocationState,
      policy: charge,
      outcome: i % 5 === 4 ? fail('CardDeclined', 'issuer declined: insufficient funds', ms(200, 600)) : { ok: true as const, result: { charged: true }, durationMs: ms(150, 900) },
    })),
  );
  // clients retrying: the same keys within 24 h return the first invocation, write nothing
  const dupes = await acceptInvocations(
    db,
    Array.from({ length: 6 * scale }, (_, i) => ({ fn: charge, invocationType: 'sync' as const, payload: { orderId: 1000 + i * 2 }, idempotencyKey: `order-${1000 + i * 2}`, startedBy: API_WORKER })),
  );
  summary.duplicatesRefused += dupes.filter((d) => d.duplicate).length;

  // --- async: accept, then let "workers" claim, run and record until nothing is runnable
  const accept = async (fn: FunctionVersion, n: number, offset = 0) => {
    const accepted = await acceptInvocations(
      db,
      Array.from({ length: n }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { n: offset + i } })),
    );
    accepted.forEach((a, i) => planned.set(a.invocationId, { fn, index: offset + i, redrives: 0 }));
    summary.invocations += accepted.length;
    return accepted.map((a) => a.state as InvocationState);
  };

  let runnable: InvocationState[] = [
    ...(await accept(resize, 60 * scale)),
    ...(await accept(email, 40 * scale)),
    ...(await accept(report, 12 * scale)),
  ];
  let turn = 0;
  const drain = async (): Promise<void> => {
    while (runnable.length > 0) {
      const starts = runnable.map((state) => ({
        invocationId: state.id,
        expectedSeq: state.lastSeq,
        prior: state,
        events: [{ type: 'started' as const, data: { attempt: state.attempts + 1, workerId: WORKERS[turn++ % WORKERS.length] as string } }],
      }));
      const started = await appendBatch(db, starts);
      if (started.rejected[0]) throw started.rejected[0].error;
      const finished = started.results.map(({ state }) => {
        const p = planned.get(state.id) as Planned;
        const outcome = (plans.get(p.fn.name) as Plan)(p, state.attempts, state.workerId as string);
        if (!outcome.ok && outcome.error.errorType === 'WorkerLost') summary.workerLost++;
        return { state, policy: p.fn, outcome };
      });
      const recorded = await recordOutcomes(db, finished);
      if (recorded.rejected[0]) throw recorded.rejected[0].error;
      runnable = recorded.results.map((r) => r.state).filter((s) => s.status === 'retry_scheduled');
    }
  };
  await drain();

  // --- an operator redrives half of send-email's dead letters after fixing the relay
  const dead = await db
    .selectFrom('ledger.invocations')
    .select(['id', 'function_name'])
    .where('status', '=', 'dead_lettered')
    .orderBy('accepted_at')
    .orderBy('id')
    .execute();
  const toRedrive = dead.filter((d) => d.function_name === 'send-email').filter((_, i) => i % 2 === 0).map((d) => d.id);
  runnable = await redrive(db, toRedrive, 'ops@example.com');
  summary.redriven += toRedrive.length;
  for (const id of toRedrive) (planned.get(id) as Planned).redrives++;
  await drain();
  const deadLettered = await db
    .selectFrom('ledger.events')
    .select((e) => e.fn.countAll<string>().as('n'))
    .where('type', '=', 'dead_lettered')
    .executeTakeFirstOrThrow();
  summary.deadLetters = Number(deadLettered.n);

  // --- work that is not done: one report cancelled by an operator, a few still queued
  const waiting = await accept(report, 3, 1000);
  await cancel(db, [(waiting[0] as InvocationState).id], 'superseded by a manual run');
  summary.cancelled += 1;
  summary.queued += waiting.length - 1;
  return summary;
}
