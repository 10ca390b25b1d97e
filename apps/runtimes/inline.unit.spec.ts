import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, attemptRequest, moduleFunction } from './test-fixtures.ts';
import { createRuntimes } from './index.ts';

const runtimes = createRuntimes({ functionsDir: FIXTURES_DIR });
afterAll(() => runtimes.close());

const inline = (handler: string, overrides = {}) => moduleFunction(handler, { isolation: 'inline', ...overrides });

describe('inline isolation', () => {
  it('runs async and sync handlers on the calling thread', async () => {
    const sync = await runtimes.run(inline('throws.ts#syncValue'), attemptRequest({ a: 1 }));
    expect(sync).toMatchObject({ ok: true, result: { sync: { a: 1 } }, log: '' });
    // Second call takes the cached-handler fast path.
    expect(await runtimes.run(inline('throws.ts#syncValue'), attemptRequest(2))).toMatchObject({ ok: true, result: { sync: 2 } });
  });

  it('gives the same context and collects context.log', async () => {
    const outcome = await runtimes.run(
      inline('context-probe.ts', { name: 'probe', version: 2 }),
      attemptRequest('e', { attempt: 2, clientContext: { custom: true } }),
    );
    expect(outcome).toMatchObject({
      ok: true,
      // invoked without a qualifier: Lambda's `$LATEST`
      result: {
        event: 'e',
        functionName: 'probe',
        functionVersion: '$LATEST',
        invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:probe',
        attempt: 2,
        clientContext: { custom: true },
        aborted: false,
      },
    });
    expect(outcome.log).toMatch(/\tINFO\thello/);
    expect(outcome.log).toMatch(/\tERROR\tbad thing 42/);
  });

  it('reports Sandbox.Timedout at the deadline and aborts context.signal', async () => {
    const key = `inline-abort-${Date.now()}`;
    const outcome = await runtimes.run(inline('context-probe.ts#recordAbort', { timeoutMs: 200 }), attemptRequest({ key }));
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.20 seconds' } });
    await new Promise((r) => setImmediate(r));
    const seen = (globalThis as unknown as Record<string, { abortedAt: number; deadline: number } | undefined>)[key];
    expect(seen).toBeDefined();
    expect(seen!.abortedAt).toBeGreaterThanOrEqual(seen!.deadline - 5);
  });

  it('reports thrown errors, result limits and missing handlers like threads do', async () => {
    expect(await runtimes.run(inline('throws.ts'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'PaymentDeclined', errorMessage: 'card declined' },
    });
    expect(await runtimes.run(inline('throws.ts#syncThrow'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Error', errorMessage: 'thrown synchronously' },
    });
    expect(await runtimes.run(inline('results.ts#big'), attemptRequest({ bytes: 6 * 1024 * 1024 + 1 }))).toMatchObject({
      ok: false,
      error: { errorType: 'Function.ResponseSizeTooLarge' },
    });
    expect(await runtimes.run(inline('results.ts#nothing'), attemptRequest())).toMatchObject({ ok: true, result: null });
    expect(await runtimes.run(inline('results.ts#bigint'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.InvalidResult' },
    });
    expect(await runtimes.run(inline('../handler-path.ts'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.HandlerNotFound' },
    });
    expect(await runtimes.run(inline('throws.ts#notAFunction'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.HandlerNotFound' },
    });
    expect(await runtimes.run(inline('throws-at-import.ts'), attemptRequest())).toMatchObject({
      ok: false,
      error: { errorType: 'Runtime.ImportModuleError' },
    });
  });

  it('stops waiting when the caller aborts', async () => {
    const controller = new AbortController();
    const pending = runtimes.run(inline('thread-id.ts#politeSleep', { timeoutMs: 60_000 }), attemptRequest(), controller.signal);
    controller.abort(new Error('bye'));
    expect(await pending).toMatchObject({ ok: false, error: { errorType: 'Runtime.Aborted', errorMessage: 'Attempt aborted: bye' } });
  });

  // Inline isolation cannot stop a handler that blocks the event loop, but the record must
  // say the attempt overran its timeout, not that it succeeded. (The blocks are busy-waits
  // of 300 ms against a 100 ms timeout: the outcome does not depend on the machine's speed.)
  for (const handler of ['blocks.ts#blockSync', 'blocks.ts#blockBeforeAwait']) {
    it(`records a handler that blocked the event loop past its timeout as timed out (${handler})`, async () => {
      const outcome = await runtimes.run(inline(handler, { timeoutMs: 100 }), attemptRequest({ ms: 300 }));
      expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 0.10 seconds' } });
      expect(outcome.durationMs).toBeGreaterThan(100); // past its timeout: the time it really ran
      expect(outcome.log).toMatch(/The handler blocked the event loop for \d+ ms, past its 100 ms timeout; inline isolation cannot interrupt it/);
    });
  }

  it('records a handler that settles after its deadline (blocking after an await) as timed out', async () => {
    const outcome = await runtimes.run(inline('blocks.ts#blockAfterAwait', { timeoutMs: 100 }), attemptRequest({ ms: 300 }));
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Sandbox.Timedout' } });
    expect(outcome.durationMs).toBeGreaterThan(100); // past its timeout: the time it really ran
  });
});
