// db/schema.ts against a migrated database: every table of the database is typed, every
// typed table exists, with the same columns, the same nullability, and a TypeScript type
// of the kind node-postgres returns for the column's SQL type. db/schema.ts is read with
// the TypeScript compiler's type checker, so aliases, ColumnType and Generated are seen
// as Kysely sees them (the type a select returns).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';

const SCHEMA_TS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'schema.ts');

type Kind = 'number' | 'string' | 'boolean' | 'Date' | 'Buffer' | 'array' | 'object' | 'unknown';

interface Column {
  nullable: boolean;
  /** the kinds of the non-null select type (SQL: the one kind pg returns) */
  kinds: Kind[];
}
type Tables = Map<string, Map<string, Column>>;

/** What node-postgres returns for a column of this SQL type (db/connection.ts sets no parser but timestamptz's). */
const PG_KIND: Record<string, Kind[]> = {
  int2: ['number'], int4: ['number'], float4: ['number'], float8: ['number'],
  int8: ['string'], numeric: ['string'], text: ['string'], varchar: ['string'], bpchar: ['string'], name: ['string'],
  uuid: ['string'], xid8: ['string'], pg_lsn: ['string'],
  bool: ['boolean'], timestamptz: ['Date'], timestamp: ['Date'], date: ['Date'], bytea: ['Buffer'],
  // parsed JSON may be anything; an interval is postgres-interval's object
  json: ['unknown', 'object', 'array', 'string', 'number', 'boolean'], jsonb: ['unknown', 'object', 'array', 'string', 'number', 'boolean'],
  interval: ['object'],
};

/** The Database interface of db/schema.ts as Kysely selects it. */
function typedTables(): Tables {
  const program = ts.createProgram([SCHEMA_TS], {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
  });
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(SCHEMA_TS) as ts.SourceFile;
  const db = sf.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === 'Database');
  if (!db) throw new Error('db/schema.ts has no interface Database');
  const typeOf = (s: ts.Symbol) => checker.getTypeOfSymbolAtLocation(s, db);
  const parts = (t: ts.Type): ts.Type[] => (t.isUnion() ? t.types : [t]);
  // ColumnType<S, I, U> is { __select__: S, … }; Generated<S> is a ColumnType
  const selected = (t: ts.Type): ts.Type[] =>
    parts(t).flatMap((p) => {
      const s = p.getProperty('__select__');
      return s ? parts(typeOf(s)) : [p];
    });
  const kind = (t: ts.Type): Kind => {
    if (t.flags & (ts.TypeFlags.Unknown | ts.TypeFlags.Any)) return 'unknown';
    if (t.flags & ts.TypeFlags.NumberLike) return 'number';
    if (t.flags & ts.TypeFlags.StringLike) return 'string';
    if (t.flags & ts.TypeFlags.BooleanLike) return 'boolean';
    if (checker.isArrayType(t) || checker.isTupleType(t)) return 'array';
    const name = t.getSymbol()?.getName();
    if (name === 'Date' || name === 'Buffer') return name;
    return 'object';
  };
  const out: Tables = new Map();
  for (const table of checker.getPropertiesOfType(checker.getTypeAtLocation(db.name))) {
    const columns = new Map<string, Column>();
    for (const col of checker.getPropertiesOfType(typeOf(table))) {
      const sel = selected(typeOf(col));
      const nonNull = sel.filter((t) => !(t.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
      columns.set(col.getName(), {
        nullable: sel.some((t) => t.flags & ts.TypeFlags.Null),
        kinds: [...new Set(nonNull.map(kind))].sort(),
      });
    }
    out.set(table.getName(), columns);
  }
  return out;
}

/** Every table of the database outside the system schemas (partitions as their parent). */
async function migratedTables(t: TestDatabase): Promise<Map<string, Map<string, { nullable: boolean; udt: string }>>> {
  const { rows } = await sql<{ tbl: string; col: string; udt: string; nullable: boolean }>`
    select n.nspname || '.' || c.relname as tbl, a.attname as col, t.typname as udt, not a.attnotnull as nullable
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    join pg_type t on t.oid = a.atttypid
    where c.relkind in ('r', 'p') and not c.relispartition
      and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
    order by 1, a.attnum`.execute(t.db);
  const out = new Map<string, Map<string, { nullable: boolean; udt: string }>>();
  for (const r of rows) {
    if (!out.has(r.tbl)) out.set(r.tbl, new Map());
    out.get(r.tbl)?.set(r.col, { nullable: r.nullable, udt: r.udt });
  }
  return out;
}

/** Where the two disagree, one line each; empty when they agree. */
function differences(typed: Tables, db: Awaited<ReturnType<typeof migratedTables>>): string[] {
  const out: string[] = [];
  for (const table of db.keys()) if (!typed.has(table)) out.push(`${table}: in the database, not in db/schema.ts`);
  for (const [table, columns] of typed) {
    const real = db.get(table);
    if (!real) {
      out.push(`${table}: in db/schema.ts, not in the database`);
      continue;
    }
    for (const col of real.keys()) if (!columns.has(col)) out.push(`${table}.${col}: in the database, not in db/schema.ts`);
    for (const [col, c] of columns) {
      const r = real.get(col);
      if (!r) {
        out.push(`${table}.${col}: in db/schema.ts, not in the database`);
        continue;
      }
      if (c.nullable !== r.nullable) out.push(`${table}.${col}: ${r.nullable ? 'nullable' : 'not null'} in the database, ${c.nullable ? 'nullable' : 'not null'} in db/schema.ts`);
      const allowed = r.udt.startsWith('_') ? ['array'] : PG_KIND[r.udt];
      if (!allowed) out.push(`${table}.${col}: SQL type ${r.udt} has no TypeScript kind in this test; add it to PG_KIND`);
      else if (c.kinds.length === 0 || c.kinds.some((k) => !allowed.includes(k))) {
        out.push(`${table}.${col}: ${r.udt} is read as ${allowed.join(' or ')}, db/schema.ts says ${c.kinds.join(' | ') || 'never'}`);
      }
    }
  }
  return out;
}

describe('db/schema.ts', () => {
  let t: TestDatabase;
  let typed: Tables;
  beforeAll(async () => {
    t = await createTestDatabase();
    typed = typedTables();
  }, 60_000);

  it('types every table and column of the migrated database, with its nullability and kind, and nothing else', async () => {
    const db = await migratedTables(t);
    expect(db.size).toBeGreaterThan(40);
    expect(typed.size).toBe(db.size);
    expect(differences(typed, db)).toEqual([]);
  });

  it('reports a missing table, a missing or extra column, a nullability and a kind that differ', async () => {
    const db = await migratedTables(t);
    const broken: Tables = new Map([...typed].map(([k, v]) => [k, new Map(v)]));
    broken.delete('ledger.api_keys');
    const inv = broken.get('ledger.invocations') as Map<string, Column>;
    inv.delete('status');
    inv.set('no_such_column', { nullable: false, kinds: ['string'] });
    inv.set('started_at', { nullable: false, kinds: ['Date'] });
    inv.set('attempts', { nullable: false, kinds: ['string'] });
    expect(differences(broken, db).sort()).toEqual(
      [
        'ledger.api_keys: in the database, not in db/schema.ts',
        'ledger.invocations.status: in the database, not in db/schema.ts',
        'ledger.invocations.no_such_column: in db/schema.ts, not in the database',
        'ledger.invocations.started_at: nullable in the database, not null in db/schema.ts',
        'ledger.invocations.attempts: int4 is read as number, db/schema.ts says string',
      ].sort(),
    );
  });
});
