// The limits a code package must keep, Lambda's where Lambda has one (docs/code.md).

export interface CodeLimits {
  /** bytes of the zip itself: Lambda's 50 MB for a direct (ZipFile) upload */
  maxZippedBytes: number;
  /** bytes of every file inflated, counted while inflating: Lambda's 250 MB */
  maxUnzippedBytes: number;
  /** entries (files and directories): the most a zip holds without ZIP64's entry count */
  maxEntries: number;
  /** UTF-8 bytes of one entry's path, so that <cache dir>/<sha256>/<path> stays under PATH_MAX */
  maxPathBytes: number;
}

export const CODE_LIMITS: Readonly<CodeLimits> = Object.freeze({
  maxZippedBytes: 52_428_800,
  maxUnzippedBytes: 262_144_000,
  maxEntries: 65_535,
  maxPathBytes: 3_072,
});

/** Lambda's default code storage per account (75 GB), counted as zipped bytes. */
export const DEFAULT_CODE_STORAGE_BYTES = 75 * 1024 ** 3;

/** one path segment: NAME_MAX of the file systems the cache is extracted to */
export const MAX_SEGMENT_BYTES = 255;
