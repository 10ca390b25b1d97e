// The console's scripts and styles, served from this repository and the installed npm
// packages (htmx.org, uplot): nothing from a CDN, so the console works offline. Served
// under a path that carries a hash of their contents, so browsers may cache them forever.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { Hono } from 'hono';

const require = createRequire(import.meta.url);
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`));
const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));

const JS = 'application/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** served name → [file, content type] */
const FILES: Record<string, [string, string]> = {
  'console.js': [path.join(STATIC_DIR, 'console.js'), JS],
  'console.css': [path.join(STATIC_DIR, 'console.css'), CSS],
  'htmx.esm.js': [path.join(packageDir('htmx.org'), 'dist/htmx.esm.js'), JS],
  'uPlot.esm.js': [path.join(packageDir('uplot'), 'dist/uPlot.esm.js'), JS],
  'uPlot.min.css': [path.join(packageDir('uplot'), 'dist/uPlot.min.css'), CSS],
};

interface Loaded {
  raw: Buffer;
  gzip: Buffer;
  type: string;
}

let loaded: { version: string; files: Map<string, Loaded> } | null = null;

function load(): { version: string; files: Map<string, Loaded> } {
  if (!loaded) {
    const hash = createHash('sha256');
    const files = new Map<string, Loaded>();
    for (const [name, [file, type]] of Object.entries(FILES)) {
      const raw = readFileSync(file);
      hash.update(name).update(raw);
      files.set(name, { raw, gzip: gzipSync(raw), type });
    }
    loaded = { version: hash.digest('hex').slice(0, 12), files };
  }
  return loaded;
}

/** `/console/assets/<version>`: where the pages link their scripts and styles. */
export const assetBase = (): string => `/console/assets/${load().version}`;

/**
 * The import map that lets console.js import `htmx.org` and `uplot` by name, and the
 * hash that allows this one inline script under the pages' Content-Security-Policy.
 */
export function importMap(): { json: string; cspHash: string } {
  const base = assetBase();
  const json = JSON.stringify({ imports: { 'htmx.org': `${base}/htmx.esm.js`, uplot: `${base}/uPlot.esm.js` } });
  return { json, cspHash: `'sha256-${createHash('sha256').update(json, 'utf8').digest('base64')}'` };
}

export function assetRoutes(): Hono {
  const app = new Hono();
  app.get('/console/assets/:version/:file', (c) => {
    const { version, files } = load();
    const asset = files.get(c.req.param('file'));
    if (!asset || c.req.param('version') !== version) return c.notFound();
    const gzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '');
    return c.body(new Uint8Array(gzip ? asset.gzip : asset.raw), 200, {
      'Content-Type': asset.type,
      'Cache-Control': 'public, max-age=31536000, immutable',
      'X-Content-Type-Options': 'nosniff',
      Vary: 'Accept-Encoding',
      ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
    });
  });
  return app;
}
