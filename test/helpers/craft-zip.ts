// Writes zip files byte by byte, so a test can build exactly the malformed or hostile
// package it means (lying sizes, symlink modes, encryption flags, shared data) — things
// a well-behaved zip library refuses to write.
import { deflateRawSync } from 'node:zlib';
import zlib from 'node:zlib';

export interface CraftEntry {
  name: string;
  /** the file's content (inflated); default empty */
  data?: Buffer;
  /** 0 stored, 8 deflate (default), anything else written as given */
  method?: number;
  /** the bytes stored in the zip; default: `data` deflated (method 8) or as is */
  stored?: Buffer;
  /** the uncompressed size both headers declare; default data.length */
  declaredSize?: number;
  /** default CRC-32 of data */
  crc?: number;
  /** general purpose bit flag; bit 11 (UTF-8 names) is always added */
  flags?: number;
  /** the high 16 bits of the external attributes: a Unix mode such as 0o100644 */
  unixMode?: number;
  /** version made by (high byte: host OS); default 0x031e, Unix */
  versionMadeBy?: number;
  /** extra field bytes, in both headers */
  extra?: Buffer;
  /** write no local header and data of its own: point at entry N's */
  sameDataAs?: number;
}

const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

const DOS_TIME = 0; // 00:00:00
const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01

export function craftZip(entries: CraftEntry[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  const offsets: number[] = [];
  const shapes: { stored: Buffer; crc: number; size: number }[] = [];
  let offset = 0;
  for (const [i, e] of entries.entries()) {
    const data = e.data ?? Buffer.alloc(0);
    const method = e.method ?? 8;
    const name = Buffer.from(e.name, 'utf8');
    const extra = e.extra ?? Buffer.alloc(0);
    const flags = (e.flags ?? 0) | 0x0800;
    let shape = { stored: e.stored ?? (method === 8 ? deflateRawSync(data) : data), crc: e.crc ?? zlib.crc32(data), size: e.declaredSize ?? data.length };
    let at = offset;
    if (e.sameDataAs !== undefined) {
      at = offsets[e.sameDataAs]!;
      shape = shapes[e.sameDataAs]!;
    } else {
      const local = Buffer.concat([
        u32(0x04034b50),
        u16(20),
        u16(flags),
        u16(method),
        u16(DOS_TIME),
        u16(DOS_DATE),
        u32(shape.crc),
        u32(shape.stored.length),
        u32(shape.size),
        u16(name.length),
        u16(extra.length),
        name,
        extra,
      ]);
      parts.push(local, shape.stored);
      offset += local.length + shape.stored.length;
    }
    offsets[i] = at;
    shapes[i] = shape;
    central.push(
      Buffer.concat([
        u32(0x02014b50),
        u16(e.versionMadeBy ?? 0x031e),
        u16(20),
        u16(flags),
        u16(method),
        u16(DOS_TIME),
        u16(DOS_DATE),
        u32(shape.crc),
        u32(shape.stored.length),
        u32(shape.size),
        u16(name.length),
        u16(extra.length),
        u16(0), // comment length
        u16(0), // disk number start
        u16(0), // internal attributes
        u32(((e.unixMode ?? (e.name.endsWith('/') ? 0o040755 : 0o100644)) << 16) >>> 0),
        u32(at),
        name,
        extra,
      ]),
    );
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.concat([u32(0x06054b50), u16(0), u16(0), u16(entries.length), u16(entries.length), u32(cd.length), u32(offset), u16(0)]);
  return Buffer.concat([...parts, cd, eocd]);
}

/** Info-ZIP's Unicode Path extra field (0x7075): a UTF-8 name that readers prefer to the raw one. */
export function unicodePathExtra(rawName: string, unicodeName: string): Buffer {
  const body = Buffer.concat([Buffer.from([1]), u32(zlib.crc32(Buffer.from(rawName, 'utf8'))), Buffer.from(unicodeName, 'utf8')]);
  return Buffer.concat([u16(0x7075), u16(body.length), body]);
}

/** `bytes` zero bytes, deflated, without ever holding them inflated in memory. */
export async function deflatedZeros(bytes: number): Promise<Buffer> {
  const deflate = zlib.createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (d: Buffer) => out.push(d));
  const done = new Promise<void>((resolve, reject) => {
    deflate.once('end', resolve);
    deflate.once('error', reject);
  });
  const chunk = Buffer.alloc(1 << 20);
  for (let left = bytes; left > 0; left -= chunk.length) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    if (!deflate.write(piece)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return Buffer.concat(out);
}

/** CRC-32 of `bytes` zero bytes. */
export function zerosCrc(bytes: number): number {
  const chunk = Buffer.alloc(1 << 20);
  let crc = 0;
  for (let left = bytes; left > 0; left -= chunk.length) crc = zlib.crc32(left >= chunk.length ? chunk : chunk.subarray(0, left), crc);
  return crc;
}
