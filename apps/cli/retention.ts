// `invoke-ledger retention …` (docs/retention.md#retention-of-the-side-tables): thin wrappers over db/retention/side-tables.ts.
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../db/connection.ts';
import {
  isRetentionKind,
  listRetentionRules,
  purgeExpired,
  recentRetentionRuns,
  RETENTION_KINDS,
  RetentionRuleInvalid,
  setRetentionRule,
  type RetentionKind,
} from '../../db/retention/side-tables.ts';
import { CliError, type Io } from './cli.ts';

/** as the owner role: the rules are the owner's to set (the application role only reads them) */
async function asOwner<T>(url: string, fn: (db: ReturnType<typeof openDatabase>['db']) => Promise<T>): Promise<T> {
  const handle = openDatabase(url, { role: '', max: 1 });
  try {
    return await fn(handle.db);
  } catch (e) {
    if (e instanceof RetentionRuleInvalid) throw new CliError(e.message);
    throw e;
  } finally {
    await handle.close();
  }
}

function kindOf(k: string): RetentionKind {
  const kind = k.replaceAll('-', '_');
  if (!isRetentionKind(kind)) throw new CliError(`no retention kind ${k}: one of ${RETENTION_KINDS.join(', ')}`);
  return kind;
}

export function setCommand(url: string, kind: string, keep: string, o: { by?: string }, io: Io): Promise<number> {
  const k = kindOf(kind);
  const period = /^(forever|never)$/i.test(keep.trim()) ? null : keep.trim();
  return asOwner(url, async (db) => {
    const r = await setRetentionRule(db, k, period, o.by ?? '');
    io.out.write(`${r.kind}: ${r.keep === null ? 'kept for ever' : `kept ${r.keep}, then removed by the worker`} (set by ${r.actor})\n`);
    return 0;
  });
}

export function showCommand(url: string, io: Io): Promise<number> {
  return asOwner(url, async (db) => {
    io.out.write('KIND                    KEEP            SET BY / AT\n');
    for (const r of await listRetentionRules(db)) {
      io.out.write(`${r.kind.padEnd(23)} ${(r.keep ?? 'forever').padEnd(15)} ${r.actor ? `${r.actor} ${r.at?.toISOString()}` : '-'}\n`);
    }
    const runs = await recentRetentionRuns(db, 10);
    if (runs.length) io.out.write('\nRECENT PURGES (audit.retention_runs)\n');
    for (const r of runs) {
      io.out.write(`${r.finished_at.toISOString()} ${r.kind.padEnd(23)} ${String(r.removed).padStart(8)} rows in ${r.batches} batch(es), older than ${r.cutoff.toISOString()} (keep ${r.keep}), run ${r.run_id}\n`);
    }
    return 0;
  });
}

export function purgeCommand(url: string, o: { kind?: string; batchSize: number; maxBatches: number }, io: Io): Promise<number> {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > 100_000) throw new CliError('--batch-size must be a whole number from 1 to 100000');
  if (!Number.isInteger(o.maxBatches) || o.maxBatches < 1) throw new CliError('--max-batches must be a whole number of at least 1');
  const kinds = o.kind ? [kindOf(o.kind)] : [...RETENTION_KINDS];
  return asOwner(url, async (db) => {
    const runId = randomUUID();
    for (const kind of kinds) {
      let removed = 0;
      let batches = 0;
      for (; batches < o.maxBatches; batches++) {
        const n = await purgeExpired(db, kind, o.batchSize, runId);
        removed += n;
        if (n < o.batchSize) break;
      }
      io.out.write(`${kind}: removed ${removed} expired rows\n`);
    }
    io.out.write(`run ${runId} (audit.retention_purges)\n`);
    return 0;
  });
}
