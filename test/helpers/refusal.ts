// What an SDK call that must be refused threw: it fails the test when the call succeeds or
// throws anything but the service's exception type (LambdaServiceException,
// KinesisServiceException, …), and hands the exception over for the test's own checks.
import { expect } from 'vitest';

export async function refusedWith<E>(type: abstract new (...args: never[]) => E, p: Promise<unknown>): Promise<E> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(type);
  return e as E;
}
