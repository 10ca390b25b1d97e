// What every page handler gets: the session, a GraphQL client acting with its key, the
// few db/ reads GraphQL lacks, the request URL and the message left by the previous
// action (post → redirect → get).
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { GraphQLClient } from './api.ts';
import type { ConsoleReads } from './reads.ts';
import { CONSOLE_PATH, type Session } from './session.ts';

export interface Flash {
  kind: 'ok' | 'error';
  text: string;
  /** invocations the message is about (links) */
  invocationIds?: string[];
}

export interface PageContext {
  session: Session;
  gql: GraphQLClient;
  /** db/ reads GraphQL has no field for (./reads.ts): only after checking the audit scope */
  reads: ConsoleReads;
  url: URL;
  flash: Flash | null;
  /** the trace viewer's URL for a trace id (TRACE_URL_TEMPLATE); absent: no trace links */
  traceUrl?: (traceId: string) => string;
  /** base path of the scripts and styles */
  assets: string;
}

const FLASH_COOKIE = 'il_console_flash';

/** Leaves a message for the page the browser is redirected to. */
export function setFlash(c: Context, flash: Flash): void {
  setCookie(c, FLASH_COOKIE, Buffer.from(JSON.stringify(flash), 'utf8').toString('base64url'), {
    path: CONSOLE_PATH,
    httpOnly: true,
    sameSite: 'Strict',
    maxAge: 60,
  });
}

/** Reads and clears the message (shown once). */
export function takeFlash(c: Context): Flash | null {
  const raw = getCookie(c, FLASH_COOKIE);
  if (!raw) return null;
  deleteCookie(c, FLASH_COOKIE, { path: CONSOLE_PATH });
  try {
    const f = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Flash;
    if ((f.kind === 'ok' || f.kind === 'error') && typeof f.text === 'string') {
      return { kind: f.kind, text: f.text.slice(0, 2000), invocationIds: (f.invocationIds ?? []).filter((id) => typeof id === 'string').slice(0, 100) };
    }
  } catch {
    // a mangled cookie shows nothing
  }
  return null;
}
