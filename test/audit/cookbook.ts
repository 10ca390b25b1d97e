// The cookbook in docs/audit.md as data: its ```sql blocks (with the heading they sit
// under and the ```text sample that follows), and psql-style rendering of a result, so
// the test, the benchmark and the sample renderer read the same queries.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

export const COOKBOOK_PATH = fileURLToPath(new URL('../../docs/audit.md', import.meta.url));

export interface CookbookQuery {
  /** the heading above the block, e.g. "15. One invocation's timeline" */
  title: string;
  sql: string;
  /** the block says `-- no rows expected` */
  mayBeEmpty: boolean;
  /** offsets of the ```text block's body that follows, if any */
  sample: { start: number; end: number } | null;
}

export function readCookbook(markdown = readFileSync(COOKBOOK_PATH, 'utf8')): CookbookQuery[] {
  const out: CookbookQuery[] = [];
  const block = /```sql\n([\s\S]*?)```\n/g;
  for (let m = block.exec(markdown); m; m = block.exec(markdown)) {
    const before = markdown.slice(0, m.index);
    const headings = [...before.matchAll(/^#{2,4} (.+)$/gm)];
    const title = headings.length ? (headings[headings.length - 1] as RegExpMatchArray)[1] as string : `query ${out.length + 1}`;
    const sql = (m[1] as string).trim();
    const after = markdown.slice(m.index + m[0].length);
    const text = /^\s*```text\n([\s\S]*?)```/.exec(after);
    const bodyStart = text ? m.index + m[0].length + (text[0].indexOf('```text\n') + '```text\n'.length) : -1;
    out.push({
      title,
      sql,
      mayBeEmpty: /^-- no rows expected/m.test(sql),
      sample: text ? { start: bodyStart, end: bodyStart + (text[1] as string).length } : null,
    });
  }
  return out;
}

/** Rows as text, exactly as the server sends them (no Date or number parsing). */
export const RAW_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

const NUMERIC_OIDS = new Set([20, 21, 23, 26, 700, 701, 1700]);

/** psql's aligned format: centred headers, numbers right-aligned, "(n rows)". */
export function formatLikePsql(result: pg.QueryResult<Record<string, string | null>>): string {
  const cols = result.fields.map((f) => f.name);
  const right = result.fields.map((f) => NUMERIC_OIDS.has(f.dataTypeID));
  const cells = result.rows.map((r) => result.fields.map((f) => r[f.name] ?? ''));
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const centre = (s: string, w: number) => {
    const left = Math.floor((w - s.length) / 2);
    return ' '.repeat(left) + s + ' '.repeat(w - s.length - left);
  };
  const line = (parts: string[]) => ` ${parts.join(' | ')}`.trimEnd();
  const lines = [
    line(cols.map((c, i) => centre(c, width[i] as number))),
    width.map((w) => '-'.repeat(w + 2)).join('+'),
    ...cells.map((row) => line(row.map((v, i) => (right[i] ? v.padStart(width[i] as number) : v.padEnd(width[i] as number))))),
    `(${result.rows.length} ${result.rows.length === 1 ? 'row' : 'rows'})`,
  ];
  return `${lines.join('\n')}\n`;
}
