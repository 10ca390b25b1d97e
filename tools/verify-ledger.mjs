#!/usr/bin/env node
// verify-ledger: checks an Invoke Ledger database against signed tree heads, trusting
// nothing the database says about itself. It reads the events, recomputes the RFC 6962
// Merkle tree from them (docs/tamper-evidence.md is the specification this file follows),
// and checks every tree head's Ed25519 signature and root. When a root differs it names
// what changed: edited, deleted, inserted, swapped or moved events, a truncated tail, or
// a fork (two signed heads that no single history can satisfy).
//
// Standalone on purpose: only node: built-ins, and the `pg` driver when it reads a
// database. Copy this file anywhere, `npm install pg`, run it. It shares no code with the
// product, so it is a second, independent implementation of the format.
//
//   node verify-ledger.mjs --database-url URL --tree-head heads.jsonl [--tree-head …] --public-key key.pub [--json]
//   node verify-ledger.mjs proof --proof proof.json --tree-head head.json --public-key key.pub
//   node verify-ledger.mjs consistency --proof proof.json --tree-head old.json --tree-head new.json --public-key key.pub
//
// Exit status: 0 all good, 1 something is wrong (listed), 2 the command itself was wrong.
import * as crypto from 'node:crypto';
import { createHash, createPublicKey, verify as ed25519Verify } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';

// ---------------------------------------------------------------------------------------
// RFC 8785 (JCS) canonical JSON. In JavaScript the RFC's number and string rules are the
// language's own (ECMAScript Number::toString, JSON.stringify's escapes); objects are
// sorted by key in UTF-16 code units, which is what Array.prototype.sort does.

export function canonicalJson(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`${value} has no JSON form`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  }
  throw new Error(`a ${typeof value} has no JSON form`);
}

/** The decimal value of a JSON number, normalized: "-" digits "e" exponent, no redundant zeros. */
function decimalOf(token) {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token);
  if (!m) return null;
  const frac = m[3] ?? '';
  let digits = (m[2] + frac).replace(/^0+/, '');
  let exp = Number(m[4] ?? 0) - frac.length;
  if (digits === '') return '0';
  const trimmed = digits.replace(/0+$/, '');
  exp += digits.length - trimmed.length;
  digits = trimmed;
  return `${m[1]}${digits}e${exp}`;
}

/**
 * Numbers in a JSON text that an IEEE double (and so RFC 8785) does not hold exactly:
 * two such texts could canonicalize alike. The product never writes one.
 */
