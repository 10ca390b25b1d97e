// Signed tree heads (docs/tamper-evidence.md, "Tree heads"): (size, root, time) signed
// with Ed25519 over a fixed binary message. Keys are PEM: PKCS#8 for the private key
// (LEDGER_SIGNING_KEY or LEDGER_SIGNING_KEY_FILE), SPKI for the public key auditors hold.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** What a witness stores and an auditor checks. */
export interface TreeHead {
  treeSize: number;
  /** milliseconds since the Unix epoch */
  timestamp: number;
  /** lowercase hex, 32 bytes */
  rootHash: string;
  /** lowercase hex SHA-256 of the raw 32-byte Ed25519 public key */
  keyId: string;
  /** base64, 64 bytes */
  signature: string;
}

export type UnsignedTreeHead = Pick<TreeHead, 'treeSize' | 'timestamp' | 'rootHash'>;

export const TREE_HEAD_CONTEXT = 'invoke-ledger tree head v1\n';

/** The signed bytes: the context string, size and time as big-endian uint64, the root. */
export function treeHeadMessage(h: UnsignedTreeHead): Buffer {
  const root = Buffer.from(h.rootHash, 'hex');
  if (root.length !== 32 || !/^[0-9a-f]{64}$/.test(h.rootHash)) throw new Error('rootHash must be 64 lowercase hex digits');
  if (!Number.isSafeInteger(h.treeSize) || h.treeSize < 0) throw new Error('treeSize must be a non-negative integer');
  if (!Number.isSafeInteger(h.timestamp) || h.timestamp < 0) throw new Error('timestamp must be a non-negative integer');
  const numbers = Buffer.alloc(16);
  numbers.writeBigUInt64BE(BigInt(h.treeSize), 0);
  numbers.writeBigUInt64BE(BigInt(h.timestamp), 8);
  return Buffer.concat([Buffer.from(TREE_HEAD_CONTEXT, 'ascii'), numbers, root]);
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

export function rawPublicKey(publicKey: KeyObject): Buffer {
  // an Ed25519 SPKI is a fixed 12-byte header and the 32-byte key
  return publicKey.export({ type: 'spki', format: 'der' }).subarray(12);
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(publicKey)).digest('hex');
}

function requireEd25519(k: KeyObject, what: string): KeyObject {
  if (k.asymmetricKeyType !== 'ed25519') throw new Error(`${what} is a ${k.asymmetricKeyType ?? k.type} key, not Ed25519`);
  return k;
}

/** A private key from PEM text, or base64 of its PKCS#8 DER. */
export function parseSigningKey(text: string): SigningKey {
  const trimmed = text.trim();
  const privateKey = requireEd25519(
    trimmed.startsWith('-----BEGIN')
      ? createPrivateKey(trimmed)
      : createPrivateKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'pkcs8' }),
    'the signing key',
  );
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** LEDGER_SIGNING_KEY (the key itself) wins over LEDGER_SIGNING_KEY_FILE (a path); neither: null. */
export function loadSigningKey(o: { key?: string | undefined; file?: string | undefined }): SigningKey | null {
  if (o.key) return parseSigningKey(o.key);
  if (o.file) return parseSigningKey(readFileSync(o.file, 'utf8'));
  return null;
}

export function parsePublicKey(pem: string): KeyObject {
  return requireEd25519(createPublicKey(pem.trim()), 'the public key');
}

export function generateSigningKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyId: keyIdOf(publicKey),
  };
}

export function signTreeHead(h: UnsignedTreeHead, key: SigningKey): TreeHead {
  const signature = sign(null, treeHeadMessage(h), key.privateKey);
  return { treeSize: h.treeSize, timestamp: h.timestamp, rootHash: h.rootHash, keyId: key.keyId, signature: signature.toString('base64') };
}

export function verifyTreeHeadSignature(h: TreeHead, publicKey: KeyObject): boolean {
  try {
    return verify(null, treeHeadMessage(h), publicKey, Buffer.from(h.signature, 'base64'));
  } catch {
    return false;
  }
}
