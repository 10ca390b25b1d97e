// The leaf encoding and tree-head format, held two ways: the product's (the canonicalize
// library, db/tamper/merkle.ts) against the standalone verifier's own implementation
// (tools/verify-ledger.mjs), on arbitrary JSON; and the worked example of
// docs/tamper-evidence.md, byte for byte, so the page stays true.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as standalone from '../../tools/verify-ledger.mjs';
import { leafBytes, leafJson, eventLeafHash, type LeafRow, type SealedEvent } from './leaf.ts';
import { Frontier, leafHash, merkleRoot } from './merkle.ts';
import { parsePublicKey, parseSigningKey, signTreeHead, treeHeadMessage, verifyTreeHeadSignature } from './tree-head.ts';

const event = fc.record({
  invocationId: fc.uuid(),
  seq: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  type: fc.constantFrom(...standalone.EVENT_TYPES),
  attempt: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: null }),
  occurredAt: fc.date({ min: new Date('2000-01-01'), max: new Date('2200-01-01'), noInvalidDate: true }).map((d) => `${d.toISOString().slice(0, 23)}${String(d.getTime() % 7).padEnd(3, '0')}Z`),
  // JSON as jsonb can hold it: no lone surrogates, no NUL, numbers that are doubles
  data: fc.jsonValue({ depthSize: 'small' }).map((v) => JSON.parse(JSON.stringify(v).replace(/\\u0000/g, ''))),
});

describe('leaf encoding', () => {
  it('the product and the standalone verifier encode every event to the same bytes', () => {
    fc.assert(
      fc.property(event, (e: SealedEvent) => {
        expect(standalone.leafBytes(e)).toEqual(leafBytes(e));
        expect(standalone.eventLeafHash(e)).toEqual(eventLeafHash(e));
      }),
      { numRuns: 500 },
    );
  });

  it('is RFC 8785: keys by UTF-16 code units, ECMAScript numbers, minimal escapes', () => {
    const data = { b: [1e21, 1e-7, 0.1, -0, 100, 4.5e-324], a: 'é\u2028\u0007"\\', '\u20ac': 1, '\ud83d\ude00': 2, '\ufb33': 3, A: null };
    const json = leafJson({ invocationId: '0190f6f2-3c3c-7d2d-8d5e-3b1b9b1e2a10', seq: 2, type: 'started', attempt: 1, occurredAt: '2025-01-02T03:04:05.123456Z', data });
    // RFC 8785 §3.2.3's example: U+20AC < U+1F600 (D83D DE00) < U+FB33 in UTF-16, not in UTF-8
    expect(json).toBe(
      '{"attempt":1,"data":{"A":null,"a":"é\u2028\\u0007\\"\\\\","b":[1e+21,1e-7,0.1,0,100,5e-324],"€":1,"\ud83d\ude00":2,"\ufb33":3},' +
        '"invocationId":"0190f6f2-3c3c-7d2d-8d5e-3b1b9b1e2a10","occurredAt":"2025-01-02T03:04:05.123456Z","seq":2,"type":"started","v":1}',
    );
    expect(json).toContain(`"data":${standalone.canonicalJson(data)},`);
  });

  it('finds numbers a double does not hold exactly', () => {
    expect(standalone.inexactNumbers('{"a": 1, "b": [0.1, -0, 1e21, 1.50, "12345678901234567890"], "c": 9007199254740993}')).toEqual(['9007199254740993']);
    expect(standalone.inexactNumbers('[12345678901234567890, 0.10000000000000000001, 1e400, 3]')).toEqual(['12345678901234567890', '0.10000000000000000001', '1e400']);
    expect(standalone.inexactNumbers('{"s": "1e400 \\" 0.1000000000000000000001"}')).toEqual([]);
  });
});

