import { describe, expect, it } from 'vitest';
import { functionConfigSchema, type FunctionVersion } from '../../db/functions.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import { destinationOf, invocationRecord } from './destinations.ts';

const fn = (over: Partial<FunctionVersion> = {}): FunctionVersion => ({
  ...functionConfigSchema.parse({ runtime: 'MODULE', handler: 'x.ts' }),
  name: 'orders',
  version: 3,
  createdAt: new Date(0),
  ...over,
});

const state = (over: Partial<InvocationState> = {}): InvocationState => ({
  id: '11111111-1111-4111-8111-111111111111',
  functionName: 'orders',
  functionVersion: 3,
  invocationType: 'async',
  status: 'succeeded',
  attempts: 2,
  failuresSinceRedrive: 1,
  lastSeq: 6,
  lastType: 'succeeded',
  pendingAfterFailure: null,
  idempotencyKey: null,
  errorType: null,
  deadLetterReason: null,
  acceptedAt: new Date(0),
  startedAt: new Date(0),
  finishedAt: new Date(0),
  updatedAt: new Date(0),
  runAt: null,
  workerId: null,
  ...over,
});

describe('destinations', () => {
  it('success goes to onSuccess, dead letters to onFailure with their reason, sync invocations nowhere', () => {
    const f = fn({ onSuccess: 'function:a', onFailure: 'http://x.test/hook' });
    expect(destinationOf({ state: state(), fn: f, payload: {} })).toEqual({ destination: 'function:a', condition: 'Success' });
    expect(
      destinationOf({ state: state({ status: 'dead_lettered', deadLetterReason: 'EventAgeExceeded' }), fn: f, payload: {} }),
    ).toEqual({ destination: 'http://x.test/hook', condition: 'EventAgeExceeded' });
    expect(destinationOf({ state: state({ invocationType: 'sync' }), fn: f, payload: {} })).toBeNull();
    expect(destinationOf({ state: state(), fn: fn(), payload: {} })).toBeNull();
  });

  it('builds the Lambda invocation record', () => {
    const now = new Date('2026-01-01T00:00:00.000Z');
    const ok = invocationRecord({ state: state(), fn: fn(), payload: { a: 1 }, result: { b: 2 } }, 'Success', now);
    expect(ok).toEqual({
      version: '1.0',
      timestamp: '2026-01-01T00:00:00.000Z',
      requestContext: {
        requestId: '11111111-1111-4111-8111-111111111111',
        functionArn: 'arn:aws:lambda:local:000000000000:function:orders:3',
        condition: 'Success',
        approximateInvokeCount: 2,
      },
      requestPayload: { a: 1 },
      responseContext: { statusCode: 200, executedVersion: '3' },
      responsePayload: { b: 2 },
    });
    const error = { errorType: 'Error', errorMessage: 'boom', trace: [] };
    const failed = invocationRecord({ state: state({ status: 'dead_lettered' }), fn: fn(), payload: null, error }, 'RetriesExhausted', now);
    expect(failed.responseContext).toEqual({ statusCode: 200, executedVersion: '3', functionError: 'Unhandled' });
    expect(failed.responsePayload).toEqual(error);
  });
});
