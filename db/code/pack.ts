// Packing a file or a directory into a code package, deterministically: the same file
// contents, names and execute bits give the same zip bytes, hence the same SHA-256, on
// any machine, in any time zone, whatever the files' timestamps, owners or the order the
// file system lists them in. That is what lets a deploy from disk publish a new version
// only when the content changed (docs/code.md).
//
//   - entries sorted by path (UTF-16 code unit order), files only (empty directories
//     are dropped), `.git` left out at any depth
//   - every entry: DOS time 1980-01-01 00:00:00, Unix mode 0644 or 0755 (any x bit)
//   - deflate level 6 from fflate, pure JavaScript (node's zlib is a build of Chromium's,
//     whose output may change with the node version and the CPU); fflate's version is
//     pinned in package.json because a different deflater may produce different bytes
//   - symlinks are followed when they resolve inside the source directory (packed as the
//     file they point to; node_modules/.bin and pnpm layouts are links); a link leading
//     outside, a dangling link, a directory cycle or a device/socket/FIFO is refused
//
// The zip is then read back through inspectCodePackage, so a packed package passes the
// same checks an uploaded one does.
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Zip, ZipDeflate } from 'fflate';
import { LedgerError } from '../errors.ts';
import { inspectCodePackage, type CodePackageManifest } from './inspect.ts';
import { CODE_LIMITS, type CodeLimits } from './limits.ts';
import { whyUnsafePath } from './paths.ts';
import { refuseCodePackage, unzippedTooLarge, zippedTooLarge } from './refusals.ts';

export interface PackedCodePackage extends CodePackageManifest {
  zip: Buffer;
}

/** Entries that never go into a package. */
export const PACK_EXCLUDED_NAMES: ReadonlySet<string> = new Set(['.git']);

// DOS time has no zone: fflate encodes the Date's local fields, so build it from local fields.
const FIXED_MTIME = () => new Date(1980, 0, 1, 0, 0, 0);
const DEFLATE_LEVEL = 6;

interface SourceFile {
  /** path inside the package */
  name: string;
  /** where to read it (a link's target) */
  real: string;
  executable: boolean;
  size: number;
}

/**
 * Packs `source` into a code package: a file becomes a package holding that file under its
 * own name; a directory becomes a package of its contents (with node_modules). Refuses
 * (typed LedgerError, as an upload would be) anything the package checks would refuse.
 */
export async function packCodePackage(source: string, limits: CodeLimits = CODE_LIMITS): Promise<PackedCodePackage> {
  const given = path.resolve(source);
  let real: string;
  try {
    real = await realpath(given);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message;
    throw new LedgerError('InvalidParameter', `Cannot pack ${given}: ${why}`);
  }
  const st = await stat(real);
  let files: SourceFile[];
  if (st.isFile()) {
    const name = path.basename(given);
    files = [{ name, real, executable: (st.mode & 0o111) !== 0, size: st.size }];
  } else if (st.isDirectory()) {
    files = await listDirectory(real, limits);
  } else {
    throw refuseCodePackage('special-file', `Cannot pack ${given}: it is neither a file nor a directory`);
  }
  for (const f of files) {
    const unsafe = whyUnsafePath(f.name, limits);
    if (unsafe) throw refuseCodePackage('unsafe-path', `Cannot pack ${JSON.stringify(f.name)}: ${unsafe}`, { entry: f.name });
  }
  if (files.length === 0) throw refuseCodePackage('empty', `Cannot pack ${given}: it holds no files`);
  if (files.length > limits.maxEntries) {
    throw refuseCodePackage('too-many-entries', `Cannot pack ${given}: ${files.length} files; at most ${limits.maxEntries} are allowed`, {
      entries: files.length,
      limit: limits.maxEntries,
    });
  }
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const zip = await deflateFiles(files, limits);
  const manifest = await inspectCodePackage(zip, limits);
  return { ...manifest, zip };
}

async function listDirectory(root: string, limits: CodeLimits): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  let total = 0;
  const inside = (p: string) => p === root || p.startsWith(root + path.sep);

  // `ancestors`: real paths of the directories being walked, to refuse a link back up
  async function walk(dir: string, prefix: string, ancestors: Set<string>): Promise<void> {
    const entries = await readdir(dir);
    for (const entry of entries) {
      if (PACK_EXCLUDED_NAMES.has(entry)) continue;
      const name = prefix === '' ? entry : `${prefix}/${entry}`;
      const full = path.join(dir, entry);
      let target = full;
      let st = await lstat(full);
      if (st.isSymbolicLink()) {
        try {
          target = await realpath(full);
        } catch {
          throw refuseCodePackage('symlink', `Cannot pack ${JSON.stringify(name)}: it is a symbolic link that leads nowhere`, { entry: name });
        }
        if (!inside(target)) {
          throw refuseCodePackage('outside-source', `Cannot pack ${JSON.stringify(name)}: it is a symbolic link to ${target}, outside ${root}`, {
            entry: name,
            target,
          });
        }
        st = await stat(target);
      }
      if (st.isDirectory()) {
        if (ancestors.has(target)) {
          throw refuseCodePackage('symlink', `Cannot pack ${JSON.stringify(name)}: it is a symbolic link to its own ancestor directory`, { entry: name });
        }
        await walk(target, name, new Set([...ancestors, target]));
      } else if (st.isFile()) {
        total += st.size;
        if (total > limits.maxUnzippedBytes) throw unzippedTooLarge(total, limits, 'on disk');
        files.push({ name, real: target, executable: (st.mode & 0o111) !== 0, size: st.size });
      } else {
        throw refuseCodePackage('special-file', `Cannot pack ${JSON.stringify(name)}: it is not a regular file or directory`, { entry: name });
      }
    }
  }
  await walk(root, '', new Set([root]));
  return files;
}

async function deflateFiles(files: SourceFile[], limits: CodeLimits): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let zipped = 0;
  let failure: Error | null = null;
  const zip = new Zip((err, data) => {
    if (err) failure ??= err;
    else {
      chunks.push(data);
      zipped += data.length;
    }
  });
  for (const f of files) {
    // one push per file: the deflate stream's block boundaries follow the pushes, so the
    // whole file at once keeps the bytes independent of how the file system reads
    const data = await readFile(f.real);
    const entry = new ZipDeflate(f.name, { level: DEFLATE_LEVEL });
    entry.mtime = FIXED_MTIME();
    entry.os = 3; // Unix: the external attributes carry a Unix mode
    entry.attrs = ((0o100000 | (f.executable ? 0o755 : 0o644)) << 16) >>> 0;
    zip.add(entry);
    entry.push(data, true);
    if (failure) throw failure;
    if (zipped > limits.maxZippedBytes) throw zippedTooLarge(zipped, limits);
  }
  zip.end();
  if (failure) throw failure;
  const out = Buffer.concat(chunks);
  if (out.length > limits.maxZippedBytes) throw zippedTooLarge(out.length, limits);
  return out;
}
