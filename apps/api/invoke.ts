// The invoke service: what every edge (Lambda routes, native routes, GraphQL) calls.
// Sync: `accepted` + `started` committed, the handler runs, its outcome recorded.
// Async: `accepted` committed, then acknowledged; the worker takes it from there.
// Accepts and sync completions are group-committed through Batchers.
import type { Logger } from 'pino';
import { recordOutcomes, type FinishedAttempt, type Outcome } from '../../db/attempts.ts';
import { lockFreeSlots } from '../../db/concurrency.ts';
import { LedgerError } from '../../db/errors.ts';
import { requireFunction, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations, getInvocation, type AcceptRequest, type Accepted, type InvocationView } from '../../db/invocations.ts';
import { isTerminal, type FunctionErrorData, type InvocationState } from '../../db/lifecycle.ts';
import type { Db } from '../../db/schema.ts';
import type { AppendResult } from '../../db/writer.ts';
import type { Runtimes } from '../runtimes/index.ts';
import { Batcher } from './batcher.ts';

export const SYNC_PAYLOAD_LIMIT = 6_291_456;
export const ASYNC_PAYLOAD_LIMIT = 1_048_576;
/** how long past its timeout a sync attempt's lease lasts before it counts as lost */
const LEASE_GRACE_MS = 30_000;

export interface InvokeOptions {
  idempotencyKey?: string | null;
  clientContext?: unknown;
  signal?: AbortSignal;
}

export interface SyncResult {
  invocationId: string;
  functionVersion: number;
  /** true when an earlier invocation with the same idempotency key answered */
  duplicate: boolean;
  ok: boolean;
  result: unknown;
  error: FunctionErrorData | null;
  /** what the attempt printed (empty for duplicates) */
  log: string;
}

export interface InvokeServiceOptions {
  db: Db;
  runtimes: Runtimes;
  /** identifies this process in `started.workerId` and queue leases */
  instanceId: string;
  logger: Logger;
  /** group commit; off only to measure what it buys */
  coalesce?: boolean;
  /** how long a looked-up function version is reused (default 1000 ms; 0 = every request asks) */
  functionCacheMs?: number;
}

export class InvokeService {
  private readonly accepts: Batcher<AcceptRequest, Accepted>;
  private readonly completions: Batcher<FinishedAttempt, AppendResult>;
  /** "name" or "name\0version" → the lookup and when it started (single flight, short TTL) */
  private readonly functions = new Map<string, { at: number; fn: Promise<FunctionVersion> }>();

  constructor(private readonly o: InvokeServiceOptions) {
    const single = o.coalesce === false ? { maxBatch: 1, maxConcurrentFlushes: 64 } : {};
    this.accepts = new Batcher((items) => acceptInvocations(o.db, items), single);
    this.completions = new Batcher(async (items) => {
      const { results, rejected } = await recordOutcomes(o.db, items);
      const byId = new Map(results.map((r) => [r.invocationId, r]));
      if (rejected.length > 0) o.logger.error({ rejected: rejected.map((r) => r.error.message) }, 'sync outcome not recorded');
      return items.map((i) => byId.get(i.state.id) as AppendResult);
    }, single);
  }

  get db(): Db {
    return this.o.db;
  }

  /**
   * A function by name and optional version; FunctionNotFound otherwise. Every invoke
   * starts here, so a found version is reused for functionCacheMs (1 s): concurrent
   * requests share one query. A change made in another process shows within that time;
   * one made through this process should call forgetFunction.
   */
  resolveFunction(name: string, version?: number): Promise<FunctionVersion> {
    const ttl = this.o.functionCacheMs ?? 1_000;
    if (ttl <= 0) return requireFunction(this.o.db, name, version);
    const key = version === undefined ? name : `${name}\u0000${version}`;
    const now = Date.now();
    const hit = this.functions.get(key);
    if (hit && now - hit.at < ttl) return hit.fn;
    const fn = requireFunction(this.o.db, name, version);
    const entry = { at: now, fn };
    this.functions.set(key, entry);
    // misses and failures are not kept: a function created a moment later must be found
    fn.catch(() => {
      if (this.functions.get(key) === entry) this.functions.delete(key);
    });
    if (this.functions.size > 10_000) this.functions.clear();
    return fn;
  }

