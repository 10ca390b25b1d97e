// ReportBatchItemFailures: which responses fail which messages (AWS's rules).
import { describe, expect, it } from 'vitest';
import type { AttemptOutcome } from '../../apps/runtimes/index.ts';
import { decideBatch, INVALID_BATCH_RESPONSE, parseBatchItemFailures } from '../../apps/worker/event-sources/index.ts';

const ids = ['a', 'b', 'c'];
const ok = (result: unknown): AttemptOutcome => ({ ok: true, result, durationMs: 5, log: '' });

describe('parseBatchItemFailures', () => {
  it.each([
    ['no response', undefined],
    ['null', null],
    ['an empty object', {}],
    ['a null list', { batchItemFailures: null }],
    ['an empty list', { batchItemFailures: [] }],
  ])('%s: every message succeeded', (_what, result) => {
    expect(parseBatchItemFailures(result, ids)).toEqual({ failed: [] });
  });

  it('names the failed subset (duplicates once)', () => {
    const r = parseBatchItemFailures({ batchItemFailures: [{ itemIdentifier: 'b' }, { itemIdentifier: 'c' }, { itemIdentifier: 'b' }] }, ids);
    expect(r).toEqual({ failed: ['b', 'c'] });
  });

  it.each([
    ['a string', 'ok'],
    ['a list', [{ itemIdentifier: 'a' }]],
    ['a number', 1],
    ['a list that is not a list', { batchItemFailures: 'b' }],
    ['an unknown identifier', { batchItemFailures: [{ itemIdentifier: 'zzz' }] }],
    ['an empty identifier', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['a null identifier', { batchItemFailures: [{ itemIdentifier: null }] }],
    ['a misspelt key', { batchItemFailures: [{ itemIdentifer: 'a' }] }],
    ['a bare id', { batchItemFailures: ['a'] }],
  ])('%s: the whole batch failed', (_what, result) => {
    expect(parseBatchItemFailures(result, ids)).toHaveProperty('invalid');
  });
});

describe('decideBatch', () => {
  it('without reportBatchItemFailures a successful invocation deletes every message, whatever it returned', () => {
    const d = decideBatch(ids, false, ok({ batchItemFailures: [{ itemIdentifier: 'a' }] }));
    expect(d).toMatchObject({ succeeded: ids, failed: [], outcome: { ok: true } });
  });

  it('a thrown error returns every message, with or without reporting', () => {
    const thrown: AttemptOutcome = { ok: false, error: { errorType: 'Error', errorMessage: 'x', trace: [] }, durationMs: 1, log: '' };
    for (const report of [true, false]) {
      expect(decideBatch(ids, report, thrown)).toMatchObject({ succeeded: [], failed: ids, outcome: { ok: false, error: { errorType: 'Error' } } });
    }
  });

  it('with reportBatchItemFailures only the named messages return', () => {
    const d = decideBatch(ids, true, ok({ batchItemFailures: [{ itemIdentifier: 'b' }] }));
    expect(d).toMatchObject({ succeeded: ['a', 'c'], failed: ['b'], outcome: { ok: true } });
  });

  it('an invalid response fails the batch and the poll invocation', () => {
    const d = decideBatch(ids, true, ok({ batchItemFailures: [{ itemIdentifier: 'nope' }] }));
    expect(d.succeeded).toEqual([]);
    expect(d.failed).toEqual(ids);
    expect(d.outcome).toMatchObject({ ok: false, error: { errorType: INVALID_BATCH_RESPONSE } });
    expect(d.outcome.ok || d.outcome.error.errorMessage).toContain('nope');
  });
});
