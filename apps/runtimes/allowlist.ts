// SSRF guard: the hosts HTTP functions and URL destinations may be sent to (HTTP_ALLOWLIST).
// Checked when a function is registered (RegistryChecks.url) and again at every call, so a
// narrowed allowlist also stops functions registered before the change.
//
// Patterns, comma-separated, case-insensitive:
//   api.example.com        that host, any port
//   *.internal.example     any subdomain of internal.example (not internal.example itself)
//   127.0.0.1:8080         that host and port; [::1]:8080 for IPv6
// An empty list allows any host.
import { functionError } from './errors.ts';
import type { AttemptOutcome, RunnableFunction, Runtimes } from './types.ts';

interface HostPattern {
  /** normalised host (IPv6 in brackets), or the suffix after `*.` */
  host: string;
  wildcard: boolean;
  /** null: any port */
  port: string | null;
}

export class UrlNotAllowedError extends Error {
  readonly code = 'UrlNotAllowed' as const;
  constructor(message: string) {
    super(message);
    this.name = 'UrlNotAllowedError';
  }
}

/** errorType of an attempt refused because the function's URL is not allowed */
export const URL_NOT_ALLOWED = 'HTTP.UrlNotAllowed';

/** Host as WHATWG URL normalises it (lower case, punycode, 0x7f.1 → 127.0.0.1), without a trailing dot. */
function normaliseHost(host: string): string {
  const parsed = new URL(`http://${host}/`);
  if (parsed.username || parsed.password || parsed.pathname !== '/' || parsed.port) throw new Error('not a host');
  return parsed.hostname.replace(/\.$/, '');
}

function parsePattern(raw: string): HostPattern {
  let rest = raw.trim().toLowerCase();
  let port: string | null = null;
  const portMatch = /^(.*[^:]):(\d{1,5})$/.exec(rest);
  if (portMatch && !(rest.startsWith('[') && !rest.includes(']:'))) {
    rest = portMatch[1] as string;
    port = String(Number(portMatch[2]));
    if (Number(port) < 1 || Number(port) > 65535) throw new Error(`invalid port in HTTP_ALLOWLIST entry "${raw}"`);
  }
  const wildcard = rest.startsWith('*.');
  if (wildcard) rest = rest.slice(2);
  if (rest.includes('*')) throw new Error(`HTTP_ALLOWLIST entry "${raw}": * is only allowed as a leading "*."`);
  try {
    return { host: normaliseHost(rest), wildcard, port };
  } catch {
    throw new Error(`HTTP_ALLOWLIST entry "${raw}" is not a host, *.domain or host:port`);
  }
}

export class UrlAllowlist {
  private constructor(private readonly patterns: readonly HostPattern[]) {}

  /** Throws on an entry that is not a host pattern, so a typo fails at start, not at call time. */
  static parse(spec: string | undefined | null): UrlAllowlist {
    const entries = (spec ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    return new UrlAllowlist(entries.map(parsePattern));
  }

  /** true when every host is allowed (the list is empty) */
  get open(): boolean {
    return this.patterns.length === 0;
  }

  allows(url: string | URL): boolean {
    let u: URL;
    try {
      u = typeof url === 'string' ? new URL(url) : url;
    } catch {
      return false;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
    if (this.open) return true;
    const host = u.hostname.replace(/\.$/, '');
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return this.patterns.some(
      (p) => (p.port === null || p.port === port) && (p.wildcard ? host.endsWith(`.${p.host}`) : host === p.host),
    );
  }

  /** For RegistryChecks.url: throws UrlNotAllowedError naming the host (never the query string). */
  check(url: string): void {
    if (this.allows(url)) return;
    throw new UrlNotAllowedError(`${describeHost(url)} is not allowed by HTTP_ALLOWLIST`);
  }
}

function describeHost(url: string): string {
  try {
    const u = new URL(url);
    return `host ${u.host}`;
  } catch {
    return 'the URL';
  }
}

/**
 * Runtimes that refuse, as a function error, an HTTP function whose URL the allowlist does
 * not allow (no request is sent). MODULE functions run as before.
 */
export function withUrlAllowlist(runtimes: Runtimes, allowlist: UrlAllowlist): Runtimes {
  if (allowlist.open) return runtimes;
  const refused = (fn: RunnableFunction): AttemptOutcome | null => {
    if (fn.runtime !== 'HTTP' || allowlist.allows(fn.url ?? '')) return null;
    return {
      ok: false,
      error: functionError(URL_NOT_ALLOWED, `Function URL ${describeHost(fn.url ?? '')} is not allowed by HTTP_ALLOWLIST`),
      durationMs: 0,
      log: '',
    };
  };
  return {
    run(fn, req, signal) {
      const outcome = refused(fn);
      return outcome === null ? runtimes.run(fn, req, signal) : Promise.resolve(outcome);
    },
    reserve(fn, options) {
      const outcome = refused(fn);
      if (outcome === null) return runtimes.reserve(fn, options);
      return Promise.resolve({ granted: true, run: () => Promise.resolve(outcome), release: () => {} });
    },
    close: () => runtimes.close(),
  };
}
