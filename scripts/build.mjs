#!/usr/bin/env node
// The built CLI and server: dist/ mirrors the repository (dist/apps, dist/db, dist/tools,
// dist/migrations), one JavaScript file per TypeScript file, so every path a module finds
// relative to itself (../migrations/, ./schema.graphql, ./thread-bootstrap.mjs) holds in
// dist/ as in the source. Plain `node` runs it without compiling anything at start.
//
//   node scripts/build.mjs           build (npm's `prepare` runs it on npm ci / npm install)
//   node scripts/build.mjs --check   exit 1 if dist/ is missing or older than the sources
//
// bin/invoke-ledger.mjs calls ensureBuilt() first: a checkout that changed a source file
// since the last build (git pull, an edit) rebuilds in well under a second, so dist/ is never
// stale; where dist/ cannot be written it runs the sources through tsx instead.
// Plain JavaScript on purpose: it runs before anything can be compiled.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DIST = path.join(ROOT, 'dist');
const INFO = path.join(DIST, 'build-info.json');
/** the CLI entry, as built */
export const CLI_ENTRY = path.join(DIST, 'apps/cli/main.js');

/** What is built: the server's code and the files it reads next to it. */
const SOURCE_DIRS = ['apps', 'db', 'tools', 'migrations'];
const SKIPPED = /(\.(spec|test)\.[cm]?ts$|\.d\.[cm]?ts$|(^|\/)(fixtures|node_modules|static-build)\/|(^|\/)test-fixtures\.ts$)/;
const COMPILED = /\.(ts|tsx|mts|mjs)$/;
const FORMAT = 1;

/** Every file dist/ is built from, with what tells a change: [size, mtime]. */
function sourceFiles() {
  const files = {};
  const walk = (rel) => {
    let entries;
    try {
      entries = readdirSync(path.join(ROOT, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      if (SKIPPED.test(r)) continue;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) {
        const s = statSync(path.join(ROOT, r));
        files[r] = [s.size, Math.floor(s.mtimeMs)];
      }
    }
  };
  for (const d of SOURCE_DIRS) walk(d);
  const self = statSync(fileURLToPath(import.meta.url));
  files['scripts/build.mjs'] = [self.size, Math.floor(self.mtimeMs)];
  return files;
}

/** null when dist/ matches the sources, else why not. */
export function staleness() {
  let info;
  try {
    info = JSON.parse(readFileSync(INFO, 'utf8'));
  } catch {
    return 'dist/ is not built';
  }
  if (info.format !== FORMAT) return 'dist/ was built by another version of the build';
  const now = sourceFiles();
  const before = info.inputs ?? {};
  for (const [f, v] of Object.entries(now)) {
    const b = before[f];
    if (!b) return `${f} is new`;
    if (b[0] !== v[0] || b[1] !== v[1]) return `${f} changed`;
  }
  for (const f of Object.keys(before)) if (!(f in now)) return `${f} is gone`;
  return null;
}

function writeAtomically(file, contents) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

/**
 * Compiles with esbuild (a dependency of tsx, so production installs have it too): each
 * file on its own, imports left as they are except relative `.ts` → `.js`.
 */
export async function build() {
  const { build: esbuild } = await import('esbuild');
  const inputs = sourceFiles();
  const all = Object.keys(inputs).filter((f) => f !== 'scripts/build.mjs');
  const compiled = all.filter((f) => COMPILED.test(f));
  const copied = all.filter((f) => !COMPILED.test(f));
  const externalRelative = {
    name: 'one-file-per-file',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        if (!args.path.startsWith('.')) return { path: args.path, external: true };
        return { path: args.path.replace(/\.tsx?$/, '.js').replace(/\.mts$/, '.mjs'), external: true };
      });
    },
  };
  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outbase: ROOT,
    outdir: DIST,
    logLevel: 'silent',
    plugins: [externalRelative],
  };
  const results = await Promise.all([
    esbuild({ ...common, entryPoints: compiled.filter((f) => !f.endsWith('.mjs')) }),
    esbuild({ ...common, entryPoints: compiled.filter((f) => f.endsWith('.mjs')), outExtension: { '.js': '.mjs' } }),
  ]);
  const written = new Set();
  for (const r of results) {
    for (const o of r.outputFiles) {
      writeAtomically(o.path, o.contents);
      written.add(o.path);
    }
  }
  for (const f of copied) {
    const to = path.join(DIST, f);
    writeAtomically(to, readFileSync(path.join(ROOT, f)));
    written.add(to);
  }
  // what an earlier build wrote for a source that is gone
  const prune = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) prune(p);
      else if (!written.has(p) && p !== INFO && !p.endsWith('.tmp')) rmSync(p, { force: true });
    }
  };
  for (const d of SOURCE_DIRS) prune(path.join(DIST, d));
  writeAtomically(path.join(DIST, 'package.json'), '{ "type": "module", "private": true }\n');
  writeAtomically(INFO, `${JSON.stringify({ format: FORMAT, builtAt: new Date().toISOString(), inputs }, null, 1)}\n`);
  return { files: written.size };
}

/** Builds when dist/ is stale; returns the CLI entry's file URL. */
export async function ensureBuilt() {
  if (staleness() !== null) await build();
  return pathToFileURL(CLI_ENTRY).href;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const why = staleness();
    process.stdout.write(why ? `dist/ is stale: ${why}\n` : 'dist/ is up to date\n');
    process.exit(why ? 1 : 0);
  }
  const started = performance.now();
  const { files } = await build();
  process.stdout.write(`built dist/ (${files} files) in ${Math.round(performance.now() - started)} ms\n`);
}
