// The invoke service: what every edge (Lambda routes, native routes, GraphQL) calls.
// Sync: a runtime is reserved (or 429, nothing written), `accepted` + `started` committed,
// the handler runs at once, its outcome recorded.
// Async: `accepted` committed, then acknowledged; the worker takes it from there.
// Accepts and sync completions are group-committed (db/group-commit.ts).
import type { Logger } from 'pino';
import { outcomeNotStored, recordOutcomes, storableOutcome, type FinishedAttempt, type Outcome } from '../../db/attempts.ts';
import { lockFreeSlots } from '../../db/concurrency.ts';
import { getAlias, pickAliasVersion, type Alias } from '../../db/control-plane.ts';
import { LedgerError, SequenceConflict } from '../../db/errors.ts';
import { requireFunction, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations, getInvocation, type AcceptRequest, type Accepted, type InvocationView } from '../../db/invocations.ts';
import { DEFAULT_MAX_CHAIN_DEPTH, isLoopStopped, isTerminal, type FunctionErrorData, type InvocationState } from '../../db/lifecycle.ts';
import { GroupCommit, NO_RETRY, OUTCOME_RETRY } from '../../db/group-commit.ts';
import type { LedgerNotifications } from '../../db/notifications.ts';
import { DEFAULT_LEASE_GRACE_MS } from '../../db/queue-rows.ts';
import type { Db } from '../../db/schema.ts';
import type { Runtimes } from '../runtimes/index.ts';
import type { Registry } from 'prom-client';
import { invocationMetrics, type InvocationMetrics } from '../telemetry/metrics.ts';
import { reportOutcome } from '../telemetry/outcome-log.ts';
import { activeTraceId, attemptAttributes, currentTraceContext, failSpan, inSpan, SpanKind, tracingOn } from '../telemetry/tracing.ts';
import { OutcomeWaiters } from './outcomes.ts';

export { ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT } from '../../db/limits.ts';

export interface InvokeOptions {
  idempotencyKey?: string | null;
  clientContext?: unknown;
  /** aborts the attempt (and the wait for a runtime) */
  signal?: AbortSignal;
  /**
   * the caller's connection: when it closes, stop waiting for a runtime or for an earlier
   * duplicate's outcome; a started attempt runs on
   */
  clientSignal?: AbortSignal;
  /** the invocation's depth in a chain (function-ref.ts chainDepthOf); 0 from outside */
  chainDepth?: number;
  /** the alias the caller named; recorded with the invocation */
  alias?: string | undefined;
  /** the version number the caller named (`name:3`); recorded with the invocation, so the handler sees it (context.functionVersion) */
  qualifier?: string | undefined;
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
  /** a sync attempt's lease is timeoutMs + this (default 30 s, WORKER_LEASE_GRACE_MS) */
  leaseGraceMs?: number;
  /** the process's LISTEN connection: wakes sync duplicates waiting for the first outcome */
  notifications?: LedgerNotifications;
  /** MAX_CHAIN_DEPTH (docs/worker.md): async invocations this deep are stopped, sync ones refused (default 16, 0 = no limit) */
  maxChainDepth?: number;
  /** the process registry: sync invocations, throttles and commit batches are counted there (docs/observability.md) */
  registry?: Registry;
}

type SyncOutcome = Outcome & { log: string };

export class InvokeService {
  private readonly accepts: GroupCommit<AcceptRequest, Accepted>;
  /** sync outcomes; each resolves with the outcome actually recorded */
  private readonly completions: GroupCommit<FinishedAttempt & { outcome: SyncOutcome }, SyncOutcome>;
  /** "name" or "name\0version" → the lookup and when it started (single flight, short TTL) */
  private readonly functions = new Map<string, { at: number; fn: Promise<FunctionVersion> }>();
  /** "name\0alias" → the alias lookup and when it started */
  private readonly aliases = new Map<string, { at: number; alias: Promise<Alias> }>();
  /** sync duplicates of an idempotency key waiting for the first invocation's outcome */
  readonly waiters: OutcomeWaiters;
  private readonly metrics: InvocationMetrics | null;

  constructor(private readonly o: InvokeServiceOptions) {
    this.metrics = o.registry ? invocationMetrics(o.registry) : null;
    const batchSize = (kind: string) => (this.metrics ? (n: number) => this.metrics?.commitBatch.observe({ kind }, n) : undefined);
    this.waiters = new OutcomeWaiters({
      db: o.db,
      ...(o.notifications ? { notifications: o.notifications } : {}),
      onError: (e) => o.logger.warn({ err: e }, 'checking awaited invocations failed; retrying'),
    });
    const single = o.coalesce === false ? { maxBatch: 1, maxConcurrentFlushes: 64 } : {};
    // an accept whose commit may have happened is not written again: the caller gets 503
    const acceptBatch = batchSize('accept');
    this.accepts = new GroupCommit(
      (items) => {
        acceptBatch?.(items.length);
        return acceptInvocations(o.db, items);
      },
      { ...single, retry: NO_RETRY },
    );
    const outcomeBatch = batchSize('sync_outcome');
    this.completions = new GroupCommit(
      async (items) => {
        outcomeBatch?.(items.length);
        const { rejected } = await recordOutcomes(o.db, items);
        if (rejected.length > 0) o.logger.error({ rejected: rejected.map((r) => r.error.message) }, 'sync outcome not recorded');
        return items.map((i) => i.outcome);
      },
      {
        ...single,
        retry: OUTCOME_RETRY,
        // refused on its own: recorded as a failure of the attempt, and the caller told the same
        replace: (item, e) => (e instanceof SequenceConflict ? null : { ...item, outcome: outcomeNotStored(item.outcome, e) }),
      },
    );
  }

