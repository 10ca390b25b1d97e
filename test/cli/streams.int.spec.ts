// `invoke-ledger streams …` (docs/streams.md#the-cli) against a real database: create,
// list, put (from --data, and from stdin through the real binary with bytes that are not
// UTF-8), describe with each shard's sequence range and each mapping's checkpoints and lag
// while a real stream poller delivers, delete refused while a mapping reads the stream,
// then deleted; every refusal is one line and exit code 1.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { createStreamMapping, deleteStreamMapping, readShard, shardForKey, getStream, updateStreamMapping } from '../../db/streams.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { consumer, startStreamPoller, streamRuntimes, waitFor } from '../streams/helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let t: TestDatabase;
let env: Record<string, string>;
let runtimes: Runtimes;
let poller: StreamPoller | undefined;

beforeAll(async () => {
  t = await createTestDatabase();
  env = { DATABASE_URL: t.ownerUrl };
  runtimes = streamRuntimes();
});

afterAll(async () => {
  await poller?.stop();
  await runtimes?.close();
});

/** The built `invoke-ledger` binary, as a user runs it, with `input` on its stdin; ended by pid if it hangs. */
function binary(args: string[], input: Buffer): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`${ROOT}bin/invoke-ledger.mjs`, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env, LOG_LEVEL: 'silent' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => process.kill(child.pid as number, 'SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    child.stdin.end(input);
  });
}

interface Described {
  name: string;
  shards: { shardId: string; firstRetainedSequenceNumber: string; lastSequenceNumber: string; startingHashKey: string; endingHashKey: string }[];
  mappings: { id: string; functionName: string; checkpoints: { shardId: string; lane: number; sequenceNumber: string; lag: number }[] }[];
}

const describeJson = async (name: string): Promise<Described> => {
  const r = await cli(['streams', 'describe', name, '--json'], env);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as Described;
};

