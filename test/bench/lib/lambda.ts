// The Lambda-compatible invoke route of a running `--role api` process.
import { Unavailable } from './ledger.ts';

export const invokeUrl = (baseUrl: string, fn: string) => `${baseUrl}/2015-03-31/functions/${encodeURIComponent(fn)}/invocations`;

/** One request first: a missing route (plain 404, no x-amzn-ErrorType) means the API has not landed. */
export async function probeInvoke(baseUrl: string, fn: string, invocationType: 'Event' | 'RequestResponse', expect: number): Promise<void> {
  const res = await fetch(invokeUrl(baseUrl, fn), {
    method: 'POST',
    headers: { 'x-amz-invocation-type': invocationType, 'content-type': 'application/json' },
    body: '{}',
  });
  const text = await res.text();
  if (res.status === 404 && !res.headers.get('x-amzn-errortype')) throw new Unavailable('Lambda Invoke route not available in apps/api yet');
  if (res.status !== expect) throw new Error(`probe ${invocationType} answered ${res.status}, expected ${expect}: ${text.slice(0, 300)}`);
}
