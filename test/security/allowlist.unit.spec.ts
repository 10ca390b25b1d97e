// HTTP_ALLOWLIST patterns: which URLs HTTP functions and URL destinations may reach.
import { describe, expect, it } from 'vitest';
import { URL_NOT_ALLOWED, UrlAllowlist, UrlNotAllowedError, withUrlAllowlist } from '../../apps/runtimes/allowlist.ts';
import type { Runtimes, RunnableFunction } from '../../apps/runtimes/index.ts';

const list = UrlAllowlist.parse('api.example.com, *.internal.example,127.0.0.1:8080, [::1]:9000');

describe('UrlAllowlist', () => {
  it.each([
    ['https://api.example.com/hook', true],
    ['http://API.Example.COM:8443/x?token=1', true],
    ['https://api.example.com./trailing-dot', true],
    ['https://evil.example.com/', false],
    ['https://api.example.com.evil.net/', false],
    ['https://a.internal.example/', true],
    ['https://a.b.internal.example:444/', true],
    ['https://internal.example/', false],
    ['https://xinternal.example/', false],
    ['http://127.0.0.1:8080/', true],
    ['http://127.0.0.1:8081/', false],
    ['http://127.0.0.1/', false],
    ['http://2130706433:8080/', true], // WHATWG URL normalises the decimal form to 127.0.0.1
    ['http://0x7f.0.0.1:8080/', true],
    ['http://localhost:8080/', false],
    ['http://[::1]:9000/', true],
    ['http://[::1]:9001/', false],
    ['http://user:pass@api.example.com@169.254.169.254/', false],
    ['file:///etc/passwd', false],
    ['not a url', false],
  ])('%s → %s', (url, allowed) => {
    expect(list.allows(url)).toBe(allowed);
  });

  it('allows any http(s) URL when empty, still nothing else', () => {
    const open = UrlAllowlist.parse('');
    expect(open.open).toBe(true);
    expect(open.allows('http://169.254.169.254/latest/meta-data')).toBe(true);
    expect(open.allows('ftp://example.com/')).toBe(false);
  });

  it('matches an explicit default port', () => {
    const l = UrlAllowlist.parse('hooks.example:443');
    expect(l.allows('https://hooks.example/')).toBe(true);
    expect(l.allows('http://hooks.example/')).toBe(false);
  });

  it('refuses a malformed entry at parse time', () => {
    expect(() => UrlAllowlist.parse('a*.example.com')).toThrow(/only allowed as a leading/);
    expect(() => UrlAllowlist.parse('exa mple.com')).toThrow(/not a host/);
    expect(() => UrlAllowlist.parse('example.com/path')).toThrow(/not a host/);
    expect(() => UrlAllowlist.parse('example.com:99999')).toThrow(/port/);
  });

  it('check() names the host, never the query string', () => {
    expect(() => list.check('https://evil.example.com/x?token=s3cr3t')).toThrow(UrlNotAllowedError);
    try {
      list.check('https://evil.example.com/x?token=s3cr3t');
    } catch (e) {
      expect((e as Error).message).toBe('host evil.example.com is not allowed by HTTP_ALLOWLIST');
    }
  });
});

describe('withUrlAllowlist', () => {
  const fn = (url: string | null, runtime: 'HTTP' | 'MODULE' = 'HTTP'): RunnableFunction => ({
    name: 'f',
    version: 1,
    runtime,
    handler: runtime === 'MODULE' ? 'f.ts' : null,
    url,
    timeoutMs: 1000,
    memoryMb: 128,
    isolation: 'inline',
    secret: null,
  });
  const calls: string[] = [];
  const inner: Runtimes = {
    run: async (f) => {
      calls.push(f.url ?? f.handler ?? '');
      return { ok: true, result: 'ran', durationMs: 0, log: '' };
    },
    reserve: async (f) => ({ granted: true, run: (r) => inner.run(f, r), release: () => {} }),
    close: async () => {},
  };
  const guarded = withUrlAllowlist(inner, list);
  const req = { invocationId: '00000000-0000-0000-0000-000000000000', attempt: 1, payload: {} };

  it('refuses a disallowed URL as a function error without sending anything', async () => {
    const outcome = await guarded.run(fn('http://169.254.169.254/latest/meta-data?x=1'), req);
    expect(outcome).toMatchObject({ ok: false, error: { errorType: URL_NOT_ALLOWED, errorMessage: 'Function URL host 169.254.169.254 is not allowed by HTTP_ALLOWLIST' } });
    expect(calls).toEqual([]);
  });

  it('passes allowed URLs and MODULE functions through', async () => {
    expect(await guarded.run(fn('https://api.example.com/f'), req)).toMatchObject({ ok: true });
    expect(await guarded.run(fn(null, 'MODULE'), req)).toMatchObject({ ok: true });
    expect(calls).toEqual(['https://api.example.com/f', 'f.ts']);
  });

  it('is the same object when the list is empty', () => {
    expect(withUrlAllowlist(inner, UrlAllowlist.parse(''))).toBe(inner);
  });
});
