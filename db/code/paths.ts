// Which entry names a package may hold. A name is a relative path with `/` separators
// that extracts to exactly one place inside the package directory on any file system.
import { CODE_LIMITS, MAX_SEGMENT_BYTES, type CodeLimits } from './limits.ts';

/**
 * Why `name` (a file path, or a directory path ending in `/`) is not a safe entry name,
 * or null. Refused: absolute paths, drive letters, backslashes, `.`/`..`/empty segments,
 * control characters, and names too long to extract.
 */
export function whyUnsafePath(name: string, limits: Pick<CodeLimits, 'maxPathBytes'> = CODE_LIMITS): string | null {
  if (name === '' || name === '/') return 'the name is empty';
  if (name.startsWith('/')) return 'absolute paths are not allowed';
  if (/^[A-Za-z]:/.test(name)) return 'drive letters are not allowed';
  if (name.includes('\\')) return 'backslashes are not allowed (use / between directories)';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'control characters are not allowed';
  if (name.includes('\uFFFD')) return 'the name is not valid UTF-8';
  if (Buffer.byteLength(name) > limits.maxPathBytes) return `the name is longer than ${limits.maxPathBytes} bytes`;
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  for (const s of segments) {
    if (s === '') return 'empty path segments (//) are not allowed';
    if (s === '.' || s === '..') return `'${s}' path segments are not allowed`;
    if (Buffer.byteLength(s) > MAX_SEGMENT_BYTES) return `a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return null;
}

/**
 * The name two entries must not share. Case and Unicode normalisation are folded: on
 * macOS and Windows `Index.js` and `index.js` (or NFC and NFD spellings of one name) are
 * one file, and a package must extract to the same files on every host.
 */
export const foldPath = (p: string): string => p.normalize('NFC').toLowerCase();
