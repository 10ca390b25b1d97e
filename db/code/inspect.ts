// Reading a code package: an untrusted zip is checked whole before anything trusts it,
// and extracted only through the same checks. yauzl reads the central directory (the
// zip's authoritative index, not the local headers a streaming reader would believe) and
// inflates with node's zlib; everything else is checked here (docs/code.md):
//
//   1. size of the zip; it parses as a zip; entry count
//   2. every entry: safe name, regular file or directory (no symlinks, devices),
//      not encrypted, stored or deflated
//   3. the names together: no duplicates (case- and normalisation-folded), no file that
//      is also a directory, at least one file, declared sizes within the limit
//   4. no two entries share bytes of the zip (overlapping entries: quadratic zip bombs)
//   5. every file inflated and counted: yauzl fails an entry that inflates to more or
//      fewer bytes than declared; CRC-32 must match
import { mkdir } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { isLedgerError } from '../errors.ts';
import { codeSha256Of, sha256Hex } from './hash.ts';
import { CODE_LIMITS, type CodeLimits } from './limits.ts';
import { foldPath, whyUnsafePath } from './paths.ts';
import { refuseCodePackage, unzippedTooLarge, zippedTooLarge } from './refusals.ts';

export interface CodePackageFile {
  /** relative path inside the package, `/` separated */
  path: string;
  size: number;
  /** any execute bit in the entry's Unix mode; extracted as 0755, else 0644 */
  executable: boolean;
}

export interface CodePackageManifest {
  /** SHA-256 of the zip bytes, lowercase hex: the package's name */
  sha256: string;
  /** the same digest in base64, Lambda's `CodeSha256` */
  codeSha256: string;
  zippedSize: number;
  /** bytes of all files, as counted while inflating them */
  unzippedSize: number;
  fileCount: number;
  /** in the zip's central directory order */
  files: CodePackageFile[];
  /** directories the zip names explicitly (ending in `/`); others are implied by files */
  directories: string[];
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
/** general purpose flags: 0 traditional encryption, 6 strong encryption, 13 encrypted central directory */
const ENCRYPTION_FLAGS = 0x0001 | 0x0040 | 0x2000;
const STORED = 0;
const DEFLATED = 8;

interface CheckedEntry {
  entry: yauzl.Entry;
  /** without the trailing `/` of a directory */
  path: string;
  directory: boolean;
  executable: boolean;
}

/** Checks a package completely (inflating every file) and describes it; stores nothing. */
export async function inspectCodePackage(zip: Uint8Array, limits: CodeLimits = CODE_LIMITS): Promise<CodePackageManifest> {
  return readCodePackage(zip, limits, {
    directory: async () => {},
    file: async () =>
      new Writable({
        write(_chunk, _encoding, done) {
          done();
        },
      }),
  });
}

/**
 * Checks a package and writes its files under `into`, which must be an empty directory
 * this process owns (the cache extracts into a fresh temporary one). On a refusal the
 * files written so far stay: the caller removes `into`.
 */
export async function extractCodePackage(zip: Uint8Array, into: string, limits: CodeLimits = CODE_LIMITS): Promise<CodePackageManifest> {
  const root = path.resolve(into);
  const target = (p: string) => {
    const full = path.resolve(root, p);
    // the names are checked already; this keeps a future change to those checks honest
    if (!full.startsWith(root + path.sep)) throw refuseCodePackage('unsafe-path', `entry '${p}' would extract outside the package directory`);
    return full;
  };
  return readCodePackage(zip, limits, {
    directory: async (p) => {
      await mkdir(target(p), { recursive: true, mode: 0o755 });
    },
    file: async (f) => {
      const full = target(f.path);
      await mkdir(path.dirname(full), { recursive: true, mode: 0o755 });
      return createWriteStream(full, { flags: 'wx', mode: f.executable ? 0o755 : 0o644 });
    },
  });
}

interface Sink {
  directory(path: string): Promise<void>;
  file(file: CodePackageFile): Promise<Writable>;
}

async function readCodePackage(zip: Uint8Array, limits: CodeLimits, sink: Sink): Promise<CodePackageManifest> {
  const bytes = Buffer.isBuffer(zip) ? zip : Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength);
  if (bytes.length === 0) throw refuseCodePackage('not-a-zip', 'Could not unzip the code package: it is empty (0 bytes)');
  if (bytes.length > limits.maxZippedBytes) throw zippedTooLarge(bytes.length, limits);