  /** Drops cached versions of a function (call after updating or deleting it). */
  forgetFunction(name: string): void {
    for (const key of this.functions.keys()) if (key === name || key.startsWith(`${name}\u0000`)) this.functions.delete(key);
  }

  /** Async: resolves once `accepted` is committed. */
  async invokeAsync(fn: FunctionVersion, payload: unknown, options: InvokeOptions = {}): Promise<Accepted> {
    // reservedConcurrency 0 is accepted like any other; the worker dead-letters it
    return this.accepts.submit({ fn, invocationType: 'async', payload, idempotencyKey: options.idempotencyKey ?? null });
  }

  /**
   * Sync: the attempt is started in the accepting transaction, run here, and its
   * outcome recorded before returning. A repeated idempotency key returns the first
   * invocation's outcome (waiting for it when it is still running).
   */
  async invokeSync(fn: FunctionVersion, payload: unknown, options: InvokeOptions = {}): Promise<SyncResult> {
    const request: AcceptRequest = {
      fn,
      invocationType: 'sync',
      payload,
      idempotencyKey: options.idempotencyKey ?? null,
      startedBy: this.o.instanceId,
      leaseMs: fn.timeoutMs + LEASE_GRACE_MS,
    };
    const accepted =
      fn.reservedConcurrency === null ? await this.accepts.submit(request) : await this.acceptWithinConcurrency(fn, request);
    if (accepted.duplicate || !accepted.state) return this.awaitOutcome(accepted.invocationId);

    const state = accepted.state;
    // run() reports function problems as outcomes; a rejection is a bug of ours, but the
    // invocation is already started and must still end
    const outcome: Outcome & { log: string } = await this.o.runtimes
      .run(fn, { invocationId: state.id, attempt: state.attempts, payload, clientContext: options.clientContext }, options.signal)
      .catch((e: unknown) => {
        this.o.logger.error({ err: e, invocationId: state.id }, 'runtime failed to run a sync attempt');
        return { ok: false as const, error: { errorType: 'Runtime.Unknown', errorMessage: 'The runtime failed to run the handler', trace: [] }, durationMs: 0, log: '' };
      });
    await this.recordSync(state, fn, outcome);
    return {
      invocationId: state.id,
      functionVersion: fn.version,
      duplicate: false,
      ok: outcome.ok,
      result: outcome.ok ? outcome.result : null,
      error: outcome.ok ? null : outcome.error,
      log: outcome.log,
    };
  }

  /**
   * The function has run: its caller must get an answer, never a 5xx (SDKs retry those
   * and would run it again). Retry the write for a while; if the database stays away the
   * lease expires and recovery records the attempt as lost.
   */
  private async recordSync(state: InvocationState, fn: FunctionVersion, outcome: Outcome): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.completions.submit({ state, policy: fn, outcome });
        return;
      } catch (e) {
        if (attempt >= 5) {
          this.o.logger.error({ err: e, invocationId: state.id }, 'could not record a sync outcome; its lease will expire');
          return;
        }
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }

  /**
   * reservedConcurrency across every process: running attempts are the leased rows of
   * the queue table, counted under the function's concurrency row lock so two
   * accepting processes cannot both take the last slot.
   */
  private acceptWithinConcurrency(fn: FunctionVersion, request: AcceptRequest): Promise<Accepted> {
    return this.o.db.transaction().execute(async (tx) => {
      const free = (await lockFreeSlots(tx, [fn.name])).get(fn.name);
      if (free !== undefined && free < 1) {
        throw new LedgerError('TooManyRequests', 'Rate Exceeded.', {
          reason: 'ReservedFunctionConcurrentInvocationLimitExceeded',
          retryAfterSeconds: 1,
        });
      }
      const [accepted] = await acceptInvocations(tx, [request]);
      return accepted as Accepted;
    });
  }

  /** Waits for an earlier (idempotent) invocation to finish and answers with its outcome. */
  private async awaitOutcome(id: string): Promise<SyncResult> {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      const view = (await getInvocation(this.o.db, id)) as InvocationView;
      if (isTerminal(view.status)) {
        return {
          invocationId: id,
          functionVersion: view.functionVersion,
          duplicate: true,
          ok: view.status === 'succeeded',
          result: view.result,
          error: view.status === 'succeeded' ? null : (view.error ?? { errorType: view.deadLetterReason ?? view.status, errorMessage: view.status, trace: [] }),
          log: '',
        };
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
