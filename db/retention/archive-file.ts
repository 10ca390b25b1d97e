// An archive of one events partition (docs/retention.md): the events as gzip-compressed
// JSON lines, and a manifest that names them. Checking a file needs no database: its
// bytes against the manifest's SHA-256, its lines against the counts, ranges and the
// content hash, and every event's tamper-evidence leaf hash against the Merkle root of
// the archived leaves that the manifest carries.
//
// Why JSON lines and node:zlib, not Parquet: an event's `data` is schemaless JSON, which a
// columnar file would store as one opaque string column anyway; a line is the exact text
// PostgreSQL printed, so a restore loads byte-identical jsonb and `zcat | jq` reads an
// archive with no special tool; and it needs no dependency beyond node itself.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { eventLeafHash, LEAF_VERSION } from '../tamper/leaf.ts';
import { Frontier } from '../tamper/merkle.ts';

export const ARCHIVE_FORMAT = 'invoke-ledger-events-archive';
export const ARCHIVE_VERSION = 1;

/** One line of an archive: an event, every column, as PostgreSQL renders it. */
export interface ArchivedEvent {
  position: string;
  txId: string;
  invocationId: string;
  seq: number;
  type: string;
  attempt: number | null;
  /** UTC, six fractional digits */
  occurredAt: string;
  data: unknown;
}

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_VERSION;
  partition: string;
  /** invocation ids in [rangeFrom, rangeTo) */
  rangeFrom: string;
  rangeTo: string;
  eventCount: number;
  invocationCount: number;
  firstPosition: string | null;
  lastPosition: string | null;
  firstOccurredAt: string | null;
  lastOccurredAt: string | null;
  file: {
    /** next to the manifest */
    name: string;
    bytes: number;
    /** SHA-256 of the compressed file */
    sha256: string;
    /** SHA-256 of the uncompressed lines: survives recompression */
    contentSha256: string;
  };
  /** tamper evidence: the events' leaf hashes (docs/tamper-evidence.md) in ledger order (tx_id, position) */
  leaves: {
    leafVersion: number;
    /** RFC 6962 Merkle root of the archived events' leaf hashes, in the file's order */
    archiveRoot: string;
    /** how many of the events the sealer had sealed at export, each checked against its record */
    sealed: number;
    /** the sealed tree when exported, and the newest signed tree head covering it, if any */
    treeSize: number;
    treeRoot: string;
    treeHead: unknown;
  };
  exportedAt: string;
  exportedBy: string;
}

export const sha256Hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

export const archiveFileName = (partition: string) => `${partition}.ndjson.gz`;
export const manifestFileName = (partition: string) => `${partition}.manifest.json`;

