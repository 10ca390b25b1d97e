// The bytes of a leaf: one event in a canonical encoding (docs/tamper-evidence.md,
// "Leaf encoding"). The event's content, every column an auditor reads, as an RFC 8785
// (JCS) canonical JSON object; its place in the ledger order is committed by the tree
// itself (the leaf index), so position and tx_id are not part of it.
//
// `canonicalize` is the reference JavaScript implementation of RFC 8785 by one of its
// authors: key order by UTF-16 code units and ECMAScript number formatting are easy to
// get subtly wrong, and the standalone verifier (tools/verify-ledger.mjs) carries its
// own small implementation that the tests hold against this one.
import canonicalize from 'canonicalize';
import { leafHash } from './merkle.ts';

export const LEAF_VERSION = 1;

/** An event as it is sealed: occurredAt in UTC with exactly six fractional digits. */
export interface SealedEvent {
  invocationId: string;
  seq: number;
  type: string;
  attempt: number | null;
  /** `YYYY-MM-DDTHH:MM:SS.ffffffZ` */
  occurredAt: string;
  data: unknown;
}

/** The SQL that renders occurred_at as SealedEvent.occurredAt (microseconds, UTC). */
export const OCCURRED_AT_SQL = `to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

export class UnsealableEvent extends Error {
  constructor(
    readonly position: string,
    reason: string,
  ) {
    super(`event at position ${position} cannot be sealed: ${reason}`);
    this.name = 'UnsealableEvent';
  }
}

/** The canonical JSON text of a leaf. */
export function leafJson(e: SealedEvent): string {
  const text = canonicalize({
    v: LEAF_VERSION,
    invocationId: e.invocationId,
    seq: e.seq,
    type: e.type,
    attempt: e.attempt,
    occurredAt: e.occurredAt,
    data: e.data,
  });
  if (text === undefined) throw new Error('the event has no JSON form');
  return text;
}

export function leafBytes(e: SealedEvent): Buffer {
  return Buffer.from(leafJson(e), 'utf8');
}

export function eventLeafHash(e: SealedEvent): Buffer {
  return leafHash(leafBytes(e));
}

/** An event as the sealer reads it: [invocationId, seq, type, attempt, occurredAt, data as JSON text]. */
export type LeafRow = [invocationId: string, seq: number, type: string, attempt: number | null, occurredAt: string, dataText: string];

/** A row that cannot be hashed, by its index in the batch. */
export class LeafRowError extends Error {
  constructor(
    readonly row: number,
    message: string,
  ) {
    super(message);
    this.name = 'LeafRowError';
  }
}

/** Leaf hashes of a batch, 32 bytes per row in order, in a buffer of its own (transferable). */
export function hashLeafRows(rows: readonly LeafRow[]): ArrayBuffer {
  const out = new Uint8Array(new ArrayBuffer(rows.length * 32));
  rows.forEach(([invocationId, seq, type, attempt, occurredAt, dataText], i) => {
    try {
      out.set(eventLeafHash({ invocationId, seq, type, attempt, occurredAt, data: JSON.parse(dataText) }), i * 32);
    } catch (e) {
      throw new LeafRowError(i, (e as Error).message);
    }
  });
  return out.buffer;
}
