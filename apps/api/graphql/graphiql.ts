// GraphiQL that works without internet access. graphql-yoga's page loads its bundle from
// a CDN; this one serves the same build (@graphql-yoga/graphiql 4.5.0, MIT, see
// ./graphiql/README.md for how to refresh it) from gzip files kept in the repository.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Hono } from 'hono';
import type { GraphiQLOptions } from 'graphql-yoga';

export const GRAPHIQL_VERSION = '4.5.0';

const ASSETS: Record<string, string> = {
  'yoga-graphiql.umd.js': 'application/javascript; charset=utf-8',
  'graphiql.css': 'text/css; charset=utf-8',
  'editor.worker.js': 'application/javascript; charset=utf-8',
  'json.worker.js': 'application/javascript; charset=utf-8',
  'graphql.worker.js': 'application/javascript; charset=utf-8',
};

const gzipped = new Map<string, Buffer>();
function asset(name: string): Buffer {
  let hit = gzipped.get(name);
  if (!hit) {
    hit = readFileSync(new URL(`./graphiql/${name}.gz`, import.meta.url));
    gzipped.set(name, hit);
  }
  return hit;
}

/** `${endpoint}/graphiql/<version>/<file>`, long-cached since the version is in the path. */
export function graphiqlAssetRoutes(): Hono {
  const app = new Hono();
  app.get(`/graphiql/${GRAPHIQL_VERSION}/:file`, (c) => {
    const file = c.req.param('file');
    const type = ASSETS[file];
    if (!type) return c.notFound();
    const body = asset(file);
    const acceptsGzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '');
    const bytes = acceptsGzip ? body : gunzipSync(body);
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
