// `invoke-ledger sql "QUERY" [PARAM…]`: one statement as the auditor would run it (role
// ledger_auditor, read only, rolled back), printed as an aligned table like psql's or as JSON,
// so the audit examples need no psql.
import { AUDITOR_ROLE, runAuditQuery, type AuditQueryResult } from '../../db/audit.ts';
import { openDatabase } from '../../db/connection.ts';
import type { Output } from './cli.ts';

/** int2, int4, int8, oid, float4, float8, numeric: right-aligned, as psql does */
const NUMERIC_TYPES = new Set([20, 21, 23, 26, 700, 701, 1700]);

export async function sqlCommand(databaseUrl: string, query: string, params: string[], o: { json?: boolean }, io: { out: Output; err: Output }): Promise<number> {
  const handle = openDatabase(databaseUrl, { role: AUDITOR_ROLE, max: 1, applicationName: 'invoke-ledger sql' });
  try {
    let result: AuditQueryResult;
    try {
      result = await runAuditQuery(handle.pool, query, params);
    } catch (e) {
      const err = e as { code?: string; message: string; position?: string };
      if (!err.code) throw e;
      io.err.write(`sql: ${err.message}${hint(err.code, err.message)}\n`);
      return 1;
    }
    io.out.write(o.json ? `${JSON.stringify(asObjects(result), null, 2)}\n` : formatTable(result));
    return 0;
  } finally {
    await handle.close();
  }
}

function hint(code: string, message: string): string {
  if (code === '42501' && /set role|role "ledger_auditor"|permission denied to set/i.test(message)) {
    return `\n  DATABASE_URL's login cannot act as ${AUDITOR_ROLE}: grant ${AUDITOR_ROLE} to it, or use the DATABASE_URL of a login made by \`invoke-ledger audit-role --login NAME\``;
  }
  if (code === '42501' || code === '42P01') {
    return `\n  queries run as ${AUDITOR_ROLE}, which reads only the audit views: audit.invocations, audit.invocation_events, audit.dead_letters, audit.function_stats_hourly (docs/audit.md)`;
  }
  if (code === '25006') return '\n  sql runs read-only queries';
  if (code === '42P02' || code === '08P01') return '\n  give one value after the query for each $1, $2, …';
  return '';
}

function asObjects(r: AuditQueryResult): Record<string, unknown>[] {
  return r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/\r?\n/g, '\\n');
}

/** psql's aligned format: a header, a rule, the rows, "(N rows)". */
export function formatTable(r: AuditQueryResult): string {
  if (r.columns.length === 0) return '(no columns)\n';
  const cells = r.rows.map((row) => r.columns.map((_, i) => cell(row[i])));
  const widths = r.columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const right = r.columnTypes.map((t) => NUMERIC_TYPES.has(t));
  const line = (values: string[], header: boolean) =>
    values
      .map((v, i) => {
        const w = widths[i] as number;
        if (header) {
          const pad = w - v.length;
          return ' '.repeat(Math.floor(pad / 2)) + v + ' '.repeat(Math.ceil(pad / 2));
        }
        return right[i] ? v.padStart(w) : v.padEnd(w);
      })
      .map((v) => ` ${v} `)
      .join('|')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w + 2)).join('+');
  const count = `(${r.rows.length} ${r.rows.length === 1 ? 'row' : 'rows'})`;
  return [line(r.columns, true), rule, ...cells.map((row) => line(row, false)), count, ''].join('\n');
}
