// GraphQL for native streams and stream event source mappings (docs/streams.md): type
// definitions that extend Query and Mutation, and resolvers that only translate to the
// core functions of db/streams.ts.
import {
  createStream,
  createStreamMapping,
  deleteStreamMapping,
  deliveriesOfRecord,
  getStream,
  listCheckpoints,
  listStreamMappings,
  listStreams,
  putRecords,
  updateStreamMapping,
  type Stream,
  type StreamMapping,
} from '../../../db/streams.ts';
import { changeContext, type GraphQLContext } from './context.ts';

export const streamTypeDefs = /* GraphQL */ `
  """A stream of records, ordered per shard; a record's partition key picks its shard by MD5 hash range."""
  type Stream {
    name: String!
    arn: String!
    shardCount: Int!
    retentionHours: Int!
    createdAt: DateTime!
    shards: [StreamShard!]!
    eventSourceMappings: [StreamEventSourceMapping!]!
  }

  type StreamShard {
    shardId: String!
    """the shard's inclusive MD5 range, decimal"""
    startingHashKey: String!
    endingHashKey: String!
    lastSequenceNumber: String!
  }

  input StreamInput {
    """[A-Za-z0-9_.-]{1,128}"""
    name: String!
    """1 … 64"""
    shardCount: Int!
    """1 … 8760 (default 24): records older than this are trimmed"""
    retentionHours: Int
  }

  input PutRecordInput {
    """1 … 256 characters"""
    partitionKey: String!
    """base64; with the partition key at most 1 MB"""
    data: String!
  }

  type PutRecordResult {
    shardId: String!
    sequenceNumber: String!
  }

  enum StreamStartingPosition {
    TRIM_HORIZON
    LATEST
    AT_TIMESTAMP
  }

  """Delivers a stream's records to a function, shard by shard in order: one poll invocation per batch."""
  type StreamEventSourceMapping {
    id: ID!
    streamName: String!
    functionName: String!
    startingPosition: StreamStartingPosition!
    startingPositionTimestamp: DateTime
    batchSize: Int!
    maximumBatchingWindowInSeconds: Int!
    maximumRetryAttempts: Int!
    maximumRecordAgeInSeconds: Int!
    bisectBatchOnFunctionError: Boolean!
    reportBatchItemFailures: Boolean!
    onFailure: String
    enabled: Boolean!
    parallelizationFactor: Int!
    """0 (none) or the length of a tumbling window: state passed between the invocations of a window and shard"""
    tumblingWindowInSeconds: Int!
    createdAt: DateTime!
    updatedAt: DateTime!
    checkpoints: [StreamCheckpoint!]!
  }

  type StreamCheckpoint {
    shardId: String!
    """the lane of the shard's partition keys (0 … parallelizationFactor - 1)"""
    lane: Int!
    """every record up to this one is done"""
    sequenceNumber: String!
    """failures of the batch now being retried"""
    retryAttempts: Int!
    """the open tumbling window of the shard (lane) and the state its last invocation returned"""
    window: StreamWindow
  }

  type StreamWindow {
    start: DateTime!
    end: DateTime!
    state: JSON!
    """the state passed 1 MB: the next invocation ends the window early"""
    terminatedEarly: Boolean!
  }

  input StreamEventSourceMappingInput {
    streamName: String!
    functionName: String!
    startingPosition: StreamStartingPosition!
    startingPositionTimestamp: DateTime
    """1 … 10000 (default 100)"""
    batchSize: Int
    """0 … 300 (default 0)"""
    maximumBatchingWindowInSeconds: Int
    """-1 (until the records expire) … 10000 (default -1)"""
    maximumRetryAttempts: Int
    """-1 or 60 … 604800 (default -1)"""
    maximumRecordAgeInSeconds: Int
    bisectBatchOnFunctionError: Boolean
    """the function answers {batchItemFailures: [{itemIdentifier: sequenceNumber}]}"""
    reportBatchItemFailures: Boolean
    """function:<name> or an http(s) URL: where a batch that used its retries is described"""
    onFailure: String
    enabled: Boolean
    """1 … 10 (default 1): concurrent batches per shard, each for its lane of the partition keys; set at creation"""
    parallelizationFactor: Int
    """0 … 900 (default 0: none): group each shard's records into windows of this many seconds by arrival time, passing state between invocations"""
    tumblingWindowInSeconds: Int
  }

  input StreamEventSourceMappingUpdate {
    batchSize: Int
    maximumBatchingWindowInSeconds: Int
    maximumRetryAttempts: Int
    maximumRecordAgeInSeconds: Int
    bisectBatchOnFunctionError: Boolean
    reportBatchItemFailures: Boolean
    onFailure: String
    enabled: Boolean
    """0 … 900; an open window keeps its bounds (0: it ends at once, with its final invocation)"""
    tumblingWindowInSeconds: Int
  }

  """A poll invocation that delivered a record (audit.stream_deliveries)."""
  type StreamRecordDelivery {
    invocationId: ID!
    status: String!
    firstSequenceNumber: String!
    lastSequenceNumber: String!
    checkpointReason: String
    deliveredAt: DateTime!
  }

  extend type Query {
    streams: [Stream!]!
    stream(name: String!): Stream
    streamEventSourceMappings(streamName: String, functionName: String): [StreamEventSourceMapping!]!
    """which poll invocations delivered a record, oldest first"""
    streamRecordDeliveries(streamName: String!, shardId: String!, sequenceNumber: String!): [StreamRecordDelivery!]!
  }

  extend type Mutation {
    createStream(input: StreamInput!): Stream!
    putRecord(streamName: String!, partitionKey: String!, data: String!): PutRecordResult!
    """1 … 500 records, 5 MB; all or none are written"""
    putRecords(streamName: String!, records: [PutRecordInput!]!): [PutRecordResult!]!
    createStreamEventSourceMapping(input: StreamEventSourceMappingInput!): StreamEventSourceMapping!
    updateStreamEventSourceMapping(id: ID!, input: StreamEventSourceMappingUpdate!): StreamEventSourceMapping!
    deleteStreamEventSourceMapping(id: ID!): Boolean!
  }
`;

