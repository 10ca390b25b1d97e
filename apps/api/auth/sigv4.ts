// AWS Signature Version 4, server side: recompute the signature of the request as received
// and compare it with the one the client sent. The canonical form follows the rules the AWS
// SDK (smithy signature-v4) and the CLI (botocore) sign with for non-S3 services: the path,
// as sent (already percent-encoded once), is normalised and percent-encoded again.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
/** AWS refuses requests whose X-Amz-Date is further than this from its clock. */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

export interface SigV4Authorization {
  accessKeyId: string;
  /** yyyymmdd of the credential scope */
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

/** The request as the server received it. */
export interface ReceivedRequest {
  method: string;
  /** path and query exactly as on the request line, e.g. `/2015-03-31/functions/a%3A1/invocations?Qualifier=1` */
  target: string;
  header(name: string): string | undefined;
  body: Uint8Array;
}

export type SigV4Result = { ok: true } | { ok: false; reason: string };

export function isSigV4Authorization(header: string): boolean {
  return header.startsWith(`${SIGV4_ALGORITHM} `);
}

/** `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=…` */
export function parseSigV4Authorization(header: string): SigV4Authorization | null {
  if (!isSigV4Authorization(header)) return null;
  const fields = new Map<string, string>();
  for (const part of header.slice(SIGV4_ALGORITHM.length + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential')?.split('/');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || credential.length !== 5 || credential[4] !== 'aws4_request' || !signedHeaders || !signature) return null;
  const [accessKeyId, date, region, service] = credential as [string, string, string, string];
  if (!/^\d{8}$/.test(date) || !/^[0-9a-f]{64}$/.test(signature) || !accessKeyId || !region || !service) return null;
  return { accessKeyId, date, region, service, signedHeaders: signedHeaders.split(';'), signature };
}

/** RFC 3986 encoding as the signers do it: encodeURIComponent plus !'()*. */
const escapeUri = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function canonicalPath(rawPath: string): string {
  const segments: string[] = [];
  for (const segment of rawPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const normalized = `${rawPath.startsWith('/') ? '/' : ''}${segments.join('/')}${segments.length > 0 && rawPath.endsWith('/') ? '/' : ''}`;
  return escapeUri(normalized).replace(/%2F/g, '/');
}

export function canonicalQuery(rawQuery: string): string {
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (safeDecode(key).toLowerCase() === 'x-amz-signature') continue;
    pairs.push([escapeUri(safeDecode(key)), escapeUri(safeDecode(value))]);
  }
  pairs.sort(([ka, va], [kb, vb]) => (ka < kb ? -1 : ka > kb ? 1 : va < vb ? -1 : va > vb ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256Hex = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

export function signingKey(secret: Buffer | string, date: string, region: string, service: string): Buffer {
  const secretBytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  const kDate = hmac(Buffer.concat([Buffer.from('AWS4', 'utf8'), secretBytes]), date);
  return hmac(hmac(hmac(kDate, region), service), 'aws4_request');
}

/** X-Amz-Date (`20260101T120000Z`) as epoch ms, or null. */
export function parseAmzDate(value: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  const ms = Date.UTC(y as number, (mo as number) - 1, d, h, mi, s);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Verifies a SigV4-signed request with the secret of auth.accessKeyId. The payload hash is
 * always the hash of the body received: an X-Amz-Content-Sha256 that differs from it (or
 * UNSIGNED-PAYLOAD) is refused, so a signature always covers the bytes that get invoked.
 */
export function verifySigV4(
  req: ReceivedRequest,
  auth: SigV4Authorization,
  secret: Buffer | string,
  options: { now?: number; maxClockSkewMs?: number } = {},
): SigV4Result {
  const signed = auth.signedHeaders;
  if (!signed.includes('host')) return { ok: false, reason: 'the host header must be signed' };
  if (!signed.includes('x-amz-date')) return { ok: false, reason: 'the x-amz-date header must be signed' };
  const amzDate = req.header('x-amz-date') ?? '';
  const at = parseAmzDate(amzDate);
  if (at === null) return { ok: false, reason: 'X-Amz-Date is missing or not in the yyyyMMddTHHmmssZ format' };
  if (amzDate.slice(0, 8) !== auth.date) return { ok: false, reason: 'the credential scope date does not match X-Amz-Date' };
  const now = options.now ?? Date.now();
  const skew = options.maxClockSkewMs ?? MAX_CLOCK_SKEW_MS;
  if (Math.abs(now - at) > skew) {
    return { ok: false, reason: `Signature expired: ${amzDate} is not within ${skew / 60_000} minutes of the server time ${new Date(now).toISOString()}` };
  }

  const bodyHash = sha256Hex(req.body);
  const claimed = req.header('x-amz-content-sha256');
  if (claimed !== undefined && claimed !== bodyHash) {
    return {
      ok: false,
      reason: claimed === UNSIGNED_PAYLOAD ? 'UNSIGNED-PAYLOAD is not accepted: sign the body' : 'X-Amz-Content-Sha256 does not match the body',
    };
  }

  const headerLines: string[] = [];
  for (const name of signed) {
    const value = req.header(name);
    if (value === undefined) return { ok: false, reason: `signed header ${name} is missing from the request` };
    headerLines.push(`${name}:${value.replace(/[\r\n]/g, ' ').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '')}`);
  }
  const q = req.target.indexOf('?');
  const rawPath = q < 0 ? req.target : req.target.slice(0, q);
  const rawQuery = q < 0 ? '' : req.target.slice(q + 1);
  const canonicalRequest = [
    req.method.toUpperCase(),
    canonicalPath(rawPath),
    canonicalQuery(rawQuery),
    `${headerLines.join('\n')}\n`,
    signed.join(';'),
    claimed ?? bodyHash,
  ].join('\n');
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const stringToSign = [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const expected = createHmac('sha256', signingKey(secret, auth.date, auth.region, auth.service)).update(stringToSign, 'utf8').digest();
  const presented = Buffer.from(auth.signature, 'hex');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    return {
      ok: false,
      reason: 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    };
  }
  return { ok: true };
}
