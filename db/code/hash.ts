// A code package is named by the SHA-256 of its zip bytes: lowercase hex in the database
// and the cache, base64 on Lambda's wire (`CodeSha256`).
import { createHash } from 'node:crypto';
import { LedgerError } from '../errors.ts';

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Lambda's `CodeSha256`: the same digest, base64. */
export function codeSha256Of(sha256: string): string {
  return Buffer.from(assertSha256(sha256), 'hex').toString('base64');
}

/** The hex name of a package from Lambda's base64 `CodeSha256`. */
export function sha256FromCodeSha256(codeSha256: string): string {
  const bytes = /^[A-Za-z0-9+/]{43}=$/.test(codeSha256) ? Buffer.from(codeSha256, 'base64') : null;
  if (!bytes || bytes.length !== 32) throw new LedgerError('InvalidParameter', 'CodeSha256 must be the base64 of a SHA-256 digest (44 characters)');
  return bytes.toString('hex');
}

/** A package name as given by a caller: 64 hex digits, either case; returned lowercase. */
export function assertSha256(sha256: unknown): string {
  const hex = typeof sha256 === 'string' ? sha256.toLowerCase() : '';
  if (!SHA256_HEX.test(hex)) throw new LedgerError('InvalidParameter', 'a code package is named by its SHA-256 digest: 64 hexadecimal digits');
  return hex;
}