type Args = Record<string, unknown>;
const withoutNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
const seq = (n: number) => String(n);

export const streamResolvers = {
  Stream: {
    shards: (s: Stream) => s.shards.map((h) => ({ ...h, lastSequenceNumber: seq(h.lastSequenceNumber) })),
    eventSourceMappings: (s: Stream, _: Args, ctx: GraphQLContext) => listStreamMappings(ctx.db, { streamName: s.name }),
  },
  StreamEventSourceMapping: {
    checkpoints: async (m: StreamMapping, _: Args, ctx: GraphQLContext) =>
      (await listCheckpoints(ctx.db, m.id)).map((c) => ({ shardId: c.shardId, lane: c.lane, sequenceNumber: seq(c.sequenceNumber), retryAttempts: c.retryAttempts, window: c.window })),
  },
  Query: {
    streams: (_: unknown, __: Args, ctx: GraphQLContext) => listStreams(ctx.db),
    stream: (_: unknown, args: Args, ctx: GraphQLContext) => getStream(ctx.db, args.name as string),
    streamEventSourceMappings: (_: unknown, args: Args, ctx: GraphQLContext) =>
      listStreamMappings(ctx.db, { streamName: args.streamName as string | null, functionName: args.functionName as string | null }),
    streamRecordDeliveries: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const n = Number(args.sequenceNumber);
      if (!Number.isSafeInteger(n) || n < 0) return [];
      return (await deliveriesOfRecord(ctx.db, args.streamName as string, args.shardId as string, n)).map((d) => ({
        ...d,
        firstSequenceNumber: seq(d.firstSequenceNumber),
        lastSequenceNumber: seq(d.lastSequenceNumber),
      }));
    },
  },
  Mutation: {
    createStream: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) => createStream(ctx.db, withoutNulls(args.input)),
    putRecord: async (_: unknown, args: { streamName: string; partitionKey: string; data: string }, ctx: GraphQLContext) =>
      (await putRecords(ctx.db, args.streamName, [{ partitionKey: args.partitionKey, data: args.data }]))[0],
    putRecords: (_: unknown, args: { streamName: string; records: Record<string, unknown>[] }, ctx: GraphQLContext) =>
      putRecords(ctx.db, args.streamName, args.records.map((r) => ({ ...r }))),
    createStreamEventSourceMapping: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) =>
      createStreamMapping(ctx.db, withoutNulls(args.input), changeContext(ctx)),
    updateStreamEventSourceMapping: (_: unknown, args: { id: string; input: Record<string, unknown> }, ctx: GraphQLContext) => {
      const patch = withoutNulls(args.input);
      if ('onFailure' in args.input) patch.onFailure = args.input.onFailure ?? null;
      return updateStreamMapping(ctx.db, args.id, patch, changeContext(ctx));
    },
    deleteStreamEventSourceMapping: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
      await deleteStreamMapping(ctx.db, args.id, changeContext(ctx));
      return true;
    },
  },
};
