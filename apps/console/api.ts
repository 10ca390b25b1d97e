// The console reads and acts through the public GraphQL API, in-process, with the
// session's key: the same operations, scopes and limits as any other client, and no SQL
// of its own. `api` is the whole app's fetch, so the request passes the same gate.
import type { Session } from './session.ts';

export type ApiFetch = (request: Request, env?: unknown) => Response | Promise<Response>;

export interface GraphQLErrorBody {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; [k: string]: unknown };
}

/** A GraphQL answer with errors: `code` of the first, and all of them. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly errors: GraphQLErrorBody[],
    /** what did resolve (a mutation with several aliases may partly succeed) */
    readonly data: Record<string, unknown> | null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface GraphQLClient {
  /** runs the operation; throws ApiError when the answer has errors */
  <T>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** the raw answer, errors included (for mutations of several aliases) */
  raw(query: string, variables?: Record<string, unknown>): Promise<{ data: Record<string, unknown> | null; errors: GraphQLErrorBody[] }>;
}

export function graphqlHeaders(session: Session, accept = 'application/graphql-response+json, application/json'): Headers {
  const h = new Headers({ 'content-type': 'application/json', accept });
  if (session.token) h.set('authorization', `Bearer ${session.token}`);
  return h;
}

export function graphqlClient(api: ApiFetch, session: Session, base: string): GraphQLClient {
  const endpoint = new URL('/graphql', base).toString();
  const raw = async (query: string, variables?: Record<string, unknown>) => {
    const res = await api(new Request(endpoint, { method: 'POST', headers: graphqlHeaders(session), body: JSON.stringify({ query, variables }) }));
    const text = await res.text();
    let body: { data?: Record<string, unknown> | null; errors?: GraphQLErrorBody[] };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = { errors: [{ message: `GraphQL answered ${res.status}: ${text.slice(0, 200)}`, extensions: { code: 'InternalError' } }] };
    }
    return { data: body.data ?? null, errors: body.errors ?? [] };
  };
  const client = (async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
    const r = await raw(query, variables);
    const first = r.errors[0];
    if (first) throw new ApiError(String(first.extensions?.code ?? 'InternalError'), first.message, r.errors, r.data);
    return r.data as T;
  }) as GraphQLClient;
  client.raw = raw;
  return client;
}
