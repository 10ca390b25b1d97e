// A real HTTP server per test file with auth on (or as asked), over test/api/fixtures,
// plus keys with each scope and small request helpers.
import { LambdaClient } from '@aws-sdk/client-lambda';
import type { Hono } from 'hono';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { TreeHeadSigner } from '../../apps/api/audit-routes.ts';
import type { AuthOptions } from '../../apps/api/auth/index.ts';
import { composeApi } from '../../apps/cli/compose.ts';
import type { UrlAllowlist } from '../../apps/runtimes/allowlist.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import type { Db } from '../../db/schema.ts';
import { FIXTURES } from '../api/helpers.ts';
import { listen } from '../helpers/http.ts';

export interface SecureApi {
  url: string;
  app: Hono;
  registry: Registry;
  runtimes: Runtimes;
  close(): Promise<void>;
}

export async function startSecureApi(
  db: Db,
  options: { auth?: AuthOptions; allowlist?: UrlAllowlist; logger?: Logger; corsOrigins?: string[]; treeHeadSigner?: TreeHeadSigner } = {},
): Promise<SecureApi> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const api = composeApi({
    db,
    instanceId: 'security-test',
    logger,
    functionsDir: FIXTURES,
    runtime: { poolSize: 1 },
    auth: options.auth ?? { enabled: true, cacheTtlMs: 0 },
    ...(options.allowlist ? { httpAllowlist: options.allowlist } : {}),
    ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}),
    ...(options.treeHeadSigner ? { treeHeadSigner: options.treeHeadSigner } : {}),
  });
  const server = await listen(api.app.fetch);
  return {
    url: server.url,
    app: api.app,
    registry: api.registry,
    runtimes: api.runtimes,
    async close() {
      await server.close();
      await api.close();
    },
  };
}

export interface Keys {
  invoke: CreatedApiKey;
  admin: CreatedApiKey;
  audit: CreatedApiKey;
  all: CreatedApiKey;
  revoked: CreatedApiKey;
}

export async function createKeys(db: Db, secretKey?: string): Promise<Keys> {
  const opts = secretKey ? { secretKey } : {};
  return {
    invoke: await createApiKey(db, { name: 'invoke-only', scopes: ['invoke'] }, opts),
    admin: await createApiKey(db, { name: 'admin-only', scopes: ['admin'] }, opts),
    audit: await createApiKey(db, { name: 'audit-only', scopes: ['audit'] }, opts),
    all: await createApiKey(db, { name: 'all', scopes: ['invoke', 'admin', 'audit'] }, opts),
    revoked: await createApiKey(db, { name: 'revoked', scopes: ['invoke', 'admin', 'audit'] }, opts),
  };
}

export const bearer = (key: CreatedApiKey | string): Record<string, string> => ({
  authorization: `Bearer ${typeof key === 'string' ? key : key.token}`,
});

export function sdkClient(url: string, credentials: { accessKeyId: string; secretAccessKey: string }): LambdaClient {
  return new LambdaClient({ endpoint: url, region: 'us-east-1', credentials, maxAttempts: 1 });
}

/** POST a GraphQL operation; the status and parsed body. */
export async function gql(
  url: string,
  query: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: { code?: string } }[] } }> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, body: (await res.json()) as never };
}

/** The first SSE `data:` payload of a GraphQL subscription, then the stream is closed. */
export async function firstSubscriptionMessage(url: string, query: string, headers: Record<string, string> = {}): Promise<{ status: number; message: unknown }> {
  const controller = new AbortController();
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
    body: JSON.stringify({ query }),
    signal: controller.signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      const line = text.split('\n').find((l) => l.startsWith('data:') && l.length > 6);
      if (line) return { status: res.status, message: JSON.parse(line.slice(5)) };
    }
    return { status: res.status, message: null };
  } finally {
    controller.abort();
    await reader.cancel().catch(() => {});
  }
}
