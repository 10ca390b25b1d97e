// graphql ships a CommonJS build (package "main") and an ESM build ("module"). Node, and so
// graphql-yoga, load the CommonJS one; vitest's transform would give our files the ESM one,
// and with two GraphQLError classes `instanceof` fails across them. Load the one yoga uses.
import { createRequire } from 'node:module';

const graphqlJs = createRequire(import.meta.url)('graphql') as typeof import('graphql');

export const { GraphQLError, GraphQLScalarType, Kind, NoSchemaIntrospectionCustomRule, execute } = graphqlJs;
