// GraphQL for broker event source mappings (docs/brokers.md): RabbitMQ queues and NATS
// JetStream streams delivered to functions. Merged by ./index.ts; the resolvers only
// translate to db/brokers.ts. The connection URL is write-only: answers carry `endpoint`
// (scheme, host and port) and never the credentials.
import {
  createBrokerMapping,
  deleteBrokerMapping,
  getBrokerMapping,
  listBrokerMappings,
  updateBrokerMapping,
  type BrokerMapping,
  BROKER_MAPPING_CHANGES,
} from '../../../db/brokers.ts';
import { listChanges } from '../../../db/changes.ts';
import { changeContext, type GraphQLContext } from './context.ts';

export const brokerTypeDefs = /* GraphQL */ `
  enum Broker {
    RABBITMQ
    NATS
  }

  """Where a NATS mapping's durable consumer starts (set once, when the consumer is made)."""
  enum StartingPosition {
    TRIM_HORIZON
    LATEST
    AT_TIMESTAMP
  }

  """Delivers a RabbitMQ queue's or a NATS JetStream stream's messages to a function: one poll invocation per batch."""
  type BrokerEventSourceMapping {
    id: ID!
    broker: Broker!
    functionName: String!
    """scheme://host:port of the broker; the URL's credentials are sealed and never shown"""
    endpoint: String!
    virtualHost: String
    queue: String
    """RabbitMQ classic queues: deliveries before a failing message is dead-lettered"""
    maxDeliveryCount: Int
    stream: String
    subjectFilter: String
    startingPosition: StartingPosition
    startingPositionTimestamp: DateTime
    """NATS: retries of a failed batch before it goes to onFailureQueue; -1 = until it succeeds"""
    maxRetryAttempts: Int
    onFailureQueue: String
    batchSize: Int!
    maxBatchingWindowMs: Int!
    reportBatchItemFailures: Boolean!
    enabled: Boolean!
    """Creating, Connecting, Enabled, Disabled or Error, as the consuming worker reports it"""
    state: String!
    stateReason: String
    stateChangedAt: DateTime!
    """messages waiting in the broker, as last reported (null until known)"""
    lag: Float
    lagAt: DateTime
    createdAt: DateTime!
    updatedAt: DateTime!
    """its changes in ledger.changes (created, updated, …), newest first; never the URL"""
    history(first: Int): [Change!]!
  }

  input RabbitMqEventSourceMappingInput {
    """amqp:// or amqps:// with credentials; sealed under LEDGER_SECRET_KEY when one is set"""
    url: String!
    """default /"""
    virtualHost: String
    queue: String!
    functionName: String!
    """1 … 10000 (default 100); also the consumer's prefetch"""
    batchSize: Int
    """0 … 300000 (default 500)"""
    maxBatchingWindowMs: Int
    reportBatchItemFailures: Boolean
    """1 … 1000 (default 5)"""
    maxDeliveryCount: Int
    enabled: Boolean
  }

  input NatsEventSourceMappingInput {
    """nats:// or tls://, credentials as user:password@"""
    url: String!
    stream: String!
    subjectFilter: String
    functionName: String!
    """default TRIM_HORIZON"""
    startingPosition: StartingPosition
    startingPositionTimestamp: DateTime
    batchSize: Int
    maxBatchingWindowMs: Int
    reportBatchItemFailures: Boolean
    """-1 … 10000 (default -1: retry until the batch succeeds)"""
    maxRetryAttempts: Int
    """a queue of this ledger that receives where a batch that used its retries was"""
    onFailureQueue: String
    enabled: Boolean
  }

  """Fields left out keep their value."""
  input BrokerEventSourceMappingUpdate {
    """new credentials or host, same scheme as before; sealed like the first one, and the change history records only that it changed"""
    url: String
    functionName: String
    batchSize: Int
    maxBatchingWindowMs: Int
    reportBatchItemFailures: Boolean
    enabled: Boolean
  }

  extend type Query {
    brokerEventSourceMappings(functionName: String): [BrokerEventSourceMapping!]!
    brokerEventSourceMapping(id: ID!): BrokerEventSourceMapping
  }

  extend type Mutation {
    createRabbitMqEventSourceMapping(input: RabbitMqEventSourceMappingInput!): BrokerEventSourceMapping!
    createNatsEventSourceMapping(input: NatsEventSourceMappingInput!): BrokerEventSourceMapping!
    """enabled: false stops consumption within about a second (the batch running finishes first)"""
    updateBrokerEventSourceMapping(id: ID!, input: BrokerEventSourceMappingUpdate!): BrokerEventSourceMapping!
    deleteBrokerEventSourceMapping(id: ID!): Boolean!
  }
`;

type Args = Record<string, unknown>;
const withoutNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
const secretKey = (ctx: GraphQLContext) => ctx.secretKey;

export const brokerResolvers = {
  BrokerEventSourceMapping: {
    broker: (m: BrokerMapping) => m.broker.toUpperCase(),
    history: (m: BrokerMapping, args: { first?: number | null }, ctx: GraphQLContext) =>
      listChanges(ctx.db, { resourceType: BROKER_MAPPING_CHANGES, resourceName: m.id, limit: args.first ?? undefined }),
  },
  Query: {
    brokerEventSourceMappings: (_: unknown, args: Args, ctx: GraphQLContext) => listBrokerMappings(ctx.db, { functionName: (args.functionName as string | null) ?? null }),
    brokerEventSourceMapping: (_: unknown, args: Args, ctx: GraphQLContext) => getBrokerMapping(ctx.db, args.id as string),
  },
  Mutation: {
    createRabbitMqEventSourceMapping: (_: unknown, args: { input: Args }, ctx: GraphQLContext) =>
      createBrokerMapping(ctx.db, changeContext(ctx), { broker: 'rabbitmq', ...withoutNulls(args.input) }, { secretKey: secretKey(ctx) }),
    createNatsEventSourceMapping: (_: unknown, args: { input: Args }, ctx: GraphQLContext) =>
      createBrokerMapping(ctx.db, changeContext(ctx), { broker: 'nats', ...withoutNulls(args.input) }, { secretKey: secretKey(ctx) }),
    updateBrokerEventSourceMapping: (_: unknown, args: { id: string; input: Args }, ctx: GraphQLContext) =>
      updateBrokerMapping(ctx.db, changeContext(ctx), args.id, withoutNulls(args.input), { secretKey: secretKey(ctx) }),
    deleteBrokerEventSourceMapping: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
      await deleteBrokerMapping(ctx.db, changeContext(ctx), args.id);
      return true;
    },
  },
};
