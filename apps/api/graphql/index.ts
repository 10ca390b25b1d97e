// PLACEHOLDER until the GraphQL API lands: mounted by app.ts at /graphql.
import { Hono } from 'hono';
import type { AppDeps } from '../app.ts';

export function graphqlRoutes(_deps: AppDeps): Hono {
  return new Hono();
}