export function inexactNumbers(jsonText) {
  const out = [];
  for (let i = 0; i < jsonText.length; i++) {
    const c = jsonText[i];
    if (c === '"') {
      for (i++; i < jsonText.length && jsonText[i] !== '"'; i++) if (jsonText[i] === '\\') i++;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i + 1;
      while (j < jsonText.length && /[0-9.eE+-]/.test(jsonText[j])) j++;
      const token = jsonText.slice(i, j);
      const n = Number(token);
      if (!Number.isFinite(n) || decimalOf(token) !== decimalOf(String(n))) out.push(token);
      i = j - 1;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Leaves and the tree (RFC 6962 §2.1)

export const EVENT_TYPES = ['accepted', 'started', 'failed', 'retried', 'succeeded', 'dead_lettered', 'cancelled', 'redriven'];

/** The bytes of an event's leaf: its content as canonical JSON, UTF-8. */
export function leafBytes(event) {
  return Buffer.from(
    canonicalJson({
      v: 1,
      invocationId: event.invocationId,
      seq: event.seq,
      type: event.type,
      attempt: event.attempt ?? null,
      occurredAt: event.occurredAt,
      data: event.data,
    }),
    'utf8',
  );
}

// crypto.hash (Node ≥ 20.12) is much faster than createHash for small inputs; older Nodes use the latter
const sha256 =
  typeof crypto.hash === 'function'
    ? (...parts) => crypto.hash('sha256', parts.length === 1 ? parts[0] : Buffer.concat(parts), 'buffer')
    : (...parts) => {
        const h = createHash('sha256');
        for (const p of parts) h.update(p);
        return h.digest();
      };
export const leafHash = (bytes) => sha256(Buffer.from([0]), bytes);
export const nodeHash = (left, right) => sha256(Buffer.from([1]), left, right);
export const EMPTY_ROOT = sha256();
export const eventLeafHash = (event) => leafHash(leafBytes(event));

/**
 * The leaf hash of an event read from the database. An event that has no canonical form
 * (a number beyond a double's range) was never sealed: it gets a hash that matches no
 * leaf, and is reported as an inexact number.
 */
function ledgerLeafHash(e) {
  try {
    return eventLeafHash(e);
  } catch {
    return sha256(Buffer.from(`unencodable event ${e.position} ${e.dataText}`, 'utf8'));
  }
}

/** The root of the tree of all leaves pushed so far, kept in O(log n) memory. */
export class Frontier {
  constructor() {
    this.size = 0;
    this.roots = []; // roots[level]: a complete subtree of 2^level leaves waiting for its right sibling
  }
  push(hash) {
    let node = hash;
    let level = 0;
    while (this.roots[level]) {
      node = nodeHash(this.roots[level], node);
      this.roots[level] = undefined;
      level++;
    }
    this.roots[level] = node;
    this.size++;
  }
  root() {
    let acc;
    for (const r of this.roots) if (r) acc = acc ? nodeHash(r, acc) : r;
    return acc ?? EMPTY_ROOT;
  }
}

const odd = (x) => x % 2 === 1;
const half = (x) => Math.floor(x / 2);

/** RFC 9162 §2.1.3.2 */
export function verifyInclusion(leafIndex, treeSize, leaf, path, root) {
  if (!(Number.isSafeInteger(leafIndex) && leafIndex >= 0 && leafIndex < treeSize)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = Buffer.from(leaf);
  for (const p of path) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) while (!(odd(fn) || fn === 0)) [fn, sn] = [half(fn), half(sn)];
    } else {
      r = nodeHash(r, p);
    }
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2 */
export function verifyConsistency(m, n, oldRoot, newRoot, proof) {
  if (!(m > 0 && m <= n)) return false;
  if (m === n) return proof.length === 0 && Buffer.from(oldRoot).equals(newRoot);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (odd(fn)) [fn, sn] = [half(fn), half(sn)];
  let fr = Buffer.from(path[0]);
  let sr = Buffer.from(path[0]);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) while (!(odd(fn) || fn === 0)) [fn, sn] = [half(fn), half(sn)];
    } else {
      sr = nodeHash(sr, c);
    }
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

function isPowerOfTwo(x) {
  let v = x;
  while (v > 1 && v % 2 === 0) v /= 2;
  return v === 1;
}

// ---------------------------------------------------------------------------------------
// Tree heads: Ed25519 over "invoke-ledger tree head v1\n" || uint64be(size) || uint64be(ms) || root

export const TREE_HEAD_CONTEXT = 'invoke-ledger tree head v1\n';

export function treeHeadMessage(head) {
  const numbers = Buffer.alloc(16);
  numbers.writeBigUInt64BE(BigInt(head.treeSize), 0);
  numbers.writeBigUInt64BE(BigInt(head.timestamp), 8);
  return Buffer.concat([Buffer.from(TREE_HEAD_CONTEXT, 'ascii'), numbers, Buffer.from(head.rootHash, 'hex')]);
}

export function loadPublicKey(pem) {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the public key is ${key.asymmetricKeyType}, not Ed25519`);
  return key;
}

export function keyIdOf(publicKey) {
  return sha256(publicKey.export({ type: 'spki', format: 'der' }).subarray(12)).toString('hex');
}

/** 'valid', or why not. */
export function checkTreeHead(head, publicKey) {
  const shape =
    head &&
    Number.isSafeInteger(head.treeSize) &&
    head.treeSize >= 0 &&
    Number.isSafeInteger(head.timestamp) &&
    head.timestamp >= 0 &&
    typeof head.rootHash === 'string' &&
    /^[0-9a-f]{64}$/.test(head.rootHash) &&
    typeof head.signature === 'string';
  if (!shape) return 'malformed (needs treeSize, timestamp, rootHash, signature)';
  if (head.keyId !== undefined && head.keyId !== keyIdOf(publicKey)) return `signed by another key (${String(head.keyId).slice(0, 16)}…)`;
  const signature = Buffer.from(head.signature, 'base64');
  if (signature.length !== 64) return 'bad signature';
  return ed25519Verify(null, treeHeadMessage(head), publicKey, signature) ? 'valid' : 'bad signature';
}

/** One head (JSON), an array of heads, or one head per line (a witness's file). */
export function parseTreeHeads(text, source = '') {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  let heads;
  try {
    const parsed = JSON.parse(trimmed);
    heads = Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    heads = trimmed
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l, i) => {
        try {
          return JSON.parse(l);
        } catch {
          throw new Error(`${source || 'tree heads'}: line ${i + 1} is not JSON`);
        }
      });
  }
  return heads.map((h, i) => ({ ...h, source: source ? `${source}${heads.length > 1 ? `#${i + 1}` : ''}` : `#${i + 1}` }));
}

const describeHead = (h) => `tree head of size ${h.treeSize} signed ${new Date(h.timestamp).toISOString()}${h.source ? ` (${h.source})` : ''}`;

// ---------------------------------------------------------------------------------------
// Proofs handed out by the API / CLI

/** Checks an inclusion proof (one event, or an invocation's) with only a tree head and the key. */
export function verifyInclusionProof(proof, head, publicKey) {
  const problems = [];
  const signature = checkTreeHead(head, publicKey);
  if (signature !== 'valid') problems.push(`${describeHead(head)}: ${signature}`);
  const events = Array.isArray(proof.events) ? proof.events : [proof];
  if (proof.treeSize !== undefined && proof.treeSize !== head.treeSize) {
    problems.push(`the proof is for a tree of ${proof.treeSize} leaves, the tree head has ${head.treeSize}`);
  }
  const root = Buffer.from(head.rootHash, 'hex');
  for (const p of events) {
    const leaf = eventLeafHash(p.event);
    const ok = verifyInclusion(p.leafIndex, head.treeSize, leaf, p.auditPath.map((h) => Buffer.from(h, 'hex')), root);
    if (!ok) problems.push(`event ${p.event.invocationId} seq ${p.event.seq} (leaf ${p.leafIndex}) is not proven in the ${describeHead(head)}`);
  }
  return { ok: problems.length === 0, verified: events.length, problems };
}

/** Checks that the newer head's tree extends the older one's. */
export function verifyConsistencyProof(proof, oldHead, newHead, publicKey) {
  const problems = [];
  for (const h of [oldHead, newHead]) {
    const s = checkTreeHead(h, publicKey);
    if (s !== 'valid') problems.push(`${describeHead(h)}: ${s}`);
  }
  const hashes = (proof.proof ?? []).map((h) => Buffer.from(h, 'hex'));
  const ok = verifyConsistency(oldHead.treeSize, newHead.treeSize, Buffer.from(oldHead.rootHash, 'hex'), Buffer.from(newHead.rootHash, 'hex'), hashes);
  if (!ok) problems.push(`the ${describeHead(newHead)} does not extend the ${describeHead(oldHead)}: a fork, or the wrong proof`);
  return { ok: problems.length === 0, problems };
}

// ---------------------------------------------------------------------------------------
// Reading the database. One REPEATABLE READ, READ ONLY transaction: every pass sees the
// same ledger. Only the `audit` views are read, so the ledger_auditor role suffices.

const EVENTS_QUERY = `
  select e.position::text as pos, e.tx_id::text as tx, e.invocation_id::text as invocation_id, e.seq, e.type, e.attempt,
         to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as occurred_at, e.data::text as data_text
  from audit.invocation_events e
  order by e.tx_id, e.position`;

// (aliases differ from the column names: ORDER BY would take an output column first)
const RECORD_QUERY = `select l.leaf_index::text as idx, l.position::text as pos, encode(l.leaf_hash, 'hex') as hash
  from audit.merkle_leaves l order by l.leaf_index`;

let cursorCount = 0;

async function* rowsOf(client, text, batch = 5000) {
  const name = `verify_ledger_${++cursorCount}`;
  await client.query(`declare ${name} no scroll cursor for ${text}`);
  try {
    for (;;) {
      const { rows } = await client.query(`fetch ${batch} from ${name}`);
      if (rows.length === 0) return;
      yield* rows;
    }
  } finally {
    await client.query(`close ${name}`).catch(() => {});
  }
}

async function* databaseEventsOf(client) {
  for await (const r of rowsOf(client, EVENTS_QUERY)) {
    yield {
      position: r.pos,
      txId: r.tx,
      invocationId: r.invocation_id,
      seq: r.seq,
      type: r.type,
      attempt: r.attempt,
      occurredAt: r.occurred_at,
      data: JSON.parse(r.data_text),
      dataText: r.data_text,
    };
  }
}

// Archives of months dropped from the database (docs/retention.md): a manifest names a gzip
// file of JSON lines, one event each, in ledger order. Their events take their place in
// the leaf order again, so signed heads that covered them are reproduced as before.

async function* archiveEventsOf(manifestPath) {
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const file = path.join(path.dirname(manifestPath), path.basename(String(manifest.file?.name)));
  const gunzip = createGunzip();
  const input = createReadStream(file);
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  const toEvent = (line) => {
    const e = JSON.parse(line);
    // `data` is the last member of a line as PostgreSQL prints it: its text, for the exactness check
    const at = line.lastIndexOf('"data" : ');
    const dataText = at >= 0 ? line.slice(at + 9, -1) : JSON.stringify(e.data);
    return { position: e.position, txId: e.txId, invocationId: e.invocationId, seq: e.seq, type: e.type, attempt: e.attempt, occurredAt: e.occurredAt, data: e.data, dataText };
  };
  for await (const chunk of gunzip) {
    const lines = (rest + decoder.write(chunk)).split('\n');
    rest = lines.pop();
    for (const line of lines) if (line) yield toEvent(line);
  }
  rest += decoder.end();
  if (rest) yield toEvent(rest);
}

const ledgerOrder = (a, b) => {
  const [ta, tb] = [BigInt(a.txId), BigInt(b.txId)];
  if (ta !== tb) return ta < tb ? -1 : 1;
  const [pa, pb] = [BigInt(a.position), BigInt(b.position)];
  return pa === pb ? 0 : pa < pb ? -1 : 1;
};

/** The database's events and the archives', merged in ledger order; an event in both is read once. */
async function* eventsOf(client, archives = []) {
  const sources = [databaseEventsOf(client), ...archives.map(archiveEventsOf)];
  const heads = await Promise.all(sources.map((s) => s.next()));
  for (;;) {
    let min = -1;
    for (let i = 0; i < sources.length; i++) {
      if (heads[i].done) continue;
      if (min < 0 || ledgerOrder(heads[i].value, heads[min].value) < 0) min = i;
    }
    if (min < 0) return;
    const e = heads[min].value;
    yield e;
    for (let i = 0; i < sources.length; i++) {
      while (!heads[i].done && ledgerOrder(heads[i].value, e) === 0) heads[i] = await sources[i].next();
    }
  }
}

/** The sealer's record, or null when it cannot be read (it is only ever a hint). */
async function readRecord(client) {
  await client.query('savepoint record');
  try {
    const hashes = [];
    const positions = [];
    for await (const r of rowsOf(client, RECORD_QUERY, 20000)) {
      if (Number(r.idx) !== hashes.length) return { hashes, positions, gapAt: hashes.length };
      hashes.push(r.hash);
      positions.push(r.pos);
    }
    await client.query('release savepoint record');
    return { hashes, positions, gapAt: null };
  } catch {
    await client.query('rollback to savepoint record');
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// Verification

const describeEvent = (e) => `event at position ${e.position} (invocation ${e.invocationId}, seq ${e.seq}, ${e.type})`;

/** Positions in a sequence of distinct numbers that are in one longest increasing subsequence. */
function longestIncreasing(values) {
  const tails = [];
  const prev = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (values[tails[mid]] < values[i]) lo = mid + 1;
      else hi = mid;
    }
    prev[i] = lo > 0 ? tails[lo - 1] : -1;
    tails[lo] = i;
  }
  const keep = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) keep.add(i);
  return keep;
}

/**
 * Names what changed in the first `size` leaves, given the sealer's record of them once
 * that record reproduced a signed root (so every hash in it is what was signed).
 */
async function locate(client, record, size, archives) {
  const problems = [];
  let rank = 0;
  let firstDiff = -1;
  const after = [];
  for await (const e of eventsOf(client, archives)) {
    const hash = ledgerLeafHash(e).toString('hex');
    if (firstDiff < 0) {
      if (rank < size && hash === record.hashes[rank]) {
        rank++;
        continue;
      }
      firstDiff = rank;
    }
    const { data: _data, ...light } = e;
    after.push({ rank, hash, event: light });
    rank++;
  }
  if (firstDiff < 0) firstDiff = rank;
  const byHash = new Map();
  const byPosition = new Map();
  for (let k = firstDiff; k < size; k++) {
    byHash.set(record.hashes[k], k);
    byPosition.set(record.positions[k], k);
  }
  const matched = new Map();
  const unmatched = [];
  for (const a of after) {
    const k = byHash.get(a.hash);
    if (k === undefined) unmatched.push(a);
    else if (matched.has(k)) {
      problems.push({ kind: 'inserted', leafIndex: k, position: a.event.position, message: `INSERTED a copy of leaf ${k}: ${describeEvent(a.event)} repeats an event already in the tree` });
    } else {
      a.k = k;
      matched.set(k, a);
    }
  }
  let lastMatchedRank = firstDiff - 1;
  for (const a of matched.values()) lastMatchedRank = Math.max(lastMatchedRank, a.rank);
  const edited = new Set();
  let unsealed = 0;
  for (const a of unmatched) {
    const k = byPosition.get(a.event.position);
    if (k !== undefined && !matched.has(k)) {
      edited.add(k);
      // a changed type is the one edit that can be undone by trying: say what it was
      const data = JSON.parse(a.event.dataText);
      const was = EVENT_TYPES.find((t) => t !== a.event.type && ledgerLeafHash({ ...a.event, data, type: t }).toString('hex') === record.hashes[k]);
      problems.push({
        kind: 'edited',
        leafIndex: k,
        position: a.event.position,
        invocationId: a.event.invocationId,
        seq: a.event.seq,
        message: `EDITED leaf ${k}: the ${describeEvent(a.event)} is not what was sealed${was ? `; its type was '${was}'` : ''}`,
      });
    } else if (a.rank < lastMatchedRank) {
      problems.push({
        kind: 'inserted',
        position: a.event.position,
        invocationId: a.event.invocationId,
        seq: a.event.seq,
        message: `INSERTED ${describeEvent(a.event)}: it sits among sealed events but was never sealed`,
      });
    } else {
      unsealed++;
    }
  }
  const missing = [];
  for (let k = firstDiff; k < size; k++) if (!matched.has(k) && !edited.has(k)) missing.push(k);
  let maxMatched = firstDiff - 1;
  for (const k of matched.keys()) maxMatched = Math.max(maxMatched, k);
  for (const k of edited) maxMatched = Math.max(maxMatched, k);
  const tail = missing.filter((k) => k > maxMatched);
  for (const k of missing) {
    if (k > maxMatched) continue;
    problems.push({ kind: 'deleted', leafIndex: k, position: record.positions[k], message: `DELETED leaf ${k}: the event at position ${record.positions[k]} is gone` });
  }
  if (tail.length > 0) {
    problems.push({
      kind: 'truncated',
      leafIndex: tail[0],
      count: tail.length,
      positions: tail.map((k) => record.positions[k]),
      message: `TRUNCATED: the last ${tail.length} sealed event(s) are gone, leaves ${tail[0]}…${size - 1} (positions ${record.positions[tail[0]]}…${record.positions[size - 1]})`,
    });
  }
  // order: matched events, in ledger order, should be in leaf order
  const inOrder = [...matched.values()].sort((x, y) => x.rank - y.rank);
  const byLeaf = [...inOrder].sort((x, y) => x.k - y.k);
  const placeOf = new Map(byLeaf.map((a, i) => [a, i]));
  const swapped = new Set();
  inOrder.forEach((a, i) => {
    const j = placeOf.get(a);
    if (j !== i && !swapped.has(a) && placeOf.get(inOrder[j]) === i) {
      const b = inOrder[j];
      swapped.add(a).add(b);
      const [x, y] = a.k < b.k ? [a, b] : [b, a];
      problems.push({
        kind: 'swapped',
        leafIndexes: [x.k, y.k],
        positions: [x.event.position, y.event.position],
        message: `SWAPPED leaves ${x.k} and ${y.k}: the ${describeEvent(x.event)} and the ${describeEvent(y.event)} are in each other's place`,
      });
    }
  });
  const keep = longestIncreasing(inOrder.map((a) => a.k));
  inOrder.forEach((a, i) => {
    if (keep.has(i) || swapped.has(a)) return;
    problems.push({ kind: 'moved', leafIndex: a.k, position: a.event.position, message: `MOVED leaf ${a.k}: the ${describeEvent(a.event)} is out of its sealed place` });
  });
  return { problems, unsealed };
}

/**
 * Verifies the ledger behind `client` (a connected pg.Client) against tree heads; with
 * `archives` (manifest paths), the archived months dropped from the database count too.
 * Returns { ok, eventsRead, treeHeads: [...], problems: [{ kind, message, … }] }.
 */
export async function verifyLedger({ client, treeHeads, publicKey, archives = [] }) {
  const key = typeof publicKey === 'string' ? loadPublicKey(publicKey) : publicKey;
  const problems = [];
  const heads = treeHeads.map((h) => ({ ...h, signature_: checkTreeHead(h, key) }));
  for (const h of heads) if (h.signature_ !== 'valid') problems.push({ kind: 'signature', message: `BAD TREE HEAD: the ${describeHead(h)} is ${h.signature_}; it proves nothing` });
  const valid = heads.filter((h) => h.signature_ === 'valid');
  const sizes = [...new Set(valid.map((h) => h.treeSize))].sort((a, b) => a - b);

  await client.query('begin isolation level repeatable read read only');
  try {
    // pass 1: the events' roots at every signed size
    const eventRoots = new Map();
    const frontier = new Frontier();
    if (sizes.includes(0)) eventRoots.set(0, frontier.root());
    let eventsRead = 0;
    for await (const e of eventsOf(client, archives)) {
      const inexact = inexactNumbers(e.dataText);
      if (inexact.length > 0) {
        problems.push({ kind: 'inexact-number', position: e.position, message: `INEXACT NUMBER in the ${describeEvent(e)}: ${inexact.map((n) => (n.length > 24 ? `${n.slice(0, 20)}… (${n.length} digits)` : n)).join(', ')} cannot be sealed faithfully` });
      }
      frontier.push(ledgerLeafHash(e));
      eventsRead++;
      if (sizes.includes(frontier.size)) eventRoots.set(frontier.size, frontier.root());
    }
    const largest = sizes.length ? sizes[sizes.length - 1] : 0;
    const reports = heads.map((h) => ({
      source: h.source,
      treeSize: h.treeSize,
      timestamp: h.timestamp,
      rootHash: h.rootHash,
      signature: h.signature_,
      reproduced: h.signature_ === 'valid' && eventRoots.get(h.treeSize)?.toString('hex') === h.rootHash,
    }));
    const broken = valid.filter((h) => eventRoots.get(h.treeSize)?.toString('hex') !== h.rootHash);

    // the sealer's record: a hint until it reproduces a signed root
    const recordRoots = new Map();
    let record = null;
    if (broken.length > 0) {
      record = await readRecord(client);
      if (record) {
        const f = new Frontier();
        for (let i = 0; i < record.hashes.length; i++) {
          f.push(Buffer.from(record.hashes[i], 'hex'));
          if (sizes.includes(f.size)) recordRoots.set(f.size, f.root());
        }
      }
    }

    // forks: two signed heads that no single history satisfies
    const historiesAt = (size) => [eventRoots, recordRoots].filter((roots) => roots.has(size));
    const bySize = [...valid].sort((x, y) => x.treeSize - y.treeSize);
    for (let i = 0; i < bySize.length; i++) {
      for (let j = i + 1; j < bySize.length; j++) {
        const [a, b] = [bySize[i], bySize[j]];
        let fork = false;
        if (a.treeSize === b.treeSize) fork = a.rootHash !== b.rootHash;
        else {
          // a history that has b (the events, or the sealer's record) shows what b's first a.treeSize leaves were
          for (const roots of historiesAt(b.treeSize)) {
            if (roots.get(b.treeSize).toString('hex') === b.rootHash && roots.get(a.treeSize)?.toString('hex') !== a.rootHash) fork = true;
          }
        }
        if (!fork) continue;
        problems.push({
          kind: 'fork',
          treeSizes: [a.treeSize, b.treeSize],
          message: `FORK: the ${describeHead(a)} and the ${describeHead(b)} are both signed, but no single history has both: ${
            a.treeSize === b.treeSize
              ? 'they give the same size different roots'
              : `the history signed at size ${b.treeSize} begins with other events than the one signed at size ${a.treeSize}`
          }`,
        });
      }
    }

    // every signed head the events do not reproduce, and what changed
    let unsealedAfter = eventsRead - largest;
    if (broken.length > 0) {
      for (const h of broken) {
        const have = eventRoots.has(h.treeSize) ? '' : ` (the ledger has only ${eventsRead} events in leaf order)`;
        problems.push({ kind: 'mismatch', treeSize: h.treeSize, message: `NOT REPRODUCED: the ${describeHead(h)} does not match the ledger's events${have}` });
      }
      const trusted = valid.filter((h) => recordRoots.get(h.treeSize)?.toString('hex') === h.rootHash).sort((a, b) => b.treeSize - a.treeSize)[0];
      if (trusted && record) {
        const located = await locate(client, record, trusted.treeSize, archives);
        problems.push(...located.problems);
        unsealedAfter = located.unsealed;
      } else {
        const good = valid.filter((h) => !broken.includes(h)).sort((a, b) => b.treeSize - a.treeSize)[0];
        const smallestBroken = [...broken].sort((a, b) => a.treeSize - b.treeSize)[0];
        problems.push({
          kind: 'unlocated',
          message:
            `CANNOT NAME THE EVENTS: the sealer's own record ${record ? 'was rewritten too (it reproduces no signed root)' : 'is not readable'}; ` +
            (good && good.treeSize < smallestBroken.treeSize
              ? `the first ${good.treeSize} events still match their tree head, so the change is in leaves ${good.treeSize}…${smallestBroken.treeSize - 1} or removes or adds events`
              : `the change is somewhere in the first ${smallestBroken.treeSize} leaves`),
        });
      }
    }
    return { ok: problems.length === 0, eventsRead, unsealedAfterLargestHead: Math.max(0, unsealedAfter), treeHeads: reports, problems };
  } finally {
    await client.query('rollback').catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Command line

const USAGE = `usage:
  verify-ledger [--database-url URL] --tree-head FILE [--tree-head FILE …] --public-key FILE [--archive MANIFEST …] [--json]
      (DATABASE_URL when --database-url is absent; FILE may hold one head, an array, or one per line;
       --archive: the manifest of a month archived and dropped from the database, docs/retention.md)
  verify-ledger proof --proof FILE --tree-head FILE --public-key FILE
  verify-ledger consistency --proof FILE --tree-head OLD --tree-head NEW --public-key FILE
`;

export async function main(argv, out = process.stdout, err = process.stderr, env = process.env) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        'database-url': { type: 'string' },
        'tree-head': { type: 'string', multiple: true },
        archive: { type: 'string', multiple: true },
        'public-key': { type: 'string' },
        proof: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
    });
  } catch (e) {
    err.write(`${e.message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const mode = positionals[0] ?? 'ledger';
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  if (!values['public-key'] || !values['tree-head']?.length || !['ledger', 'proof', 'consistency'].includes(mode)) {
    err.write(USAGE);
    return 2;
  }
  let key;
  let heads;
  try {
    key = loadPublicKey(readFileSync(values['public-key'], 'utf8'));
    heads = values['tree-head'].flatMap((f) => parseTreeHeads(readFileSync(f, 'utf8'), f));
  } catch (e) {
    err.write(`verify-ledger: ${e.message}\n`);
    return 2;
  }
  const finish = (r, okText) => {
    if (values.json) out.write(`${JSON.stringify(r, null, 2)}\n`);
    else {
      for (const p of r.problems) out.write(`${typeof p === 'string' ? p : p.message}\n`);
      out.write(r.ok ? `${okText}\n` : `verify-ledger: ${r.problems.length} problem(s)\n`);
    }
    return r.ok ? 0 : 1;
  };
  if (mode === 'proof' || mode === 'consistency') {
    if (!values.proof) {
      err.write(USAGE);
      return 2;
    }
    const proof = JSON.parse(readFileSync(values.proof, 'utf8'));
    if (mode === 'proof') {
      const r = verifyInclusionProof(proof, heads[heads.length - 1], key);
      return finish(r, `verify-ledger: ${r.verified} event(s) proven in the ${describeHead(heads[heads.length - 1])}`);
    }
    if (heads.length !== 2) {
      err.write('consistency needs two --tree-head files: the older, then the newer\n');
      return 2;
    }
    const r = verifyConsistencyProof(proof, heads[0], heads[1], key);
    return finish(r, `verify-ledger: the ${describeHead(heads[1])} extends the ${describeHead(heads[0])}`);
  }
  const url = values['database-url'] ?? env.DATABASE_URL;
  if (!url) {
    err.write(`verify-ledger: no database (--database-url or DATABASE_URL)\n${USAGE}`);
    return 2;
  }
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await verifyLedger({ client, treeHeads: heads, publicKey: key, archives: values.archive ?? [] });
    if (!values.json) {
      for (const h of r.treeHeads) {
        out.write(`${describeHead(h)}: signature ${h.signature}${h.signature === 'valid' ? `, ${h.reproduced ? 'reproduced by the events' : 'NOT reproduced'}` : ''}\n`);
      }
    }
    const largest = Math.max(...heads.map((h) => h.treeSize));
    return finish(r, `verify-ledger: the ledger matches every tree head (${r.eventsRead} events; ${largest} covered, ${r.unsealedAfterLargestHead} appended since)`);
  } finally {
    await client.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`verify-ledger: ${e.stack ?? e}\n`);
      process.exit(2);
    },
  );
}