  let zipfile: yauzl.ZipFile;
  try {
    zipfile = await yauzl.fromBufferPromise(bytes, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true });
  } catch (e) {
    throw refuseCodePackage('not-a-zip', `Could not unzip the code package: ${(e as Error).message}`);
  }
  try {
    if (zipfile.entryCount > limits.maxEntries) {
      throw refuseCodePackage('too-many-entries', `The code package has ${zipfile.entryCount} entries; at most ${limits.maxEntries} are allowed`, {
        entries: zipfile.entryCount,
        limit: limits.maxEntries,
      });
    }
    const entries = await readCentralDirectory(zipfile, limits);
    const files = entries.filter((e) => !e.directory);
    checkNames(entries);
    if (files.length === 0) throw refuseCodePackage('empty', 'The code package contains no files');
    const declared = files.reduce((n, e) => n + e.entry.uncompressedSize, 0);
    if (declared > limits.maxUnzippedBytes) throw unzippedTooLarge(declared, limits, 'declared');
    await checkNoOverlap(zipfile, entries);

    const manifestFiles: CodePackageFile[] = [];
    const directories: string[] = [];
    let unzipped = 0;
    for (const e of entries) {
      if (e.directory) {
        directories.push(e.path);
        await sink.directory(e.path);
        continue;
      }
      const file: CodePackageFile = { path: e.path, size: e.entry.uncompressedSize, executable: e.executable };
      const source = await openEntry(zipfile, e);
      let sourceError: unknown;
      source.once('error', (err) => (sourceError ??= err));
      const counter = new InflatedBytes(e, limits.maxUnzippedBytes - unzipped, limits);
      try {
        await pipeline(source, counter, await sink.file(file));
      } catch (err) {
        if (isLedgerError(err)) throw err;
        if (err === sourceError) throw inflateRefusal(e, err as Error);
        throw err; // the sink's (disk full, …): not the package's fault
      }
      unzipped += counter.bytes;
      manifestFiles.push(file);
    }
    const sha256 = sha256Hex(bytes);
    return {
      sha256,
      codeSha256: codeSha256Of(sha256),
      zippedSize: bytes.length,
      unzippedSize: unzipped,
      fileCount: manifestFiles.length,
      files: manifestFiles,
      directories,
    };
  } finally {
    zipfile.close();
  }
}

async function readCentralDirectory(zipfile: yauzl.ZipFile, limits: CodeLimits): Promise<CheckedEntry[]> {
  const checked: CheckedEntry[] = [];
  const iterator = zipfile.eachEntry();
  for (;;) {
    let next: IteratorResult<yauzl.Entry>;
    try {
      next = await iterator.next();
    } catch (e) {
      const message = (e as Error).message;
      if (/encryption/.test(message)) throw refuseCodePackage('encrypted', `The code package is encrypted (${message}): encrypted zips are not supported`);
      if (/size mismatch/.test(message)) throw refuseCodePackage('size-mismatch', `The code package has an entry whose sizes disagree: ${message}`);
      throw refuseCodePackage('corrupt', `Could not unzip the code package: ${message}`);
    }
    if (next.done) return checked;
    checked.push(checkEntry(next.value, limits));
  }
}

function checkEntry(entry: yauzl.Entry, limits: CodeLimits): CheckedEntry {
  // decodeStrings is off so that yauzl hands us the raw name (backslashes intact) and the
  // checks below are ours; getFileNameLowLevel applies CP437/UTF-8 and the Unicode Path field
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, true);
  const shown = JSON.stringify(name);
  const unsafe = whyUnsafePath(name, limits) ?? yauzl.validateFileName(name);
  if (unsafe) throw refuseCodePackage('unsafe-path', `The code package has an unsafe entry name ${shown}: ${unsafe}`, { entry: name });

  const directory = name.endsWith('/');
  const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const type = mode & S_IFMT;
  if (type === S_IFLNK) throw refuseCodePackage('symlink', `The code package has a symbolic link ${shown}: links are not allowed; include the file itself`, { entry: name });
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
    throw refuseCodePackage('special-file', `The code package has ${shown}, which is not a regular file or directory (mode ${type.toString(8)})`, { entry: name });
  }
  if (type === S_IFDIR && !directory) throw refuseCodePackage('corrupt', `The code package marks ${shown} a directory but its name does not end in '/'`, { entry: name });
  if ((entry.generalPurposeBitFlag & ENCRYPTION_FLAGS) !== 0) {
    throw refuseCodePackage('encrypted', `The code package has an encrypted entry ${shown}: encrypted zips are not supported`, { entry: name });
  }
  if (directory) {
    if (entry.uncompressedSize !== 0) throw refuseCodePackage('corrupt', `The code package's directory entry ${shown} has content`, { entry: name });
  } else if (entry.compressionMethod !== STORED && entry.compressionMethod !== DEFLATED) {
    throw refuseCodePackage(
      'unsupported-compression',
      `The code package's entry ${shown} uses compression method ${entry.compressionMethod}; only stored (0) and deflate (8) are supported`,
      { entry: name, compressionMethod: entry.compressionMethod },
    );
  }
  return { entry, path: directory ? name.slice(0, -1) : name, directory, executable: !directory && (mode & 0o111) !== 0 };
}

