// Who is calling: a bearer token or a SigV4 signature, checked against ledger.api_keys.
// Keys are cached per process for a few seconds (a revocation takes effect within that
// time); the secret itself is re-checked on every request.
import type { Logger } from 'pino';
import type { Db } from '../../../db/schema.ts';
import { bearerSecretMatches, findApiKey, openSigV4Secret, parseBearerToken, type Scope, type StoredApiKey } from '../../../db/keys.ts';
import { isSigV4Authorization, parseSigV4Authorization, verifySigV4, type ReceivedRequest } from './sigv4.ts';

export interface AuthOptions {
  /** false (the default when createApp gets no auth option): every request is let through */
  enabled: boolean;
  /** LEDGER_SECRET_KEY: opens SigV4 secrets that were sealed with it */
  secretKey?: string | null;
  /** how long a looked-up key is reused before it is read again (default 5000 ms) */
  cacheTtlMs?: number;
  /** allowed distance between X-Amz-Date and the server clock (default 15 min) */
  maxClockSkewMs?: number;
  now?: () => number;
}

export interface Principal {
  keyId: string;
  name: string | null;
  scopes: ReadonlySet<Scope>;
  method: 'bearer' | 'sigv4';
}

/**
 * Why a request is not authenticated. `missing`: no credentials; `invalid`: unknown,
 * malformed or revoked key, wrong bearer secret; `signature`: a known key whose SigV4
 * signature (or date) does not verify.
 */
export class AuthenticationError extends Error {
  constructor(
    readonly reason: 'missing' | 'invalid' | 'signature',
    message: string,
  ) {
    super(message);
    this.name = 'AuthenticationError';
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export class Authenticator {
  private readonly cache = new Map<string, { key: StoredApiKey; until: number }>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    private readonly options: AuthOptions,
    private readonly logger?: Logger,
  ) {
    this.ttlMs = options.cacheTtlMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  private async key(id: string): Promise<StoredApiKey | null> {
    const hit = this.cache.get(id);
    const now = this.now();
    if (hit && hit.until > now) return hit.key;
    const key = await findApiKey(this.db, id);
    if (key && this.ttlMs > 0) this.cache.set(id, { key, until: now + this.ttlMs });
    else this.cache.delete(id);
    return key;
  }

  private async usableKey(id: string): Promise<StoredApiKey> {
    const key = await this.key(id);
    if (!key || key.revokedAt !== null) throw new AuthenticationError('invalid', 'The security token included in the request is invalid.');
    return key;
  }

  /** Bearer tokens only (GraphQL, where the body belongs to yoga). */
  async bearer(authorization: string | undefined): Promise<Principal> {
    if (!authorization) throw new AuthenticationError('missing', 'Missing Authorization header: send Authorization: Bearer <key>.');
    const m = BEARER.exec(authorization);
    if (!m) throw new AuthenticationError('invalid', 'Unsupported Authorization header: send Authorization: Bearer <key>.');
    const token = parseBearerToken(m[1] as string);
    if (!token) throw new AuthenticationError('invalid', 'The security token included in the request is invalid.');
    const key = await this.usableKey(token.id);
    if (!bearerSecretMatches(key, token.secret)) throw new AuthenticationError('invalid', 'The security token included in the request is invalid.');
    return { keyId: key.id, name: key.name, scopes: new Set(key.scopes), method: 'bearer' };
  }

  /**
   * Bearer or SigV4. The body is read only for SigV4 with a known, unrevoked key, so an
   * anonymous caller cannot make the server buffer a large body.
   */
  async request(req: Omit<ReceivedRequest, 'body'> & { body: () => Promise<Uint8Array> }): Promise<Principal> {
    const authorization = req.header('authorization');
    if (!authorization || !isSigV4Authorization(authorization)) return this.bearer(authorization);
    const parsed = parseSigV4Authorization(authorization);
    if (!parsed) throw new AuthenticationError('invalid', 'Malformed AWS4-HMAC-SHA256 Authorization header.');
    const key = await this.usableKey(parsed.accessKeyId);
    let secret: Buffer;
    try {
      secret = openSigV4Secret(key, this.options.secretKey);
    } catch (e) {
      // a server misconfiguration, not the caller's fault: say so in the log, refuse the request
      this.logger?.error({ keyId: key.id, err: (e as Error).message }, 'cannot verify a SigV4 request');
      throw new AuthenticationError('signature', 'The server cannot verify SigV4 signatures of this key; use its bearer token.');
    }
    const verdict = verifySigV4({ ...req, body: await req.body() }, parsed, secret, {
      now: this.now(),
      ...(this.options.maxClockSkewMs !== undefined ? { maxClockSkewMs: this.options.maxClockSkewMs } : {}),
    });
    if (!verdict.ok) throw new AuthenticationError('signature', verdict.reason);
    return { keyId: key.id, name: key.name, scopes: new Set(key.scopes), method: 'sigv4' };
  }
}