describe('the tree and tree heads', () => {
  it('the standalone frontier builds the same roots', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 130 }), (n) => {
        const leaves = Array.from({ length: n }, (_, i) => leafHash(Buffer.from(String(i))));
        const a = new standalone.Frontier();
        const b = new Frontier();
        for (const l of leaves) {
          a.push(l);
          b.push(l);
        }
        expect(a.root()).toEqual(merkleRoot(leaves));
        expect(b.root()).toEqual(merkleRoot(leaves));
      }),
    );
  });

  it('a head signed by the product verifies in the standalone verifier, and only unchanged', () => {
    const key = parseSigningKey(readFileSync(new URL('./fixtures/example-signing-key.pem', import.meta.url), 'utf8'));
    const head = signTreeHead({ treeSize: 5, timestamp: 1735787045000, rootHash: 'ab'.repeat(32) }, key);
    const pub = standalone.loadPublicKey(readFileSync(new URL('./fixtures/example-signing-key.pub', import.meta.url), 'utf8'));
    expect(standalone.treeHeadMessage(head)).toEqual(treeHeadMessage(head));
    expect(standalone.checkTreeHead(head, pub)).toBe('valid');
    expect(verifyTreeHeadSignature(head, parsePublicKey(readFileSync(new URL('./fixtures/example-signing-key.pub', import.meta.url), 'utf8')))).toBe(true);
    expect(standalone.checkTreeHead({ ...head, treeSize: 6 }, pub)).toBe('bad signature');
    expect(standalone.checkTreeHead({ ...head, timestamp: head.timestamp + 1 }, pub)).toBe('bad signature');
    expect(standalone.checkTreeHead({ ...head, rootHash: 'ac'.repeat(32) }, pub)).toBe('bad signature');
    expect(standalone.checkTreeHead({ ...head, keyId: '00'.repeat(32) }, pub)).toMatch(/another key/);
  });
});

describe('the worked example of docs/tamper-evidence.md', () => {
  const doc = readFileSync(new URL('../../docs/tamper-evidence.md', import.meta.url), 'utf8');
  const block = (name: string) => {
    const m = new RegExp(`<!-- ${name} -->\\s*\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``).exec(doc);
    if (!m) throw new Error(`docs/tamper-evidence.md has no block marked ${name}`);
    return (m[1] as string).trim();
  };

  it('every hex value on the page is what the code computes', () => {
    const events = JSON.parse(block('example-events')) as SealedEvent[];
    const leaves = events.map((e) => leafJson(e));
    expect(block('example-leaf-0')).toBe(leaves[0]);
    const hashes = events.map(eventLeafHash);
    const listed = block('example-leaf-hashes').split('\n').map((l) => l.trim().split(/\s+/).pop());
    expect(listed).toEqual(hashes.map((h) => h.toString('hex')));
    const f = new Frontier();
    for (const h of hashes) f.push(h);
    const head = JSON.parse(block('example-tree-head')) as ReturnType<typeof signTreeHead>;
    expect(head.rootHash).toBe(f.root().toString('hex'));
    expect(head.treeSize).toBe(events.length);
    expect(block('example-signed-message')).toBe(treeHeadMessage(head).toString('hex'));
    const pub = standalone.loadPublicKey(block('example-public-key'));
    expect(standalone.checkTreeHead(head, pub)).toBe('valid');
    // Ed25519 is deterministic: the page's signature is the one this key makes
    const key = parseSigningKey(readFileSync(new URL('./fixtures/example-signing-key.pem', import.meta.url), 'utf8'));
    expect(signTreeHead(head, key)).toEqual(head);
  });
});

describe('the hashing thread', () => {
  it('hashes exactly as inline, and names a row it cannot hash', async () => {
    const { inlineHasher, threadHasher } = await import('./leaf-hasher.ts');
    const rows = fc.sample(event, 300).map((e): LeafRow => [e.invocationId, e.seq, e.type, e.attempt, e.occurredAt, JSON.stringify(e.data)]);
    const hasher = threadHasher();
    try {
      const [inThread, inline] = await Promise.all([hasher.hash(rows), inlineHasher.hash(rows)]);
      expect(inThread).toEqual(inline);
      const [invocationId, seq, type, attempt, occurredAt, dataText] = rows[7]!;
      expect(inThread[7]).toEqual(eventLeafHash({ invocationId, seq, type, attempt, occurredAt, data: JSON.parse(dataText) }));
      const bad = [...rows.slice(0, 3), ['x', 1, 'accepted', null, 't', '{"n": 1e400}'] as LeafRow];
      await expect(hasher.hash(bad)).rejects.toMatchObject({ name: 'LeafRowError', row: 3 });
      // the thread survives a bad batch
      expect(await hasher.hash(rows.slice(0, 2))).toEqual(inline.slice(0, 2));
    } finally {
      await hasher.close();
    }
  });
});