export async function readManifest(manifestPath: string): Promise<{ manifest: ArchiveManifest; sha256: string; dataPath: string }> {
  const bytes = await readFile(manifestPath);
  let manifest: ArchiveManifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as ArchiveManifest;
  } catch (e) {
    throw new Error(`${manifestPath} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (manifest.format !== ARCHIVE_FORMAT || manifest.version !== ARCHIVE_VERSION) {
    throw new Error(`${manifestPath} is not an events archive manifest (format ${String(manifest.format)} version ${String(manifest.version)})`);
  }
  // the data file is named by the manifest, never a path outside its directory
  if (path.basename(manifest.file.name) !== manifest.file.name) throw new Error(`${manifestPath}: file name ${manifest.file.name} is not a plain name`);
  return { manifest, sha256: sha256Hex(bytes), dataPath: path.join(path.dirname(manifestPath), manifest.file.name) };
}

/** Each line of an archive file, in order, with the raw text (for restores) and the parsed event. */
export async function* archiveLines(dataPath: string): AsyncGenerator<{ text: string; event: ArchivedEvent }> {
  // iterating the gunzip stream turns a read or inflate error into a rejection here
  const gunzip = createGunzip();
  const file = createReadStream(dataPath);
  file.on('error', (e) => gunzip.destroy(e));
  file.pipe(gunzip);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of gunzip) {
    const lines = (rest + decoder.write(chunk as Buffer)).split('\n');
    rest = lines.pop() as string;
    for (const text of lines) if (text !== '') yield { text, event: JSON.parse(text) as ArchivedEvent };
  }
  rest += decoder.end();
  if (rest !== '') yield { text: rest, event: JSON.parse(rest) as ArchivedEvent };
}

export const leafOf = (e: ArchivedEvent) =>
  eventLeafHash({ invocationId: e.invocationId, seq: e.seq, type: e.type, attempt: e.attempt, occurredAt: e.occurredAt, data: e.data });

/** What an archive's lines add up to: everything the manifest states about them. */
export interface ArchiveDigest {
  eventCount: number;
  invocationCount: number;
  firstPosition: string | null;
  lastPosition: string | null;
  firstOccurredAt: string | null;
  lastOccurredAt: string | null;
  contentSha256: string;
  archiveRoot: string;
}

/** Folds lines (in file order) into a digest; also checks order and range as it goes. */
export class DigestBuilder {
  private readonly content = createHash('sha256');
  private readonly frontier = new Frontier();
  private readonly invocations = new Set<string>();
  private last: { tx: bigint; pos: bigint } | null = null;
  readonly problems: string[] = [];
  private d: Omit<ArchiveDigest, 'contentSha256' | 'archiveRoot' | 'invocationCount'> = {
    eventCount: 0, firstPosition: null, lastPosition: null, firstOccurredAt: null, lastOccurredAt: null,
  };

  constructor(private readonly range?: { from: string; to: string }) {}

  add(text: string, e: ArchivedEvent): void {
    this.content.update(text).update('\n');
    this.frontier.push(leafOf(e));
    this.invocations.add(e.invocationId);
    const at = { tx: BigInt(e.txId), pos: BigInt(e.position) };
    const n = this.d.eventCount + 1;
    if (this.last && (at.tx < this.last.tx || (at.tx === this.last.tx && at.pos <= this.last.pos))) {
      if (this.problems.length < 20) this.problems.push(`line ${n}: event at position ${e.position} is out of ledger order (tx_id, position)`);
    }
    if (this.range && (e.invocationId < this.range.from || e.invocationId >= this.range.to)) {
      if (this.problems.length < 20) this.problems.push(`line ${n}: invocation ${e.invocationId} is outside the archived range`);
    }
    this.last = at;
    const d = this.d;
    d.eventCount = n;
    if (d.firstPosition === null || BigInt(e.position) < BigInt(d.firstPosition)) d.firstPosition = e.position;
    if (d.lastPosition === null || BigInt(e.position) > BigInt(d.lastPosition)) d.lastPosition = e.position;
    if (d.firstOccurredAt === null || e.occurredAt < d.firstOccurredAt) d.firstOccurredAt = e.occurredAt;
    if (d.lastOccurredAt === null || e.occurredAt > d.lastOccurredAt) d.lastOccurredAt = e.occurredAt;
  }

  digest(): ArchiveDigest {
    return { ...this.d, invocationCount: this.invocations.size, contentSha256: this.content.digest('hex'), archiveRoot: this.frontier.root().toString('hex') };
  }
}

export interface ArchiveCheck {
  ok: boolean;
  manifest: ArchiveManifest;
  manifestSha256: string;
  problems: string[];
}

/** Checks an archive offline: file bytes, every line, every leaf hash, against its manifest. */
export async function verifyArchiveFile(manifestPath: string): Promise<ArchiveCheck> {
  const { manifest, sha256, dataPath } = await readManifest(manifestPath);
  const problems: string[] = [];
  const fileHash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(dataPath)) {
      fileHash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (e) {
    return { ok: false, manifest, manifestSha256: sha256, problems: [`cannot read ${dataPath}: ${(e as Error).message}`] };
  }
  if (bytes !== manifest.file.bytes) problems.push(`${manifest.file.name} has ${bytes} bytes, the manifest says ${manifest.file.bytes}`);
  const fileSha = fileHash.digest('hex');
  if (fileSha !== manifest.file.sha256) problems.push(`${manifest.file.name} has SHA-256 ${fileSha}, the manifest says ${manifest.file.sha256}`);

  const builder = new DigestBuilder({ from: manifest.rangeFrom, to: manifest.rangeTo });
  try {
    for await (const { text, event } of archiveLines(dataPath)) builder.add(text, event);
  } catch (e) {
    problems.push(`${manifest.file.name} cannot be read to the end: ${(e as Error).message}`);
    return { ok: false, manifest, manifestSha256: sha256, problems };
  }
  problems.push(...builder.problems);
  const d = builder.digest();
  const stated: Record<keyof ArchiveDigest, unknown> = {
    eventCount: manifest.eventCount,
    invocationCount: manifest.invocationCount,
    firstPosition: manifest.firstPosition,
    lastPosition: manifest.lastPosition,
    firstOccurredAt: manifest.firstOccurredAt,
    lastOccurredAt: manifest.lastOccurredAt,
    contentSha256: manifest.file.contentSha256,
    archiveRoot: manifest.leaves.archiveRoot,
  };
  for (const k of Object.keys(stated) as (keyof ArchiveDigest)[]) {
    if (d[k] !== stated[k]) problems.push(`${k}: the lines give ${String(d[k])}, the manifest says ${String(stated[k])}`);
  }
  if (manifest.leaves.leafVersion !== LEAF_VERSION) problems.push(`leaf version ${manifest.leaves.leafVersion} is not ${LEAF_VERSION}: the leaf hashes were not recomputed the same way`);
  return { ok: problems.length === 0, manifest, manifestSha256: sha256, problems };
}
