// Types of the standalone verifier (verify-ledger.mjs), for the CLI and the tests.
import type { KeyObject } from 'node:crypto';
import type pg from 'pg';

export interface SignedTreeHead {
  treeSize: number;
  timestamp: number;
  rootHash: string;
  keyId?: string;
  signature: string;
  source?: string;
}

export interface LeafEvent {
  invocationId: string;
  seq: number;
  type: string;
  attempt: number | null;
  occurredAt: string;
  data: unknown;
}

export type ProblemKind =
  | 'signature'
  | 'fork'
  | 'mismatch'
  | 'edited'
  | 'deleted'
  | 'inserted'
  | 'swapped'
  | 'moved'
  | 'truncated'
  | 'unlocated'
  | 'inexact-number';

export interface Problem {
  kind: ProblemKind;
  message: string;
  leafIndex?: number;
  leafIndexes?: number[];
  position?: string;
  positions?: string[];
  invocationId?: string;
  seq?: number;
  count?: number;
  treeSize?: number;
  treeSizes?: number[];
}

export interface LedgerReport {
  ok: boolean;
  eventsRead: number;
  unsealedAfterLargestHead: number;
  treeHeads: { source?: string; treeSize: number; timestamp: number; rootHash: string; signature: string; reproduced: boolean }[];
  problems: Problem[];
}

export const EVENT_TYPES: string[];
export const EMPTY_ROOT: Buffer;
export const TREE_HEAD_CONTEXT: string;
export function canonicalJson(value: unknown): string;
export function inexactNumbers(jsonText: string): string[];
export function leafBytes(event: LeafEvent): Buffer;
export function leafHash(bytes: Uint8Array): Buffer;
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer;
export function eventLeafHash(event: LeafEvent): Buffer;
export class Frontier {
  size: number;
  push(hash: Buffer): void;
  root(): Buffer;
}
export function verifyInclusion(leafIndex: number, treeSize: number, leaf: Uint8Array, path: Uint8Array[], root: Uint8Array): boolean;
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: Uint8Array[]): boolean;
export function treeHeadMessage(head: SignedTreeHead): Buffer;
export function loadPublicKey(pem: string): KeyObject;
export function keyIdOf(publicKey: KeyObject): string;
export function checkTreeHead(head: SignedTreeHead, publicKey: KeyObject): string;
export function parseTreeHeads(text: string, source?: string): SignedTreeHead[];
export function verifyInclusionProof(
  proof: { treeSize?: number; events?: { leafIndex: number; event: LeafEvent; auditPath: string[] }[]; leafIndex?: number; event?: LeafEvent; auditPath?: string[] },
  head: SignedTreeHead,
  publicKey: KeyObject,
): { ok: boolean; verified: number; problems: string[] };
export function verifyConsistencyProof(proof: { proof: string[] }, oldHead: SignedTreeHead, newHead: SignedTreeHead, publicKey: KeyObject): { ok: boolean; problems: string[] };
/** archives: manifests of months archived and dropped (docs/retention.md), read beside the database */
export function verifyLedger(o: { client: pg.Client | pg.PoolClient; treeHeads: SignedTreeHead[]; publicKey: KeyObject | string; archives?: string[] }): Promise<LedgerReport>;
export function main(
  argv: string[],
  out?: { write(s: string): unknown },
  err?: { write(s: string): unknown },
  env?: Record<string, string | undefined>,
): Promise<number>;
