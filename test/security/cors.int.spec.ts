// CORS: browsers on other origins get nothing by default (no Access-Control-Allow-Origin on
// any route, GraphQL included, and never credentials); CORS_ORIGINS lists the origins that
// may call the API from a browser, exactly those.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { moduleFn } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, startSecureApi, type SecureApi } from './helpers.ts';

const APP = 'https://app.example.test';
const EVIL = 'https://evil.example.test';
let t: TestDatabase;
let closed: SecureApi;
let open: SecureApi;
let key: CreatedApiKey;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  key = await createApiKey(t.db, { scopes: ['invoke', 'audit'] });
  closed = await startSecureApi(t.db);
  open = await startSecureApi(t.db, { corsOrigins: [APP, 'http://localhost:5173'] });
});

afterAll(async () => {
  await closed?.close();
  await open?.close();
});

const preflight = (api: SecureApi, path: string, origin: string) =>
  fetch(`${api.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });

const graphql = (api: SecureApi, origin: string) =>
  fetch(`${api.url}/graphql`, {
    method: 'POST',
    headers: { ...bearer(key), origin, 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ functions { name } }' }),
  });

const ROUTES = ['/graphql', '/invoke/echo', '/2015-03-31/functions/echo/invocations'];

describe('default: no origin is allowed', () => {
  it.each(ROUTES)('a preflight to %s from any origin gets no Access-Control-Allow-Origin', async (path) => {
    for (const origin of [EVIL, APP]) {
      const res = await preflight(closed, path, origin);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    }
  });

  it('a cross-origin GraphQL request runs (it is the browser that refuses) but is not readable cross-origin', async () => {
    const res = await graphql(closed, EVIL);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

describe('CORS_ORIGINS: exactly the listed origins', () => {
  it.each(ROUTES)('%s: a listed origin passes its preflight, without credentials', async (path) => {
    const res = await preflight(open, path, APP);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(res.headers.get('vary')).toMatch(/origin/i);
  });

  it.each(ROUTES)('%s: an unlisted origin (or a near miss) gets no Access-Control-Allow-Origin', async (path) => {
    for (const origin of [EVIL, `${APP}.evil.test`, 'http://app.example.test', 'null']) {
      const res = await preflight(open, path, origin);
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });

  it('the real request from a listed origin is readable, with the invoke headers exposed', async () => {
    const res = await fetch(`${open.url}/invoke/echo`, { method: 'POST', headers: { ...bearer(key), origin: APP }, body: '{"a":1}' });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('x-invocation-id');
    const g = await graphql(open, APP);
    expect(g.headers.get('access-control-allow-origin')).toBe(APP);
    expect(g.headers.get('access-control-allow-credentials')).toBeNull();
    const evil = await graphql(open, EVIL);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('a preflight needs no key (it carries none), and the request after it still does', async () => {
    const res = await fetch(`${open.url}/invoke/echo`, { method: 'POST', headers: { origin: APP }, body: '{}' });
    expect(res.status).toBe(401);
  });
});

describe('CORS_ORIGINS is checked at start', () => {
  it('refuses anything that is not an origin', async () => {
    const { parseCorsOrigins } = await import('../../apps/api/app.ts');
    expect(parseCorsOrigins('')).toEqual([]);
    expect(parseCorsOrigins(' https://a.example , http://localhost:5173 ')).toEqual(['https://a.example', 'http://localhost:5173']);
    for (const bad of ['*', 'https://a.example/', 'a.example', 'https://a.example/path', 'https://u@a.example']) {
      expect(() => parseCorsOrigins(bad), bad).toThrow(/CORS_ORIGINS/);
    }
  });
});
