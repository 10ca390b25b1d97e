// Why a code package is refused. Every refusal is a LedgerError `InvalidCodePackage`
// (Lambda's InvalidParameterValueException) with the reason in its details, except a zip
// over the upload limit, which is `CodePackageTooLarge` (413).
import { LedgerError } from '../errors.ts';
import type { CodeLimits } from './limits.ts';

export type CodePackageRefusal =
  | 'not-a-zip'
  | 'empty'
  | 'too-many-entries'
  | 'unzipped-too-large'
  | 'size-mismatch'
  | 'unsafe-path'
  | 'symlink'
  | 'special-file'
  | 'duplicate-entry'
  | 'path-conflict'
  | 'encrypted'
  | 'unsupported-compression'
  | 'overlapping-entries'
  | 'corrupt'
  | 'outside-source';

export function refuseCodePackage(reason: CodePackageRefusal, message: string, details: Record<string, unknown> = {}): LedgerError {
  return new LedgerError('InvalidCodePackage', message, { reason, ...details });
}

export function zippedTooLarge(bytes: number, limits: CodeLimits): LedgerError {
  return new LedgerError(
    'CodePackageTooLarge',
    `Zipped size must be at most ${limits.maxZippedBytes} bytes for a direct upload; this package is ${bytes} bytes`,
    { zippedSize: bytes, limit: limits.maxZippedBytes },
  );
}

export function unzippedTooLarge(bytes: number, limits: CodeLimits, counted: 'declared' | 'inflated' | 'on disk'): LedgerError {
  return refuseCodePackage(
    'unzipped-too-large',
    `Unzipped size must be at most ${limits.maxUnzippedBytes} bytes; this package's files are ${counted === 'inflated' ? 'at least ' : ''}${bytes} bytes (${counted})`,
    { unzippedSize: bytes, limit: limits.maxUnzippedBytes },
  );
}
