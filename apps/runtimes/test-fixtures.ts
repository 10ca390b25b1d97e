// Shared by the unit specs: a function definition pointing at apps/runtimes/fixtures.
import { fileURLToPath } from 'node:url';
import type { AttemptRequest, RunnableFunction } from './types.ts';

export const FIXTURES_DIR = fileURLToPath(new URL('./fixtures/', import.meta.url));

export function moduleFunction(handler: string, overrides: Partial<RunnableFunction> = {}): RunnableFunction {
  return {
    name: 'fixture',
    version: 1,
    runtime: 'MODULE',
    handler,
    url: null,
    timeoutMs: 3000,
    memoryMb: 64,
    isolation: 'thread',
    secret: null,
    ...overrides,
  };
}

let counter = 0;

export function attemptRequest(payload: unknown = {}, overrides: Partial<AttemptRequest> = {}): AttemptRequest {
  counter++;
  return {
    invocationId: `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
    attempt: 1,
    payload,
    ...overrides,
  };
}
