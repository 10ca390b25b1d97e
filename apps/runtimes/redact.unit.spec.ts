// Error texts lose URL credentials, query values and fragments before they are written.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REDACTED, functionError, redactUrlSecrets, toFunctionError } from './errors.ts';
import { secretsOfUrl } from './http-runtime.ts';

const word = fc.stringMatching(/^[a-z0-9-]{1,12}$/);
const secret = fc.stringMatching(/^[A-Za-z0-9._~%-]{1,24}$/).map((s) => `SECRET${s}`);

describe('redactUrlSecrets', () => {
  it('examples', () => {
    expect(redactUrlSecrets('POST http://svc:hunter2@host:8080/ok?api_key=abc&x failed')).toBe(
      `POST http://${REDACTED}@host:8080/ok?api_key=${REDACTED}&${REDACTED} failed`,
    );
    expect(redactUrlSecrets('see https://a@b@evil.example/p#tok=1.')).toBe(`see https://${REDACTED}@evil.example/p#${REDACTED}.`);
    expect(redactUrlSecrets('no url here: a=b?c')).toBe('no url here: a=b?c');
    expect(redactUrlSecrets('"https://h/p?q=1" and <https://h2/?t=2>')).toBe(`"https://h/p?q=${REDACTED}" and <https://h2/?t=${REDACTED}>`);
  });

  it('no credential, query value or fragment survives, wherever the URL sits in the text; redacting twice changes nothing', () => {
    fc.assert(
      fc.property(
        fc.record({
          scheme: fc.constantFrom('http', 'https', 'postgres', 'redis'),
          user: fc.option(secret),
          password: fc.option(secret),
          host: fc.array(word, { minLength: 1, maxLength: 3 }).map((p) => p.join('.')),
          path: fc.array(word, { maxLength: 3 }).map((p) => p.map((s) => `/${s}`).join('')),
          query: fc.array(fc.tuple(word, secret), { maxLength: 3 }),
          bare: fc.option(secret),
          fragment: fc.option(secret),
          before: fc.constantFrom('', 'GET ', 'failed: ', '(', '"', 'x\n'),
          after: fc.constantFrom('', ' failed', ')', '"', '.', '\nmore'),
        }),
        (u) => {
          const userinfo = u.user !== null ? `${u.user}${u.password !== null ? `:${u.password}` : ''}@` : '';
          const params = [...u.query.map(([k, v]) => `${k}=${v}`), ...(u.bare !== null ? [u.bare] : [])];
          const url = `${u.scheme}://${userinfo}${u.host}${u.path}${params.length ? `?${params.join('&')}` : ''}${u.fragment !== null ? `#${u.fragment}` : ''}`;
          const out = redactUrlSecrets(`${u.before}${url}${u.after}`);
          expect(out).not.toContain('SECRET');
          expect(out).toContain(`${u.host}${u.path}`);
          for (const [k] of u.query) expect(out).toContain(`${k}=${REDACTED}`);
          expect(redactUrlSecrets(out)).toBe(out);
        },
      ),
    );
  });

  it('every error a runtime builds goes through it: functionError and toFunctionError', () => {
    expect(functionError('E', 'GET https://u:p@h/?k=v', ['at x (https://h/?k=v)'])).toEqual({
      errorType: 'E',
      errorMessage: `GET https://${REDACTED}@h/?k=${REDACTED}`,
      trace: [`at x (https://h/?k=${REDACTED})`],
    });
    const e = toFunctionError(new Error('fetch https://h/x?token=abc failed'));
    expect(e.errorMessage).toBe(`fetch https://h/x?token=${REDACTED} failed`);
    expect(e.trace.join('\n')).not.toContain('abc');
  });
});

describe('secretsOfUrl (an HTTP function endpoint may echo its request line)', () => {
  it('lists credentials and query values of 6+ characters, raw and decoded, longest first', () => {
    const found = secretsOfUrl('http://user:pa%20ssword@h/p?api_key=abc%2Bdef&v=2&flag');
    expect([...found].sort()).toEqual(['abc%2Bdef', 'abc+def', 'pa ssword', 'pa%20ssword']);
    expect(found.map((s) => s.length)).toEqual([...found.map((s) => s.length)].sort((a, b) => b - a));
    expect(secretsOfUrl('not a url')).toEqual([]);
    expect(secretsOfUrl(null)).toEqual([]);
  });
});
