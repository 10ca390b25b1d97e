// GraphQL authorization per operation: before anything executes, every root field of the
// operation is looked up in GRAPHQL_FIELD_SCOPES and the caller's bearer key must hold all
// the scopes it names. A refused operation runs nothing and answers one error with
// extensions.code Unauthorized (HTTP 401) or Forbidden (HTTP 403).
import { GraphQLError, Kind, getOperationAST, type DocumentNode, type SelectionSetNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Scope } from '../../../db/keys.ts';
import { AuthenticationError, type Authenticator, type Principal } from './authenticator.ts';
import { graphqlFieldScope, type OperationKind } from './routes.ts';

/** Root field names of the operation that will run (fragments at the root are followed). */
export function rootFields(document: DocumentNode, operationName?: string | null): { kind: OperationKind; fields: string[] } | null {
  const op = getOperationAST(document, operationName ?? undefined);
  if (!op) return null;
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d.selectionSet] as const] : [])),
  );
  const fields = new Set<string>();
  const seen = new Set<string>();
  const walk = (set: SelectionSetNode) => {
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) fields.add(s.name.value);
      else if (s.kind === Kind.INLINE_FRAGMENT) walk(s.selectionSet);
      else if (!seen.has(s.name.value)) {
        seen.add(s.name.value);
        const f = fragments.get(s.name.value);
        if (f) walk(f);
      }
    }
  };
  walk(op.selectionSet);
  return { kind: op.operation as OperationKind, fields: [...fields] };
}

const unauthorized = (message: string) => new GraphQLError(message, { extensions: { code: 'Unauthorized', http: { status: 401 } } });
const forbidden = (message: string) => new GraphQLError(message, { extensions: { code: 'Forbidden', http: { status: 403 } } });

interface ExecuteArgs {
  document: DocumentNode;
  operationName?: string | null | undefined;
  contextValue: unknown;
}

/** The error that refuses this operation, or the caller when it may run. */
export async function authorizeOperation(auth: Authenticator, args: ExecuteArgs): Promise<GraphQLError | Principal | null> {
  const op = rootFields(args.document, args.operationName);
  if (!op) return null; // yoga's own validation reports the problem
  const needs = op.fields.map((f) => [f, graphqlFieldScope(op.kind, f)] as const).filter(([, s]) => s !== 'open');
  if (needs.length === 0) return null;

  const request = (args.contextValue as { request?: Request } | undefined)?.request;
  let principal: Principal;
  try {
    principal = await auth.bearer(request?.headers.get('authorization') ?? undefined);
  } catch (e) {
    if (e instanceof AuthenticationError) return unauthorized(e.message);
    throw e;
  }
  const missing = needs.filter(([, s]) => s !== 'authenticated' && !principal.scopes.has(s as Scope));
  if (missing.length > 0) {
    const list = missing.map(([f, s]) => `${f} (${s})`).join(', ');
    return forbidden(`Key ${principal.keyId} lacks the scope for ${op.kind} field(s): ${list}.`);
  }
  return principal;
}

/** The yoga plugin; the caller is also put in the context as `principal`. */
export function useApiKeyAuth(auth: Authenticator): Plugin {
  const gate = async (hook: {
    args: ExecuteArgs;
    setResultAndStopExecution: (r: { errors: GraphQLError[] }) => void;
    extendContext: (e: { principal: Principal }) => void;
  }) => {
    const verdict = await authorizeOperation(auth, hook.args);
    if (verdict instanceof GraphQLError) hook.setResultAndStopExecution({ errors: [verdict] });
    else if (verdict) hook.extendContext({ principal: verdict });
  };
  return {
    onExecute: (hook) => gate(hook as unknown as Parameters<typeof gate>[0]),
    onSubscribe: (hook) => gate(hook as unknown as Parameters<typeof gate>[0]),
  };
}
