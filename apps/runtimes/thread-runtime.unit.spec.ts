import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, attemptRequest, moduleFunction } from './test-fixtures.ts';
import { createRuntimes } from './index.ts';

// One thread per memory size is enough here and makes thread reuse observable.
const runtimes = createRuntimes({ functionsDir: FIXTURES_DIR, poolSize: 1 });
afterAll(() => runtimes.close());

describe('thread isolation', () => {
  it('runs a .ts handler in a thread and returns its result', async () => {
    const outcome = await runtimes.run(moduleFunction('../../../functions/echo.ts'), attemptRequest());
    // echo.ts lives outside this functionsDir: refused, not run.
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.HandlerNotFound' } });

    const echo = createRuntimes({ functionsDir: new URL('../../functions/', import.meta.url).pathname, poolSize: 1 });
    try {
      const ok = await echo.run(moduleFunction('echo.ts'), attemptRequest({ hello: ['world', 1] }));
      expect(ok).toMatchObject({ ok: true, result: { hello: ['world', 1] } });
    } finally {
      await echo.close();
    }
  });

  it('kills an infinite loop at the timeout and keeps serving', async () => {
    // an infinite loop never returns: an outcome at all means the thread was killed
    const outcome = await runtimes.run(moduleFunction('infinite-loop.ts', { timeoutMs: 500 }), attemptRequest());
    expect(outcome).toMatchObject({
      ok: false,
      error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.50 seconds' },
    });

    const next = await runtimes.run(moduleFunction('throws.ts#syncValue', { timeoutMs: 500 }), attemptRequest('after'));
    expect(next).toMatchObject({ ok: true, result: { sync: 'after' } });
  });

  it('times out a handler whose module the thread has already loaded (no started message)', async () => {
    // long enough that the calls meant to return never meet it on a busy machine
    const fn = moduleFunction('infinite-loop.ts#spinWhenAsked', { timeoutMs: 3_000 });
    expect(await runtimes.run(fn, attemptRequest({ spin: false }))).toMatchObject({ ok: true, result: 'returned' });
    const outcome = await runtimes.run(fn, attemptRequest({ spin: true }));
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 3.00 seconds' } });
    // the replacement thread loads the module cold again and serves
    expect(await runtimes.run(fn, attemptRequest({ spin: false }))).toMatchObject({ ok: true, result: 'returned' });
  });

  it('replaces a killed thread but reuses one whose handler honoured the signal', async () => {
    // the attempts meant to succeed get a timeout no busy machine reaches; the ones meant to time out a short one
    const fn = moduleFunction('thread-id.ts', { timeoutMs: 30_000, memoryMb: 48 });
    const first = await runtimes.run(fn, attemptRequest());
    expect(first.ok).toBe(true);

    const polite = await runtimes.run(moduleFunction('thread-id.ts#politeSleep', { timeoutMs: 300, memoryMb: 48 }), attemptRequest());
    expect(polite).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout' } });
    const afterPolite = await runtimes.run(fn, attemptRequest());
    expect(afterPolite).toMatchObject({ ok: true, result: first.ok ? first.result : null });

    const loop = await runtimes.run(moduleFunction('infinite-loop.ts', { timeoutMs: 300, memoryMb: 48 }), attemptRequest());
    expect(loop).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout' } });
    const afterLoop = await runtimes.run(fn, attemptRequest());
    expect(afterLoop.ok).toBe(true);
    expect(afterLoop.ok && afterLoop.result).not.toBe(first.ok && first.result);
  });

  it('reports an out-of-memory thread as Runtime.OutOfMemory and recovers', async () => {
    const outcome = await runtimes.run(moduleFunction('allocate.ts', { memoryMb: 32, timeoutMs: 30_000 }), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.OutOfMemory' } });
    expect(outcome.ok || outcome.error.errorMessage).toContain('32 MB');

    const next = await runtimes.run(moduleFunction('thread-id.ts', { memoryMb: 32 }), attemptRequest());
    expect(next.ok).toBe(true);
  });

  it('reports process.exit as Runtime.ExitError naming the exit code', async () => {
    const outcome = await runtimes.run(moduleFunction('exit.ts'), attemptRequest({ code: 3 }));
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.ExitError' } });
    expect(outcome.ok || outcome.error.errorMessage).toMatch(/exit status 3/);
    expect((await runtimes.run(moduleFunction('thread-id.ts'), attemptRequest())).ok).toBe(true);
  });

  it('reports an exception thrown outside the awaited promise as Runtime.ExitError', async () => {
    const outcome = await runtimes.run(moduleFunction('uncaught.ts'), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.ExitError' } });
    expect(outcome.ok || outcome.error.errorMessage).toMatch(/exit status 1 \(TypeError: thrown from a timer\)/);
  });

  it('reports a module that throws at import as Runtime.ImportModuleError', async () => {
    const outcome = await runtimes.run(moduleFunction('throws-at-import.ts'), attemptRequest());
    expect(outcome).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.ImportModuleError', errorMessage: 'Error: broken at import' },
    });
  });

  it('turns thrown values into {errorType, errorMessage, trace}', async () => {
    const custom = await runtimes.run(moduleFunction('throws.ts'), attemptRequest());
    expect(custom).toMatchObject({ ok: false, error: { errorType: 'PaymentDeclined', errorMessage: 'card declined' } });
    expect(custom.ok || custom.error.trace.some((l) => l.includes('throws.ts'))).toBe(true);

    const range = await runtimes.run(moduleFunction('throws.ts#named'), attemptRequest());
    expect(range).toMatchObject({ ok: false, error: { errorType: 'RangeError', errorMessage: 'out of range' } });

    const object = await runtimes.run(moduleFunction('throws.ts#notAnError'), attemptRequest());
    expect(object).toMatchObject({ ok: false, error: { errorType: 'Error', errorMessage: '{"code":42}', trace: [] } });

    const text = await runtimes.run(moduleFunction('throws.ts#aString'), attemptRequest());
    expect(text).toMatchObject({ ok: false, error: { errorType: 'Error', errorMessage: 'plain string' } });

    const sync = await runtimes.run(moduleFunction('throws.ts#syncThrow'), attemptRequest());
    expect(sync).toMatchObject({ ok: false, error: { errorType: 'Error', errorMessage: 'thrown synchronously' } });
  });

  it('refuses handlers that are missing, outside the directory or not functions', async () => {
    for (const handler of ['nope.ts', '../thread-pool.ts', '/etc/passwd', 'throws.ts#notAFunction', 'throws.ts#missing']) {
      const outcome = await runtimes.run(moduleFunction(handler), attemptRequest());
      expect(outcome, handler).toMatchObject({ ok: false, error: { errorType: 'Runtime.HandlerNotFound' } });
    }
    const none = await runtimes.run(moduleFunction('x', { handler: null }), attemptRequest());
    expect(none).toMatchObject({ ok: false, error: { errorType: 'Runtime.HandlerNotFound' } });
  });

  it('gives the handler its context and collects context.log and console output', async () => {
    const before = Date.now();
    const outcome = await runtimes.run(
      moduleFunction('context-probe.ts', { name: 'probe', version: 7, timeoutMs: 30_000 }),
      attemptRequest({ n: 1 }, { invocationId: '11111111-1111-4111-8111-111111111111', attempt: 3, clientContext: { app: 'cli' }, qualifier: 'live' }),
    );
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const seen = outcome.result as Record<string, number>;
    expect(seen).toMatchObject({
      event: { n: 1 },
      invocationId: '11111111-1111-4111-8111-111111111111',
      awsRequestId: '11111111-1111-4111-8111-111111111111',
      functionName: 'probe',
      // invoked through an alias: the version it picked, as a string, and the alias in the ARN
      functionVersion: '7',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:probe:live',
      attempt: 3,
      clientContext: { app: 'cli' },
      aborted: false,
    });
    expect(seen['deadline']).toBeGreaterThanOrEqual(before + 30_000);
    expect(seen['remaining']).toBeGreaterThan(0);
    expect(seen['remaining']).toBeLessThanOrEqual(30_000);
    expect(outcome.log).toMatch(/\tINFO\thello \{ from: 'context.log' \}\n/);
    expect(outcome.log).toMatch(/\tWARN\tcareful\n/);
    expect(outcome.log).toMatch(/\tERROR\tbad thing 42\n/);
    expect(outcome.log).toMatch(/\tINFO\tvia console\n/);
  });

  it('aborts context.signal at the deadline and keeps the log written before it', async () => {
    const outcome = await runtimes.run(moduleFunction('context-probe.ts#waitForAbort', { timeoutMs: 300 }), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.30 seconds' } });
    expect(outcome.log).toContain('waiting for the deadline');
  });

  it('keeps the log of an attempt that was killed', async () => {
    const outcome = await runtimes.run(moduleFunction('infinite-loop.ts#logThenLoop', { timeoutMs: 200 }), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout' } });
    expect(outcome.log).toMatch(/\tINFO\tabout to spin\n.*\tERROR\tSandbox.Timedout: Task timed out after 0.20 seconds\n$/s);
  });

  it('checks results: size limit, JSON-serialisable, undefined as null', async () => {
    const big = await runtimes.run(moduleFunction('results.ts#big', { memoryMb: 128 }), attemptRequest({ bytes: 6 * 1024 * 1024 }));
    expect(big).toMatchObject({ ok: false, error: { errorType: 'Function.ResponseSizeTooLarge' } });
    // The JSON string adds two quote bytes: this one is exactly at the limit.
    const atLimit = await runtimes.run(moduleFunction('results.ts#big', { memoryMb: 128 }), attemptRequest({ bytes: 6 * 1024 * 1024 - 2 }));
    expect(atLimit.ok).toBe(true);

    expect(await runtimes.run(moduleFunction('results.ts#nothing'), attemptRequest())).toMatchObject({ ok: true, result: null });
    expect(await runtimes.run(moduleFunction('results.ts#bigint'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.InvalidResult' },
    });
    expect(await runtimes.run(moduleFunction('results.ts#circular'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.InvalidResult' },
    });
    expect(await runtimes.run(moduleFunction('results.ts#date'), attemptRequest())).toMatchObject({
      ok: true,
      result: { at: '1970-01-01T00:00:00.000Z' },
    });
  });

  it('queues attempts when every thread is busy', async () => {
    const fn = moduleFunction('thread-id.ts', { memoryMb: 40 });
    const outcomes = await Promise.all([1, 2, 3, 4].map(() => runtimes.run(fn, attemptRequest())));
    expect(outcomes.every((o) => o.ok)).toBe(true);
  });

  it('stops an attempt when the caller aborts, terminating its thread', async () => {
    const controller = new AbortController();
    const pending = runtimes.run(moduleFunction('infinite-loop.ts', { timeoutMs: 60_000 }), attemptRequest(), controller.signal);
    setTimeout(() => controller.abort(new Error('shutting down')), 300);
    const outcome = await pending;
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.Aborted', errorMessage: 'Attempt aborted: shutting down' } });

    const already = await runtimes.run(moduleFunction('thread-id.ts'), attemptRequest(), AbortSignal.abort());
    expect(already).toMatchObject({ ok: false, error: { errorType: 'Runtime.Aborted' } });
    expect((await runtimes.run(moduleFunction('thread-id.ts'), attemptRequest())).ok).toBe(true);
  });
});
