// Change stream mappings over GraphQL (docs/streams.md, "Change streams from PostgreSQL
// tables"): a table's row changes delivered as DynamoDB Streams records. Everything but
// the source is a stream mapping's, so the type shares StreamEventSourceMapping's fields.
import {
  createChangeStreamMapping,
  deleteChangeStreamMapping,
  getChangeStreamMapping,
  listChangeSlots,
  listChangeStreamMappings,
  type ChangeStreamMapping,
} from '../../../db/change-streams.ts';
import { listCheckpoints } from '../../../db/streams.ts';
import { changeContext, type GraphQLContext } from './context.ts';

export const changeStreamTypeDefs = /* GraphQL */ `
  enum StreamViewType {
    KEYS_ONLY
    NEW_IMAGE
    OLD_IMAGE
    NEW_AND_OLD_IMAGES
  }

  """Delivers a table's row changes (logical replication) to a function, in commit order per key: one poll invocation per batch."""
  type ChangeStreamEventSourceMapping {
    id: ID!
    """schema.table"""
    table: String!
    """host:port/database of the table's database when it is not the ledger's (never its credentials); null: the ledger's own"""
    sourceDatabase: String
    functionName: String!
    streamViewType: StreamViewType!
    """the ledger stream the changes are appended to (read only by this mapping)"""
    streamName: String!
    slotName: String!
    publicationName: String!
    """every source transaction committed at or before this LSN is in the stream"""
    ingestedLsn: String!
    """WAL written since the slot's confirmed position, and WAL the server keeps for it (bytes)"""
    slotLagBytes: Float
    retainedWalBytes: Float
    batchSize: Int!
    maximumBatchingWindowInSeconds: Int!
    maximumRetryAttempts: Int!
    maximumRecordAgeInSeconds: Int!
    bisectBatchOnFunctionError: Boolean!
    reportBatchItemFailures: Boolean!
    onFailure: String
    enabled: Boolean!
    parallelizationFactor: Int!
    """0 (none) or the length of a tumbling window, by the source commit time"""
    tumblingWindowInSeconds: Int!
    createdAt: DateTime!
    updatedAt: DateTime!
    checkpoints: [StreamCheckpoint!]!
  }

  input ChangeStreamEventSourceMappingInput {
    """table or schema.table; it needs a primary key, and REPLICA IDENTITY FULL for OLD_IMAGE and NEW_AND_OLD_IMAGES"""
    table: String!
    functionName: String!
    """default NEW_AND_OLD_IMAGES"""
    streamViewType: StreamViewType
    """1 … 64 (default 4): the changes are sharded by the MD5 of their primary key"""
    shardCount: Int
    """1 … 8760 (default 24): how long appended changes are kept"""
    retentionHours: Int
    batchSize: Int
    maximumBatchingWindowInSeconds: Int
    maximumRetryAttempts: Int
    maximumRecordAgeInSeconds: Int
    bisectBatchOnFunctionError: Boolean
    """the function answers {batchItemFailures: [{itemIdentifier: dynamodb.SequenceNumber}]}"""
    reportBatchItemFailures: Boolean
    onFailure: String
    enabled: Boolean
    parallelizationFactor: Int
    """0 … 900 (default 0: none): windows of the changes by their commit time, state passed between invocations"""
    tumblingWindowInSeconds: Int
    """the table is in another PostgreSQL database: its connection string (postgres://user:password@host:port/database), whose login owns the table and may replicate; stored sealed with LEDGER_SECRET_KEY, never answered"""
    sourceDatabaseUrl: String
  }

  extend type Query {
    changeStreamEventSourceMappings(table: String, functionName: String): [ChangeStreamEventSourceMapping!]!
    changeStreamEventSourceMapping(id: ID!): ChangeStreamEventSourceMapping
  }

  extend type Mutation {
    """creates the table's publication and replication slot; changes committed from then on are delivered"""
    createChangeStreamEventSourceMapping(input: ChangeStreamEventSourceMappingInput!): ChangeStreamEventSourceMapping!
    """drops the mapping's slot, publication and stream"""
    deleteChangeStreamEventSourceMapping(id: ID!): Boolean!
  }
`;

type Args = Record<string, unknown>;
const withoutNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));

const secretKey = (ctx: GraphQLContext) => ctx.secretKey;

async function slotOf(m: ChangeStreamMapping, ctx: GraphQLContext) {
  // a slot in a source database is read there (with the key that opens its connection string)
  const slots = await listChangeSlots(ctx.db, m.source.endpoint ? { secretKey: secretKey(ctx) } : {});
  return slots.find((s) => s.slotName === m.source.slotName) ?? null;
}

export const changeStreamResolvers = {
  ChangeStreamEventSourceMapping: {
    table: (m: ChangeStreamMapping) => `${m.source.schemaName}.${m.source.tableName}`,
    sourceDatabase: (m: ChangeStreamMapping) => m.source.endpoint,
    streamViewType: (m: ChangeStreamMapping) => m.source.streamViewType,
    slotName: (m: ChangeStreamMapping) => m.source.slotName,
    publicationName: (m: ChangeStreamMapping) => m.source.publicationName,
    ingestedLsn: (m: ChangeStreamMapping) => m.source.ingestedLsn,
    slotLagBytes: async (m: ChangeStreamMapping, _: Args, ctx: GraphQLContext) => (await slotOf(m, ctx))?.lagBytes ?? null,
    retainedWalBytes: async (m: ChangeStreamMapping, _: Args, ctx: GraphQLContext) => (await slotOf(m, ctx))?.retainedBytes ?? null,
    checkpoints: async (m: ChangeStreamMapping, _: Args, ctx: GraphQLContext) =>
      (await listCheckpoints(ctx.db, m.id)).map((c) => ({ shardId: c.shardId, lane: c.lane, sequenceNumber: String(c.sequenceNumber), retryAttempts: c.retryAttempts })),
  },
  Query: {
    changeStreamEventSourceMappings: (_: unknown, args: Args, ctx: GraphQLContext) =>
      listChangeStreamMappings(ctx.db, { table: args.table as string | null, functionName: args.functionName as string | null }),
    changeStreamEventSourceMapping: (_: unknown, args: Args, ctx: GraphQLContext) => getChangeStreamMapping(ctx.db, args.id as string),
  },
  Mutation: {
    createChangeStreamEventSourceMapping: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) =>
      createChangeStreamMapping(ctx.db, withoutNulls(args.input), changeContext(ctx), { secretKey: secretKey(ctx) }),
    deleteChangeStreamEventSourceMapping: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
      await deleteChangeStreamMapping(ctx.db, args.id, changeContext(ctx), { secretKey: secretKey(ctx) });
      return true;
    },
  },
};
