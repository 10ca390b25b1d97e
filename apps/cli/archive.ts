// `invoke-ledger archive …` (docs/retention.md): thin wrappers over db/retention.
import { ArchiveRefused, dropArchivedPartition, exportPartition, partitionsBefore, restoreArchive } from '../../db/retention/archive.ts';
import { verifyArchiveFile } from '../../db/retention/archive-file.ts';
import { eventPartitionReport, listDroppedPartitions, premakeEventPartitions } from '../../db/retention/partitions.ts';
import { openDatabase } from '../../db/connection.ts';
import { CliError, type Io } from './cli.ts';

async function asOwner<T>(url: string, fn: (db: ReturnType<typeof openDatabase>['db']) => Promise<T>): Promise<T> {
  const handle = openDatabase(url, { role: '', max: 2 });
  try {
    return await fn(handle.db);
  } catch (e) {
    if (e instanceof ArchiveRefused) throw new CliError(e.message);
    throw e;
  } finally {
    await handle.close();
  }
}

export function partitionsCommand(url: string, monthsAhead: number, io: Io): Promise<number> {
  if (!Number.isInteger(monthsAhead) || monthsAhead < 0 || monthsAhead > 120) throw new CliError('--months-ahead must be a whole number from 0 to 120');
  return asOwner(url, async (db) => {
    for (const name of await premakeEventPartitions(db, monthsAhead)) io.out.write(`made ${name}\n`);
    const rows = await eventPartitionReport(db);
    io.out.write('PARTITION        MONTH    EVENTS(est)  ARCHIVE\n');
    for (const r of rows) {
      const month = r.month ? r.month.toISOString().slice(0, 7) : '-';
      io.out.write(`${r.partition_name.padEnd(16)} ${month.padEnd(8)} ${r.events.padStart(11)}  ${r.last_archive_action ?? '-'}\n`);
    }
    const gone = await listDroppedPartitions(db);
    for (const g of gone) io.out.write(`${g.partition_name.padEnd(16)} dropped ${g.at.toISOString()}: archive ${g.location} (manifest sha256 ${g.manifest_sha256})\n`);
    return 0;
  });
}

export function exportCommand(url: string, o: { before?: string; partition?: string[]; dir: string; by?: string }, io: Io): Promise<number> {
  if (!o.before && !o.partition?.length) throw new CliError('say what to archive: --before DATE or --partition NAME');
  const before = o.before ? new Date(`${o.before}${o.before.length === 10 ? 'T00:00:00Z' : ''}`) : null;
  if (before && Number.isNaN(before.getTime())) throw new CliError(`--before ${o.before} is not a date (YYYY-MM-DD)`);
  return asOwner(url, async (db) => {
    const names = [...(o.partition ?? []), ...(before ? await partitionsBefore(db, before) : [])];
    if (names.length === 0) {
      io.out.write('archive export: no month partition ends before that date\n');
      return 0;
    }
    for (const partition of [...new Set(names)]) {
      const started = Date.now();
      const r = await exportPartition(db, { partition, dir: o.dir, by: o.by ?? '' });
      io.out.write(
        `${partition}: ${r.manifest.eventCount} events of ${r.manifest.invocationCount} invocations → ${r.dataPath} ` +
          `(${r.manifest.file.bytes} bytes, ${Date.now() - started} ms); manifest ${r.manifestPath} sha256 ${r.manifestSha256}\n`,
      );
    }
    return 0;
  });
}

export async function verifyCommand(manifests: string[], o: { json?: boolean }, io: Io): Promise<number> {
  let bad = 0;
  const results = [];
  for (const m of manifests) {
    let r;
    try {
      r = await verifyArchiveFile(m);
    } catch (e) {
      r = { ok: false, problems: [(e as Error).message], manifestSha256: null, manifest: null };
    }
    if (!r.ok) bad++;
    results.push({ manifest: m, ok: r.ok, manifestSha256: r.manifestSha256, events: r.manifest?.eventCount ?? null, problems: r.problems });
    if (!o.json) {
      io.out.write(r.ok ? `${m}: ok, ${r.manifest?.eventCount} events, manifest sha256 ${r.manifestSha256}\n` : `${m}: FAILED\n${r.problems.map((p) => `  ${p}\n`).join('')}`);
    }
  }
  if (o.json) io.out.write(`${JSON.stringify(results, null, 2)}\n`);
  return bad ? 1 : 0;
}

export function dropCommand(url: string, manifest: string, o: { by?: string }, io: Io): Promise<number> {
  return asOwner(url, async (db) => {
    const r = await dropArchivedPartition(db, { manifestPath: manifest, by: o.by ?? '' });
    io.out.write(`${r.partition}: dropped ${r.events} events; ${r.invocations} invocation projections removed (the archive holds them)\n`);
    return 0;
  });
}

export function restoreCommand(url: string, manifest: string, o: { table?: string; by?: string }, io: Io): Promise<number> {
  return asOwner(url, async (db) => {
    const started = Date.now();
    const r = await restoreArchive(db, { manifestPath: manifest, by: o.by ?? '', table: o.table });
    io.out.write(`restored ${r.events} events into ${r.table} (${Date.now() - started} ms); read back to the archive's content hash\n`);
    return 0;
  });
}
