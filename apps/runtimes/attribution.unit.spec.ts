// Threads are shared by functions of the same memory size, so an error must be blamed on
// the attempt whose code raised it, or on none: code an ended attempt left behind (a
// timer, an unhandled rejection, process.exit) must not fail the attempt running next
// on that thread, and the thread that saw it is retired.
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { FIXTURES_DIR, attemptRequest, moduleFunction } from './test-fixtures.ts';
import { createRuntimes } from './index.ts';

const warnings: string[] = [];
const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
// one thread: the neighbour surely runs on the thread the late code lives in
const runtimes = createRuntimes({ functionsDir: FIXTURES_DIR, poolSize: 1, logger });
afterAll(() => runtimes.close());

const latethrow = moduleFunction('late.ts', { name: 'latethrow' });
const neighbour = moduleFunction('late.ts#neighbour', { name: 'neighbour' });
const whichThread = moduleFunction('late.ts#whichThread', { name: 'which' });

describe('errors are attributed to the attempt that caused them, or to none', () => {
  for (const how of ['throw', 'reject', 'exit'] as const) {
    it(`a ${how} left behind by an ended attempt does not fail another function's attempt, and its thread is retired`, async () => {
      const key = `k-${how}`;
      const first = await runtimes.run(latethrow, attemptRequest({ how, key }, { invocationId: '00000000-0000-4000-8000-00000000aaaa' }));
      expect(first).toMatchObject({ ok: true, result: 'returned before the boom' });

      const next = await runtimes.run(neighbour, attemptRequest({ key }));
      expect(next).toMatchObject({ ok: true });
      const ranOn = next.ok ? (next.result as { threadId: number }).threadId : -1;

      // the thread that saw the stray error is not reused
      const after = await runtimes.run(whichThread, attemptRequest());
      expect(after.ok).toBe(true);
      expect(after.ok && after.result).not.toBe(ranOn);
      // and the operator learns whose code it was
      expect(warnings.join('')).toContain('00000000-0000-4000-8000-00000000aaaa');
    });
  }

  it('the attempt whose own code throws outside its promise still fails, as Runtime.ExitError', async () => {
    const outcome = await runtimes.run(moduleFunction('uncaught.ts'), attemptRequest());
    expect(outcome).toMatchObject({ ok: false, error: { errorType: 'Runtime.ExitError' } });
    expect((await runtimes.run(whichThread, attemptRequest())).ok).toBe(true);
  });
});