describe('invoke-ledger streams', () => {
  it('--help names every subcommand and the docs', async () => {
    const r = await cli(['streams', '--help'], env);
    expect(r.code).toBe(0);
    for (const sub of ['create', 'list', 'describe', 'put', 'delete']) expect(r.out).toMatch(new RegExp(`^  ${sub} `, 'm'));
    expect(r.out).toContain('docs/streams.md');
    const put = await cli(['streams', 'put', '--help'], env);
    expect(put.out).toContain('--partition-key <key>');
    expect(put.out).toContain('stdin');
  });

  it('creates, lists, puts, describes with checkpoints and lag, refuses and deletes', { timeout: 120_000 }, async () => {
    const created = await cli(['streams', 'create', 'clicks', '--shards', '2', '--retention-hours', '48'], env);
    expect([created.code, created.err]).toEqual([0, '']);
    expect(created.out).toBe('created stream clicks: 2 shards, retention 48 h (arn:aws:kinesis:local:000000000000:stream/clicks)\n');
    const again = await cli(['streams', 'create', 'clicks'], env);
    expect(again.code).toBe(1);
    expect(again.err).toBe('invoke-ledger: StreamExists: stream clicks already exists\n');

    // twelve records over four keys, from --data
    const stream = (await getStream(t.db, 'clicks'))!;
    const keys = ['user-1', 'user-2', 'user-3', 'user-4'];
    const perShard = new Map<string, number>();
    for (let i = 0; i < 12; i++) {
      const key = keys[i % 4]!;
      const r = await cli(['streams', 'put', 'clicks', '--partition-key', key, '--data', JSON.stringify({ i })], env);
      expect([r.code, r.err]).toEqual([0, '']);
      const shardId = shardForKey(stream.shards, key);
      perShard.set(shardId, (perShard.get(shardId) ?? 0) + 1);
      // the shard its key's MD5 picks, and the next sequence number there
      expect(r.out).toBe(`${shardId}\t${String(perShard.get(shardId)).padStart(20, '0')}\n`);
    }
    // from stdin, through the binary: every byte, none of them read as text
    const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x80, 0x41]);
    const piped = await binary(['streams', 'put', 'clicks', '--partition-key', 'user-1', '--json'], bytes);
    expect([piped.code, piped.err]).toEqual([0, '']);
    const put = JSON.parse(piped.out) as { shardId: string; sequenceNumber: string };
    expect(put.shardId).toBe(shardForKey(stream.shards, 'user-1'));
    const stored = await readShard(t.db, 'clicks', put.shardId, { afterSeq: Number(put.sequenceNumber) - 1, limit: 1 });
    expect(stored.map((s) => [s.partitionKey, s.data.equals(bytes)])).toEqual([['user-1', true]]);
    perShard.set(put.shardId, (perShard.get(put.shardId) ?? 0) + 1);

    const listed = await cli(['streams', 'list'], env);
    expect(listed.code).toBe(0);
    expect(listed.out.split('\n')[0]).toBe('NAME\tSHARDS\tRETENTION_HOURS\tRECORDS_PUT\tMAPPINGS\tCREATED');
    expect(listed.out).toMatch(/^clicks\t2\t48\t13\t0\t\d{4}-/m);

    // a disabled mapping from the start: every record is its lag, split by lane
    await consumer(t.db, 'clicks-consumer');
    const m = await createStreamMapping(t.db, { streamName: 'clicks', functionName: 'clicks-consumer', startingPosition: 'TRIM_HORIZON', batchSize: 2, parallelizationFactor: 2, enabled: false });
    const before = await describeJson('clicks');
    expect(before.shards.map((h) => [h.shardId, h.firstRetainedSequenceNumber, h.lastSequenceNumber])).toEqual(
      stream.shards.map((h) => [h.shardId, perShard.has(h.shardId) ? '00000000000000000001' : '-', perShard.has(h.shardId) ? String(perShard.get(h.shardId)).padStart(20, '0') : '-']),
    );
    expect(before.mappings.map((x) => [x.id, x.functionName, x.checkpoints.length])).toEqual([[m.id, 'clicks-consumer', 4]]);
    for (const h of stream.shards) {
      const cps = before.mappings[0]!.checkpoints.filter((c) => c.shardId === h.shardId);
      expect(cps.map((c) => [c.lane, c.sequenceNumber])).toEqual([
        [0, '00000000000000000000'],
        [1, '00000000000000000000'],
      ]);
      expect(cps.reduce((n, c) => n + c.lag, 0)).toBe(perShard.get(h.shardId) ?? 0);
    }
    const text = await cli(['streams', 'describe', 'clicks'], env);
    expect(text.code).toBe(0);
    expect(text.out).toContain('stream clicks (arn:aws:kinesis:local:000000000000:stream/clicks): 2 shards, retention 48 h');
    expect(text.out).toContain('SHARD\tHASH_KEY_RANGE\tFIRST_RETAINED\tLAST\n');
    expect(text.out).toContain(`shardId-000000000000\t0-${stream.shards[0]!.endingHashKey}\t`);
    expect(text.out).toContain('MAPPING\tFUNCTION\tENABLED\tSHARD\tLANE\tCHECKPOINT\tLAG\tRETRIES\tHELD_BY\n');
    expect(text.out).toMatch(new RegExp(`^${m.id}\\tclicks-consumer\\tfalse\\tshardId-000000000000\\t0\\t00000000000000000000\\t\\d+\\t0\\t-$`, 'm'));

    // enabled, a real poller delivers everything: each checkpoint is past its lane's records, no lag
    await updateStreamMapping(t.db, m.id, { enabled: true });
    poller = await startStreamPoller(t.db, runtimes);
    const after = await waitFor(
      'every lane caught up',
      async () => {
        const d = await describeJson('clicks');
        return d.mappings[0]!.checkpoints.every((c) => c.lag === 0) ? d : null;
      },
      60_000,
    );
    for (const h of stream.shards) {
      const top = Math.max(...after.mappings[0]!.checkpoints.filter((c) => c.shardId === h.shardId).map((c) => Number(c.sequenceNumber)));
      expect(top).toBe(perShard.get(h.shardId) ?? 0);
    }

    // refusals: one line, exit 1, nothing changed
    const refusals: [string[], string][] = [
      [['streams', 'delete', 'clicks'], `invoke-ledger: InvalidParameter: stream clicks is read by event source mapping ${m.id}: delete them first\n`],
      [['streams', 'put', 'nope', '--partition-key', 'k', '--data', 'x'], 'invoke-ledger: StreamNotFound: Stream not found: nope\n'],
      [['streams', 'describe', 'nope'], 'invoke-ledger: StreamNotFound: Stream not found: nope\n'],
      [['streams', 'create', 'bad name'], expect.stringContaining('invoke-ledger: InvalidParameter: ') as unknown as string],
      [['streams', 'create', 'many', '--shards', 'x'], 'invoke-ledger: --shards must be a whole number, not x\n'],
      [['streams', 'put', 'clicks', '--partition-key', '', '--data', 'x'], expect.stringContaining('partitionKey must be a string of 1 to 256 characters') as unknown as string],
    ];
    for (const [argv, err] of refusals) {
      const r = await cli(argv, env);
      expect([argv.join(' '), r.code, r.err]).toEqual([argv.join(' '), 1, err]);
    }
    expect((await cli(['streams', 'list'], env)).out).toMatch(/^clicks\t2\t48\t13\t1\t/m);

    await poller.stop();
    poller = undefined;
    await deleteStreamMapping(t.db, m.id);
    const deleted = await cli(['streams', 'delete', 'clicks'], env);
    expect([deleted.code, deleted.err, deleted.out]).toEqual([0, '', 'deleted stream clicks with its records\n']);
    expect(await getStream(t.db, 'clicks')).toBeNull();
    expect((await cli(['streams', 'list'], env)).out).toBe('NAME\tSHARDS\tRETENTION_HOURS\tRECORDS_PUT\tMAPPINGS\tCREATED\n');
  });
});
