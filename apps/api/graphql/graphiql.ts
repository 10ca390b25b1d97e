// GraphiQL that works without internet access. graphql-yoga's page loads its bundle from
// a CDN; this one serves the same browser build from the installed npm package
// @graphql-yoga/graphiql (its dist/ files), compressed once on first request.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Hono } from 'hono';
import type { GraphiQLOptions } from 'graphql-yoga';

const require = createRequire(import.meta.url);
const PACKAGE_DIR = path.dirname(require.resolve('@graphql-yoga/graphiql/package.json'));
export const GRAPHIQL_VERSION: string = (JSON.parse(readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string }).version;

/** served name → [file in the package's dist/, content type] */
const ASSETS: Record<string, [string, string]> = {
  'yoga-graphiql.umd.js': ['yoga-graphiql.umd.js', 'application/javascript; charset=utf-8'],
  'graphiql.css': ['graphiql.css', 'text/css; charset=utf-8'],
  'editor.worker.js': ['monacoeditorwork/editor.worker.bundle.js', 'application/javascript; charset=utf-8'],
  'json.worker.js': ['monacoeditorwork/json.worker.bundle.js', 'application/javascript; charset=utf-8'],
  'graphql.worker.js': ['monacoeditorwork/graphql.worker..bundle.js', 'application/javascript; charset=utf-8'],
};

const loaded = new Map<string, { raw: Buffer; gzip: Buffer }>();
function asset(name: string, file: string): { raw: Buffer; gzip: Buffer } {
  let hit = loaded.get(name);
  if (!hit) {
    const raw = readFileSync(path.join(PACKAGE_DIR, 'dist', file));
    hit = { raw, gzip: gzipSync(raw) };
    loaded.set(name, hit);
  }
  return hit;
}

/** `${endpoint}/graphiql/<version>/<file>`, long-cached since the version is in the path. */
export function graphiqlAssetRoutes(): Hono {
  const app = new Hono();
  app.get(`/graphiql/${GRAPHIQL_VERSION}/:file`, (c) => {
    const file = c.req.param('file');
    const entry = ASSETS[file];
    if (!entry) return c.notFound();
    const [source, type] = entry;
    const body = asset(file, source);
    const acceptsGzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '');
    const bytes = acceptsGzip ? body.gzip : body.raw;
    return c.body(new Uint8Array(bytes), 200, {
      'Content-Type': type,
      'Cache-Control': 'public, max-age=31536000, immutable',
      Vary: 'Accept-Encoding',
      ...(acceptsGzip ? { 'Content-Encoding': 'gzip' } : {}),
    });
  });
  return app;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
/** JSON inside a <script>: `</script>` and friends must not end it early. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

/** The page; same shape as yoga's, with every URL on this server. */
export function renderOfflineGraphiQL(endpoint: string) {
  const base = `${endpoint}/graphiql/${GRAPHIQL_VERSION}`;
  // yoga's GraphiQL opens its first tab with `query` (a ?query= in the URL wins); defaultQuery alone is not shown
  return (options: GraphiQLOptions): string => {
    const opts = { ...options, query: options.defaultQuery };
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(opts.title ?? 'GraphiQL')}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${base}/graphiql.css">
</head>
<body id="body" class="no-focus-outline">
<noscript>You need to enable JavaScript to run GraphiQL.</noscript>
<div id="root">Loading GraphiQL…</div>
<script>
const workers = {};
const workerUrls = {
  editorWorkerService: ${scriptJson(`${base}/editor.worker.js`)},
  json: ${scriptJson(`${base}/json.worker.js`)},
  graphql: ${scriptJson(`${base}/graphql.worker.js`)},
};
function prepareWorkers() {
  return Promise.all(Object.entries(workerUrls).map(async ([label, url]) => {
    const text = await (await fetch(url)).text();
    workers[label] = URL.createObjectURL(new Blob([text], { type: 'application/javascript' }));
  }));
}
self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (_id, label) => workers[label] };
</script>
<script src="${base}/yoga-graphiql.umd.js"></script>
<script>
prepareWorkers().finally(() => YogaGraphiQL.renderYogaGraphiQL(root, ${scriptJson(opts)}));
</script>
</body>
</html>`;
  };
}

/** The headers pane's first content when API keys are on: where the key goes. */
export const AUTH_HEADERS_TEMPLATE = `{
  "Authorization": "Bearer <paste a key from: npx invoke-ledger keys create --scopes invoke,audit>"
}`;

/** Above the default query when API keys are on. */
export const KEY_HINT = `# Every operation needs an API key: paste its bearer token into the Headers pane below.
# Signed in to the console (/console)? Its GraphQL page (/console/graphiql) uses that key.
`;

export const DEFAULT_QUERY = `# Invoke Ledger: run the echo function and read its timeline from the ledger.
# Press the run button (or Ctrl-Enter). See docs/graphql.md for more examples.
mutation InvokeEcho {
  invoke(functionName: "echo", payload: { hello: "ledger" }) {
    id
    status
    result
    error { errorType errorMessage }
    events { seq type attempt occurredAt data }
  }
}
`;