  private get maxChainDepth(): number {
    return this.o.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
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

  /** Drops cached versions and aliases of a function (call after updating or deleting it). */
  forgetFunction(name: string): void {
    for (const key of this.functions.keys()) if (key === name || key.startsWith(`${name}\u0000`)) this.functions.delete(key);
    for (const key of this.aliases.keys()) if (key.startsWith(`${name}\u0000`)) this.aliases.delete(key);
  }

  /**
   * The version a reference names: an alias picks one by its weights (each invoke draws
   * anew), a number is that version, nothing is the latest. Aliases are cached like
   * functions (functionCacheMs), so a moved alias shows within that time everywhere.
   */
  async resolveTarget(
    ref: { name: string; version: number | undefined; alias?: string | undefined },
    random: () => number = Math.random,
  ): Promise<{ fn: FunctionVersion; alias?: string; qualifier?: string }> {
    if (ref.alias === undefined) {
      const fn = await this.resolveFunction(ref.name, ref.version);
      return ref.version === undefined ? { fn } : { fn, qualifier: String(ref.version) };
    }
    const ttl = this.o.functionCacheMs ?? 1_000;
    const key = `${ref.name}\u0000${ref.alias}`;
    const now = Date.now();
    let hit = this.aliases.get(key);
    if (!hit || now - hit.at >= ttl) {
      const entry = { at: now, alias: getAlias(this.o.db, ref.name, ref.alias) };
      this.aliases.set(key, entry);
      entry.alias.catch(() => {
        if (this.aliases.get(key) === entry) this.aliases.delete(key);
      });
      if (this.aliases.size > 10_000) this.aliases.clear();
      hit = entry;
    }
    const alias = await hit.alias.catch((e: unknown) => {
      if (e instanceof LedgerError && e.code === 'FunctionNotFound') throw new LedgerError('FunctionNotFound', `Function not found: ${ref.name}:${ref.alias}`);
      throw e;
    });
    return { fn: await this.resolveFunction(ref.name, pickAliasVersion(alias, random())), alias: ref.alias };
  }

  /** Async: resolves once `accepted` is committed. */
  async invokeAsync(fn: FunctionVersion, payload: unknown, options: InvokeOptions = {}): Promise<Accepted> {
    // reservedConcurrency 0 is accepted like any other; the worker dead-letters it. A
    // recursive loop is accepted already stopped (dead-lettered): the ledger says why.
    return this.accepts.submit({
      fn,
      invocationType: 'async',
      payload,
      idempotencyKey: options.idempotencyKey ?? null,
      ...(options.chainDepth ? { chainDepth: options.chainDepth, maxChainDepth: this.maxChainDepth } : {}),
      ...(tracingOn() ? { trace: currentTraceContext() } : {}),
      ...(options.alias ? { alias: options.alias } : {}),
      ...(options.qualifier ? { qualifier: options.qualifier } : {}),
    });
  }

  /**
   * Sync: a runtime is reserved first, so the attempt really starts when `started` is
   * committed (in the accepting transaction) and its lease (timeoutMs + grace) covers the
   * run, not a wait in a queue. When no runtime can be expected within the function's
   * timeout, or none frees up in that time, the caller gets 429 TooManyRequests with a
   * Retry-After and nothing is written. A repeated idempotency key returns the first
   * invocation's outcome (waiting for it when it is still running).
   */
  async invokeSync(fn: FunctionVersion, payload: unknown, options: InvokeOptions = {}): Promise<SyncResult> {
    // a sync call cannot be dead-lettered: past the loop limit it is refused, nothing written
    if (isLoopStopped(options.chainDepth ?? 0, this.maxChainDepth)) {
      throw new LedgerError(
        'RecursiveInvocation',
        `Invocation stopped: ${fn.name} was called ${options.chainDepth} invocations deep in one chain; the limit is ${this.maxChainDepth} (MAX_CHAIN_DEPTH)`,
      );
    }
    const slot = await this.o.runtimes.reserve(fn, { maxWaitMs: fn.timeoutMs, signal: anySignal(options.signal, options.clientSignal) });
    if (!slot.granted) {
      this.metrics?.throttles.inc({ function: fn.name, type: 'sync', reason: 'ConcurrentInvocationLimitExceeded' });
      throw new LedgerError('TooManyRequests', 'Rate Exceeded.', {
        reason: 'ConcurrentInvocationLimitExceeded',
        retryAfterSeconds: Math.max(1, Math.ceil(slot.retryAfterMs / 1000)),
        detail: slot.message,
      });
    }
    const request: AcceptRequest = {
      fn,
      invocationType: 'sync',
      payload,
      idempotencyKey: options.idempotencyKey ?? null,
      startedBy: this.o.instanceId,
      leaseMs: fn.timeoutMs + (this.o.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS),
      ...(options.chainDepth ? { chainDepth: options.chainDepth } : {}),
      ...(tracingOn() ? { trace: currentTraceContext() } : {}),
      ...(options.alias ? { alias: options.alias } : {}),
      ...(options.qualifier ? { qualifier: options.qualifier } : {}),
    };
    let accepted: Accepted;
    try {
      accepted = fn.reservedConcurrency === null ? await this.accepts.submit(request) : await this.acceptWithinConcurrency(fn, request);
    } catch (e) {
      slot.release();
      throw e;
    }
    if (accepted.duplicate || !accepted.state) {
      slot.release();
      return this.awaitOutcome(accepted.invocationId, fn, anySignal(options.signal, options.clientSignal));
    }

    const state = accepted.state;
    // run() reports function problems as outcomes; a rejection is a bug of ours, but the
    // invocation is already started and must still end
    const attributes = tracingOn()
      ? attemptAttributes({ invocationId: state.id, functionName: fn.name, functionVersion: fn.version, attempt: state.attempts, trigger: 'http' })
      : {};
    const ran: SyncOutcome = await inSpan(fn.name, { kind: SpanKind.INTERNAL, attributes }, async (span) => {
      const ran = await slot
        .run(
          {
            invocationId: state.id,
            attempt: state.attempts,
            payload,
            clientContext: options.clientContext,
            chainDepth: options.chainDepth ?? 0,
            qualifier: options.alias ?? options.qualifier ?? null,
          },
          options.signal,
        )
        .catch((e: unknown) => {
          this.o.logger.error({ err: e, invocationId: state.id }, 'runtime failed to run a sync attempt');
          return { ok: false as const, error: { errorType: 'Runtime.Unknown', errorMessage: 'The runtime failed to run the handler', trace: [] }, durationMs: 0, log: '' };
        });
      if (!ran.ok) failSpan(span, ran.error.errorType, ran.error.errorMessage);
      return ran;
    });
    const outcome = await this.recordSync(state, fn, storableOutcome(ran));
    const traceId = activeTraceId();
    reportOutcome(this.o.logger, this.metrics, {
      invocationId: state.id,
      functionName: fn.name,
      functionVersion: fn.version,
      type: 'sync',
      attempt: state.attempts,
      status: outcome.ok ? 'succeeded' : 'failed',
      durationMs: outcome.durationMs,
      ...(outcome.ok ? {} : { errorType: outcome.error.errorType }),
      ...(traceId ? { traceId } : {}),
    });
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
   * and would run it again), and that answer is the outcome recorded. The group commit
   * retries while the database is away; if it stays away the lease expires and recovery
   * records the attempt as lost.
   */
  private async recordSync(state: InvocationState, fn: FunctionVersion, outcome: SyncOutcome): Promise<SyncOutcome> {
    try {
      return await this.completions.submit({ state, policy: fn, outcome });
    } catch (e) {
      this.o.logger.error({ err: e, invocationId: state.id }, 'could not record a sync outcome; its lease will expire');
      return outcome;
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
        this.metrics?.throttles.inc({ function: fn.name, type: 'sync', reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' });
        throw new LedgerError('TooManyRequests', 'Rate Exceeded.', {
          reason: 'ReservedFunctionConcurrentInvocationLimitExceeded',
          retryAfterSeconds: 1,
        });
      }
      const [accepted] = await acceptInvocations(tx, [request]);
      return accepted as Accepted;
    });
  }

  /**
   * Waits for an earlier (idempotent) invocation to finish and answers with its outcome:
   * woken by the ledger's notification, for at most the function's timeout (then
   * InvocationInProgress, 409), and not a moment longer than the client stays.
   */
  private async awaitOutcome(id: string, fn: FunctionVersion, signal?: AbortSignal): Promise<SyncResult> {
    const deadline = Date.now() + fn.timeoutMs;
    for (;;) {
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
      const left = deadline - Date.now();
      const outcome = left > 0 ? await this.waiters.wait(id, left, signal) : 'timeout';
      if (outcome === 'aborted') {
        throw new LedgerError('InvocationInProgress', `invocation ${id} is still running; the client went away`, { invocationId: id });
      }
      if (outcome === 'timeout') {
        const last = (await getInvocation(this.o.db, id)) as InvocationView;
        if (isTerminal(last.status)) continue;
        throw new LedgerError(
          'InvocationInProgress',
          `invocation ${id} with this idempotency key has not finished within the function's timeout (${fn.timeoutMs} ms); ` +
            `read its outcome later at GET /invocations/${id}, or retry the same request`,
          { invocationId: id },
        );
      }
    }
  }
}

/** Either signal, or undefined when there is none. */
function anySignal(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return AbortSignal.any([a, b]);
}
