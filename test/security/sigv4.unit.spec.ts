// The server-side SigV4 check against the signer the AWS SDK itself uses (smithy
// signature-v4): every request it signs verifies, and any change to what it signed does not.
import { createHash, createHmac } from 'node:crypto';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { canonicalPath, canonicalQuery, parseSigV4Authorization, verifySigV4, type ReceivedRequest } from '../../apps/api/auth/sigv4.ts';

class NodeSha256 {
  private h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key = typeof secret === 'string' || secret === undefined ? secret : Buffer.from(secret instanceof ArrayBuffer ? secret : secret.buffer);
    this.h = key ? createHmac('sha256', key) : createHash('sha256');
  }
  update(data: Uint8Array) {
    this.h.update(data);
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
  reset() {}
}

const credentials = { accessKeyId: 'ILAAAAAAAAAAAAAAAAAA', secretAccessKey: 'x/+secret+/Key0123456789abcdefghijklmnopq' };
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5);

async function sign(opts: { path: string; query?: Record<string, string>; body?: string; headers?: Record<string, string>; secret?: string }) {
  const signer = new SignatureV4({
    credentials: { ...credentials, secretAccessKey: opts.secret ?? credentials.secretAccessKey },
    region: 'us-east-1',
    service: 'lambda',
    sha256: NodeSha256,
  });
  const body = opts.body ?? '';
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: 3000,
    path: opts.path,
    query: opts.query ?? {},
    headers: { host: '127.0.0.1:3000', 'content-type': 'application/octet-stream', 'content-length': String(Buffer.byteLength(body)), ...opts.headers },
    body,
  });
  const signed = await signer.sign(request, { signingDate: new Date(NOW) });
  const query = new URLSearchParams(opts.query ?? {}).toString().replace(/\+/g, '%20');
  const headers = new Map(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return {
    method: 'POST',
    target: `${opts.path}${query ? `?${query}` : ''}`,
    header: (n: string) => headers.get(n.toLowerCase()),
    body: new TextEncoder().encode(body),
    headers,
  };
}

function verify(req: ReceivedRequest, secret = credentials.secretAccessKey, now = NOW) {
  const auth = parseSigV4Authorization(req.header('authorization') ?? '');
  expect(auth).not.toBeNull();
  return verifySigV4(req, auth!, secret, { now });
}

describe('SigV4 verification against the SDK signer', () => {
  it.each([
    ['a bare name', '/2015-03-31/functions/orders/invocations', {}],
    ['an encoded qualifier', '/2015-03-31/functions/orders%3Aprod/invocations', { Qualifier: '3' }],
    ['an encoded ARN', `/2015-03-31/functions/${encodeURIComponent('arn:aws:lambda:us-east-1:000000000000:function:orders:2')}/invocations`, {}],
    ['query values needing escapes', '/invoke/orders', { b: 'x y', a: "it's (*)!", $LATEST: '' }],
    ['a trailing slash', '/2014-11-13/functions/orders/invoke-async/', {}],
  ])('accepts a request with %s', async (_what, path, query) => {
    const req = await sign({ path, query, body: '{"order":42}' });
    expect(verify(req)).toEqual({ ok: true });
  });

  it('binds the signature to the secret, body, path, query and signed headers', async () => {
    const req = await sign({ path: '/2015-03-31/functions/orders/invocations', query: { Qualifier: '1' }, body: '{"n":1}', headers: { 'x-amz-invocation-type': 'Event' } });
    expect(verify(req, 'another secret')).toMatchObject({ ok: false, reason: expect.stringMatching(/does not match/) });
    expect(verify({ ...req, body: new TextEncoder().encode('{"n":2}') })).toMatchObject({ ok: false });
    expect(verify({ ...req, target: '/2015-03-31/functions/other/invocations?Qualifier=1' })).toMatchObject({ ok: false });
    expect(verify({ ...req, target: '/2015-03-31/functions/orders/invocations?Qualifier=2' })).toMatchObject({ ok: false });
    expect(verify({ ...req, method: 'PUT' })).toMatchObject({ ok: false });
    const changed = new Map(req.headers).set('x-amz-invocation-type', 'RequestResponse');
    expect(verify({ ...req, header: (n) => changed.get(n) })).toMatchObject({ ok: false });
  });

  it('refuses an X-Amz-Date more than 15 minutes from the server clock, either way', async () => {
    const req = await sign({ path: '/invoke/orders', body: '{}' });
    expect(verify(req, undefined, NOW + 14 * 60_000)).toEqual({ ok: true });
    expect(verify(req, undefined, NOW + 16 * 60_000)).toMatchObject({ ok: false, reason: expect.stringMatching(/^Signature expired/) });
    expect(verify(req, undefined, NOW - 16 * 60_000)).toMatchObject({ ok: false });
  });

  it('refuses a content hash header that does not match the body, and UNSIGNED-PAYLOAD', async () => {
    const body = '{"a":1}';
    const good = createHash('sha256').update(body).digest('hex');
    const signed = await sign({ path: '/invoke/orders', body, headers: { 'x-amz-content-sha256': good } });
    expect(verify(signed)).toEqual({ ok: true });
    expect(verify({ ...signed, body: new TextEncoder().encode('{"a":2}') })).toMatchObject({ ok: false, reason: expect.stringMatching(/does not match the body/) });
    const unsigned = await sign({ path: '/invoke/orders', body, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
    expect(verify(unsigned)).toMatchObject({ ok: false, reason: expect.stringMatching(/UNSIGNED-PAYLOAD/) });
  });

  it('requires host and x-amz-date to be signed', async () => {
    const req = await sign({ path: '/invoke/orders' });
    const auth = parseSigV4Authorization(req.header('authorization')!)!;
    expect(verifySigV4(req, { ...auth, signedHeaders: auth.signedHeaders.filter((h) => h !== 'host') }, credentials.secretAccessKey, { now: NOW })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/host/),
    });
  });

  it('parses only well-formed AWS4-HMAC-SHA256 headers', () => {
    expect(parseSigV4Authorization('Bearer x')).toBeNull();
    expect(parseSigV4Authorization('AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00')).toBeNull();
    expect(
      parseSigV4Authorization(`AWS4-HMAC-SHA256 Credential=AKID/20260102/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(64)}`),
    ).toEqual({ accessKeyId: 'AKID', date: '20260102', region: 'eu-west-1', service: 'lambda', signedHeaders: ['host', 'x-amz-date'], signature: 'a'.repeat(64) });
  });

  it('canonicalises like the signers: double-encoded path, sorted escaped query', () => {
    expect(canonicalPath('/2015-03-31/functions/my-fn%3Aprod/invocations')).toBe('/2015-03-31/functions/my-fn%253Aprod/invocations');
    expect(canonicalPath('/a/./b/../c//d/')).toBe('/a/c/d/');
    expect(canonicalQuery('b=2&a=x%20y&a=1&X-Amz-Signature=zz')).toBe('a=1&a=x%20y&b=2');
  });
});
