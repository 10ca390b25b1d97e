// JSON and DateTime: the two scalars of the schema.
import type { ObjectValueNode, ValueNode } from 'graphql';
import { whyNotStorableJson } from '../../../db/storable.ts';
import { GraphQLError, GraphQLScalarType, Kind } from './graphql-js.ts';

function literal(node: ValueNode, variables: Record<string, unknown> | null | undefined): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.NULL:
      return null;
    case Kind.ENUM:
      return node.value;
    case Kind.LIST:
      return node.values.map((v) => literal(v, variables));
    case Kind.OBJECT:
      return objectLiteral(node, variables);
    case Kind.VARIABLE:
      return variables?.[node.name.value];
  }
}

function objectLiteral(node: ObjectValueNode, variables: Record<string, unknown> | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of node.fields) out[f.name.value] = literal(f.value, variables);
  return out;
}

/** Every JSON argument (payloads, message bodies) is one the ledger can store, or refused alone. */
function storable(v: unknown): unknown {
  const why = whyNotStorableJson(v);
  if (why !== null) throw new GraphQLError(`The value cannot be stored: ${why}`, { extensions: { code: 'InvalidRequestContent' } });
  return v;
}

export const JSONScalar = new GraphQLScalarType({
  name: 'JSON',
  serialize: (v) => v,
  parseValue: storable,
  parseLiteral: (node, variables) => storable(literal(node, variables)),
});

const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

function toDate(v: unknown): Date {
  if (typeof v === 'string' && ISO.test(v)) {
    const d = new Date(v);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw new GraphQLError(`DateTime must be an ISO 8601 timestamp, got ${JSON.stringify(v)}`, {
    extensions: { code: 'InvalidParameter' },
  });
}

export const DateTimeScalar = new GraphQLScalarType({
  name: 'DateTime',
  serialize: (v) => (v instanceof Date ? v.toISOString() : toDate(v).toISOString()),
  parseValue: toDate,
  parseLiteral: (node) => {
    if (node.kind !== Kind.STRING) throw new GraphQLError('DateTime must be a string', { extensions: { code: 'InvalidParameter' } });
    return toDate(node.value);
  },
});
