// One error model: a LifecycleViolation thrown by the writer reaches every edge as the
// LedgerError it is, through the one table per edge (HTTP: errors.ts, GraphQL: graphql/errors.ts).
import { describe, expect, it } from 'vitest';
import { isLedgerError } from '../../db/errors.ts';
import { LifecycleViolation } from '../../db/lifecycle.ts';
import { httpErrorOf } from './errors.ts';
import { toGraphQLError } from './graphql/errors.ts';

const violation = () => new LifecycleViolation('3f1c2a9e-0000-4000-8000-000000000001', 'succeeded', 'started', 'the invocation has ended');

describe('a LifecycleViolation at the edges', () => {
  it('is a LedgerError with its code', () => {
    const e = violation();
    expect(isLedgerError(e)).toBe(true);
    expect(e.code).toBe('LifecycleViolation');
    expect(e.details).toMatchObject({ invocationId: e.invocationId, from: 'succeeded', to: 'started' });
  });

  it('is a 409 ResourceConflictException over HTTP, not a 500', () => {
    const h = httpErrorOf(violation());
    expect([h.status, h.code, h.awsType]).toEqual([409, 'LifecycleViolation', 'ResourceConflictException']);
    expect(h.message).toContain('started may not follow succeeded');
  });

  it('carries its code in GraphQL', () => {
    expect(toGraphQLError(violation())?.extensions.code).toBe('LifecycleViolation');
  });
});