/** Duplicates, case- or normalisation-duplicates, and a file that is also a parent directory. */
function checkNames(entries: CheckedEntry[]): void {
  const seen = new Map<string, CheckedEntry>();
  for (const e of entries) {
    const key = foldPath(e.path);
    const other = seen.get(key);
    if (other) {
      const same = other.path === e.path && other.directory === e.directory;
      throw refuseCodePackage(
        'duplicate-entry',
        same
          ? `The code package has the entry ${JSON.stringify(e.path)} twice`
          : `The code package has entries ${JSON.stringify(other.path)} and ${JSON.stringify(e.path)}, one file on case-insensitive file systems`,
        { entry: e.path, other: other.path },
      );
    }
    seen.set(key, e);
  }
  for (const e of entries) {
    const segments = e.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = seen.get(foldPath(segments.slice(0, i).join('/')));
      if (parent && !parent.directory) {
        throw refuseCodePackage('path-conflict', `The code package has ${JSON.stringify(parent.path)} as a file and as the directory of ${JSON.stringify(e.path)}`, {
          entry: e.path,
          other: parent.path,
        });
      }
    }
  }
}

/** Each entry's bytes in the zip, local header to end of data, must be its own. */
async function checkNoOverlap(zipfile: yauzl.ZipFile, entries: CheckedEntry[]): Promise<void> {
  const ranges: { start: number; end: number; path: string }[] = [];
  for (const e of entries) {
    let header: { fileDataStart: number };
    try {
      header = await zipfile.readLocalFileHeaderPromise(e.entry, { minimal: true });
    } catch (err) {
      throw refuseCodePackage('corrupt', `Could not unzip the code package's entry ${JSON.stringify(e.path)}: ${(err as Error).message}`, { entry: e.path });
    }
    ranges.push({ start: e.entry.relativeOffsetOfLocalHeader, end: header.fileDataStart + e.entry.compressedSize, path: e.path });
  }
  ranges.sort((a, b) => a.start - b.start);
  for (let i = 1; i < ranges.length; i++) {
    const [prev, cur] = [ranges[i - 1]!, ranges[i]!];
    if (cur.start < prev.end) {
      throw refuseCodePackage('overlapping-entries', `The code package's entries ${JSON.stringify(prev.path)} and ${JSON.stringify(cur.path)} share bytes of the zip`, {
        entry: cur.path,
        other: prev.path,
      });
    }
  }
}

async function openEntry(zipfile: yauzl.ZipFile, e: CheckedEntry): Promise<Readable> {
  try {
    return await zipfile.openReadStreamPromise(e.entry);
  } catch (err) {
    throw inflateRefusal(e, err as Error);
  }
}

function inflateRefusal(e: CheckedEntry, err: Error) {
  const entry = JSON.stringify(e.path);
  // yauzl's validateEntrySizes: the header lied about the inflated size (a zip bomb's trick)
  if (/too many bytes in the stream|not enough bytes in the stream/.test(err.message)) {
    return refuseCodePackage('size-mismatch', `The code package's entry ${entry} does not inflate to the ${e.entry.uncompressedSize} bytes its header declares`, {
      entry: e.path,
      declared: e.entry.uncompressedSize,
    });
  }
  return refuseCodePackage('corrupt', `Could not unzip the code package's entry ${entry}: ${err.message}`, { entry: e.path });
}

/** Counts and checksums inflated bytes; fails past the package's remaining allowance. */
class InflatedBytes extends Transform {
  bytes = 0;
  private crc = 0;

  constructor(
    private readonly e: CheckedEntry,
    private readonly allowance: number,
    private readonly limits: CodeLimits,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.allowance) {
      done(unzippedTooLarge(this.limits.maxUnzippedBytes - this.allowance + this.bytes, this.limits, 'inflated'));
      return;
    }
    this.crc = zlib.crc32(chunk, this.crc);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.crc !== this.e.entry.crc32) {
      done(refuseCodePackage('corrupt', `The code package's entry ${JSON.stringify(this.e.path)} fails its CRC-32 check`, { entry: this.e.path }));
      return;
    }
    done();
  }
}
