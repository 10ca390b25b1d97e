// Returns the event unchanged: the smallest possible function, handy for smoke tests and benchmarks.
export async function handler(event: unknown): Promise<unknown> {
  return event;
}
