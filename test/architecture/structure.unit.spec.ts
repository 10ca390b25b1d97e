// The layout of docs/architecture.md, checked: apps/ holds no SQL, only the writer writes
// the events and their projections, and no import cycle exists. Each check reads the
// source (string literals through the TypeScript parser, so comments never count);
// nothing here needs a database.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult } from 'dependency-cruiser';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCE = /\.(ts|tsx|mts|mjs|js)$/;

/** Source files under `dirs`, repository-relative with '/', tests excluded. */
function sources(...dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'dist' && e.name !== 'static') walk(p);
      } else if (SOURCE.test(e.name) && !/\.spec\.ts$/.test(e.name) && !e.name.endsWith('.d.mts')) out.push(p);
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}

interface Literal {
  file: string;
  line: number;
  text: string;
}

const parsed = new Map<string, ts.SourceFile>();
function parse(file: string): ts.SourceFile {
  let sf = parsed.get(file);
  if (!sf) {
    const kind = file.endsWith('x') ? ts.ScriptKind.TSX : file.endsWith('.ts') || file.endsWith('.mts') ? ts.ScriptKind.TS : ts.ScriptKind.JS;
    sf = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, true, kind);
    parsed.set(file, sf);
  }
  return sf;
}

/** Every string and template literal of a file, a template's placeholders as `$n`. */
function literals(file: string): Literal[] {
  const sf = parse(file);
  const out: Literal[] = [];
  const at = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const visit = (n: ts.Node): void => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) out.push({ file, line: at(n), text: n.text });
    else if (ts.isTemplateExpression(n)) {
      out.push({ file, line: at(n), text: n.head.text + n.templateSpans.map((s, i) => `$${i + 1}${s.literal.text}`).join('') });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Kysely's query builders by name: `.selectFrom(…)` and friends. */
function builderCalls(file: string): { file: string; line: number; text: string }[] {
  const sf = parse(file);
  const out: { file: string; line: number; text: string }[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && BUILDERS.has(n.expression.name.text)) {
      out.push({ file, line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, text: n.getText(sf).slice(0, 120) });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}
const BUILDERS = new Set(['selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'replaceInto', 'mergeInto']);

/** A literal that is an SQL statement (or starts one): what apps/ must not hold. */
const SQL_STATEMENT =
  /^\s*(select\s[\s\S]*?\bfrom\s|select\s+[\d$(]|insert\s+into\s|update\s+[\w."]+(\s+\w+)?\s+set\s|delete\s+from\s|with\s+(recursive\s+)?\w+\s+as\s+(not\s+)?(materialized\s+)?\(|truncate\s|alter\s+(table|role|system)\s|create\s+(unique\s+)?(table|index|role|view|function)\s|drop\s+(table|index|role|view)\s|set\s+(local\s+)?\w+\s*(=|to)\s|(listen|unlisten)\s+[\w"]+\s*;?\s*$|notify\s+[\w"]+\s*(,|;|$)|lock\s+table\s|copy\s+[\w."]+\s*(\(|from\s|to\s))/i;

/** Tables whose rows are the events or derived from them (migrations/0001: the projections of docs/event-model.md). */
const LEDGER_TABLES = ['events', 'invocations', 'queue', 'idempotency_keys', 'attempt_logs'];
const WRITES_LEDGER = new RegExp(
  String.raw`\b(insert\s+into|update|delete\s+from|truncate(\s+table)?|merge\s+into|copy)\s+(only\s+)?ledger\.(${LEDGER_TABLES.join('|')})\b`,
  'i',
);

/**
 * The writer, the projection code it owns (which a rebuild reuses), and the module that
 * owns the queue row's non-event columns (heartbeats, throttling).
 */
const WRITERS = new Set(['db/writer.ts', 'db/projections.ts', 'db/queue-rows.ts']);
/**
 * Writers of projection rows that are still outside the writer, each for a stated reason.
 * Shrink this list; never grow it without one.
 */
const KNOWN_OTHER_WRITERS: Record<string, string> = {
  // the accept claims its idempotency keys before it appends, in the same transaction
  'db/invocations.ts': 'idempotency keys',
  // an archived month leaves with its projection rows, as the owner role (docs/retention.md)
  'db/retention/archive.ts': 'archive',
};

const where = (l: { file: string; line: number; text: string }) => `${l.file}:${l.line}: ${l.text.replace(/\s+/g, ' ').slice(0, 100)}`;

describe('the layout of docs/architecture.md', () => {
  it('apps/ holds no SQL: no statement text, no kysely builder, no sql tag or pg client', () => {
    const files = sources('apps');
    expect(files.length).toBeGreaterThan(50);
    const statements = files.flatMap(literals).filter((l) => SQL_STATEMENT.test(l.text));
    const builders = files.filter((f) => /\.tsx?$/.test(f)).flatMap(builderCalls);
    // type imports are fine (Db, Executor); values from kysely or pg mean SQL is built here
    const drivers = files.flatMap((file) => {
      const sf = parse(file);
      return sf.statements
        .filter((s): s is ts.ImportDeclaration => ts.isImportDeclaration(s) && !s.importClause?.isTypeOnly)
        .filter((s) => ['kysely', 'pg', 'pg-cursor', 'postgres'].includes((s.moduleSpecifier as ts.StringLiteral).text))
        .filter((s) => {
          const named = s.importClause?.namedBindings;
          const onlyTypes = !s.importClause?.name && named && ts.isNamedImports(named) && named.elements.every((e) => e.isTypeOnly);
          return !onlyTypes;
        })
        .map((s) => ({ file, line: sf.getLineAndCharacterOfPosition(s.getStart(sf)).line + 1, text: s.getText(sf) }));
    });
    expect([...statements, ...builders, ...drivers].map(where), 'move these into db/ as one exported function per operation').toEqual([]);
  });

  it('the statement pattern knows SQL when it sees it, and help text when it sees that', () => {
    for (const s of ['select 1', 'select i.*, q.run_at from ledger.invocations i', 'update ledger.queue q set run_at = t.run_at', 'with picked as materialized (', 'insert into ledger.events (x)', 'set local enable_bitmapscan = off', 'delete from ledger.queue', 'listen ledger_work', 'notify ledger_work, $1']) {
      expect(SQL_STATEMENT.test(s), s).toBe(true);
    }
    for (const s of ['\nExamples:\n  invoke-ledger sql "select status from audit.invocations"', 'select a function', 'update the password of', 'Selected', 'LISTEN connection failed; polling meanwhile', 'listen', 'copy the URL to']) {
      expect(SQL_STATEMENT.test(s), s).toBe(false);
    }
  });

  it('only the writer inserts into ledger.events or writes a projection table', () => {
    const files = sources('apps', 'db', 'tools', 'scripts', 'bin');
    const writes = files.flatMap(literals).filter((l) => WRITES_LEDGER.test(l.text));
    const builderWrites = files
      .filter((f) => /\.tsx?$/.test(f))
      .flatMap(builderCalls)
      .filter((c) => /^(insertInto|updateTable|deleteFrom|replaceInto|mergeInto)$/.test(c.text.match(/\.(\w+)\(/)?.[1] ?? '') || WRITES_LEDGER.test(c.text))
      .filter((c) => new RegExp(String.raw`['"]ledger\.(${LEDGER_TABLES.join('|')})['"]`).test(c.text));
    const outside = [...writes, ...builderWrites].filter((l) => !WRITERS.has(l.file) && !(l.file in KNOWN_OTHER_WRITERS));
    expect(outside.map(where), 'append through db/writer.ts (appendEvents/appendBatch) instead').toEqual([]);
    // the exceptions are real (a stale entry would hide nothing and mislead)
    for (const file of Object.keys(KNOWN_OTHER_WRITERS)) expect(writes.some((w) => w.file === file), `${file} no longer writes: drop it from the list`).toBe(true);
    expect(writes.some((w) => w.file === 'db/writer.ts' && /insert\s+into\s+ledger\.events\b/i.test(w.text))).toBe(true);
  });

  it('no import cycle; db/ imports nothing from apps/, the worker and the API not each other, runtimes not db/ (dependency-cruiser, type imports included)', async () => {
    const result = (await cruise(
      ['apps', 'db', 'tools'],
      {
        validate: true,
        ruleSet: {
          forbidden: [
            { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
            { name: 'db-not-to-apps', severity: 'error', from: { path: '^db/' }, to: { path: '^apps/' } },
            { name: 'worker-not-to-api', severity: 'error', from: { path: '^apps/worker/' }, to: { path: '^apps/api/' } },
            { name: 'api-not-to-worker', severity: 'error', from: { path: '^apps/api/' }, to: { path: '^apps/worker/' } },
            { name: 'runtimes-not-to-db', severity: 'error', from: { path: '^apps/runtimes/' }, to: { path: '^db/' } },
          ],
        },
        // type-only imports count: a type cycle is still a cycle for a reader
        tsPreCompilationDeps: true,
        exclude: { path: ['node_modules', String.raw`\.spec\.ts$`, '/fixtures/', '^apps/console/static/'] },
        doNotFollow: { path: ['node_modules'] },
      },
      { extensions: ['.ts', '.tsx', '.mts', '.mjs', '.js'] },
      { tsConfig: { fileName: path.join(ROOT, 'tsconfig.json') } },
    )) as { output: ICruiseResult };
    const summary = result.output.summary;
    expect(summary.totalCruised).toBeGreaterThan(150);
    const violations = summary.violations.map((v) =>
      v.rule.name === 'no-circular' ? `cycle: ${[v.from, ...(v.cycle ?? []).map((c) => (typeof c === 'string' ? c : c.name))].join(' → ')}` : `${v.rule.name}: ${v.from} → ${v.to}`,
    );
    expect(violations).toEqual([]);
  }, 60_000);
});
