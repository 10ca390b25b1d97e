// Who is using the console. With auth on, the API key typed at sign-in is kept in an
// HttpOnly, SameSite=Strict cookie without an expiry, scoped to /console: the browser
// sends it back until it is closed or the user signs out, page scripts cannot read it,
// and it never appears in a URL. Every request re-checks it (a revoked key stops working
// within the authenticator's cache time). Writes (POST) must also come from a page of
// this origin (the Origin header), so another site cannot submit a form here.
// With auth off (LEDGER_AUTH=off) there is no sign-in and every scope is allowed.
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { SCOPES, type Scope } from '../../db/keys.ts';
import { AuthenticationError, type Authenticator } from '../api/auth/index.ts';

export const SESSION_COOKIE = 'il_console_key';
export const CONSOLE_PATH = '/console';

export interface Session {
  authEnabled: boolean;
  /** the bearer token (null with auth off) */
  token: string | null;
  keyId: string | null;
  keyName: string | null;
  scopes: ReadonlySet<Scope>;
}

export const OPEN_SESSION: Session = { authEnabled: false, token: null, keyId: null, keyName: null, scopes: new Set(SCOPES) };

export const can = (s: Session, scope: Scope): boolean => s.scopes.has(scope);

/** The session of a request: null when auth is on and no valid key came with it. */
export async function sessionOf(c: Context, authenticator: Authenticator | null): Promise<Session | null> {
  if (!authenticator) return OPEN_SESSION;
  const token = getCookie(c, SESSION_COOKIE);
  if (!token) return null;
  try {
    return await signIn(authenticator, token);
  } catch (e) {
    if (e instanceof AuthenticationError) return null;
    throw e;
  }
}

/** Checks a key typed at sign-in (throws AuthenticationError when it is not a valid key). */
export async function signIn(authenticator: Authenticator, token: string): Promise<Session> {
  const p = await authenticator.bearer(`Bearer ${token.trim()}`);
  return { authEnabled: true, token: token.trim(), keyId: p.keyId, keyName: p.name, scopes: p.scopes };
}

/** Secure when the browser reached us over https (directly or through a proxy that says so). */
function overHttps(c: Context): boolean {
  return new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto')?.split(',')[0]?.trim() === 'https';
}

export function keepSession(c: Context, token: string): void {
  // no Max-Age/Expires: a session cookie, gone when the browser session ends
  setCookie(c, SESSION_COOKIE, token, { path: CONSOLE_PATH, httpOnly: true, sameSite: 'Strict', secure: overHttps(c) });
}

export function endSession(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: CONSOLE_PATH, httpOnly: true, sameSite: 'Strict', secure: overHttps(c) });
}

/**
 * A state-changing request must come from a page of this server: its Origin (which
 * browsers send with every POST) names the host the request was sent to.
 */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (!origin || origin === 'null') return false;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  const forwarded = c.req.header('x-forwarded-host')?.split(',')[0]?.trim();
  return host === (c.req.header('host') ?? new URL(c.req.url).host) || (forwarded !== undefined && host === forwarded);
}

/** A path inside the console to return to after sign-in (anything else goes to the overview). */
export function safeNext(next: string | undefined): string {
  if (!next || !next.startsWith(`${CONSOLE_PATH}/`) || next.startsWith('//') || /[\\\r\n]/.test(next) || next.includes('/../')) return `${CONSOLE_PATH}/`;
  return next;
}
