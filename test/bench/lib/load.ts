// HTTP load with autocannon, keeping every response time (autocannon's own histogram
// rounds to whole milliseconds, too coarse for a 2 ms overhead budget).
import autocannon from 'autocannon';
import { percentile } from './types.ts';

export interface LoadResult {
  ok: number;
  non2xx: number;
  errors: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  mean: number;
}

export async function httpLoad(options: {
  url: string;
  connections: number;
  /** how long, or how many requests (then every request completes before the run ends) */
  seconds?: number;
  amount?: number;
  headers?: Record<string, string>;
  body?: string;
}): Promise<LoadResult> {
  const times: number[] = [];
  const t0 = performance.now();
  let instance: autocannon.Instance | undefined;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: options.url,
        method: 'POST',
        connections: options.connections,
        pipelining: 1,
        ...(options.amount ? { amount: options.amount } : { duration: options.seconds ?? 10 }),
        headers: { 'content-type': 'application/json', ...options.headers },
        body: options.body ?? '{}',
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
  instance?.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const result = await finished;
  const seconds = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return {
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    seconds,
    rps: result['2xx'] / seconds,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    mean: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length),
  };
}

/** A duration-bounded closed loop of `callers` concurrent async callers (in-process peers). */
export async function callerLoad(callers: number, seconds: number, call: (i: number) => Promise<unknown>): Promise<{ ok: number; errors: number; seconds: number; rps: number }> {
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  let ok = 0;
  let errors = 0;
  let seq = 0;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < until) {
        try {
          await call(seq++);
          ok++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  return { ok, errors, seconds: elapsed, rps: ok / elapsed };
}
