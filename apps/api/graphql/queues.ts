// GraphQL for queues and event source mappings: type definitions that extend the
// schema's Query and Mutation, and their resolvers. Merged by ./index.ts; like the
// other resolvers they only translate to the core functions of db/queues/.
import { listDeadLetterMessages, redriveDeadLetterMessages, type Page } from '../../../db/queues/dead-letters.ts';
import { createEventSourceMapping, deleteEventSourceMapping, getEventSourceMapping, listEventSourceMappings, updateEventSourceMapping } from '../../../db/queues/mappings.ts';
import { sendMessages, type QueueMessage } from '../../../db/queues/messages.ts';
import { createQueue, getQueue, listQueues, queueCounts, type Queue, type QueueCounts } from '../../../db/queues/queues.ts';
import { chainDepthOf } from '../function-ref.ts';
import { changeContext, type GraphQLContext } from './context.ts';

export const queueTypeDefs = /* GraphQL */ `
  """A durable message queue. Event source mappings deliver its messages to functions in batches."""
  type Queue {
    name: String!
    """how long a received message stays invisible before it may be received again"""
    visibilityTimeoutSeconds: Int!
    """receives without success before a message moves to the queue's dead letters"""
    maxReceiveCount: Int!
    createdAt: DateTime!
    """messages that can be received now"""
    approximateNumberOfMessages: Int!
    """messages received and not yet deleted or returned"""
    approximateNumberOfMessagesNotVisible: Int!
    """messages sent with a delay that has not passed"""
    approximateNumberOfMessagesDelayed: Int!
    deadLetterCount: Int!
    eventSourceMappings: [EventSourceMapping!]!
  }

  input QueueInput {
    """[A-Za-z0-9_-]{1,64}"""
    name: String!
    """1 … 43200 (default 30); a mapping needs at least its function's timeout"""
    visibilityTimeoutSeconds: Int
    """1 … 1000 (default 5)"""
    maxReceiveCount: Int
  }

  type SendMessageResult {
    messageId: ID!
  }

  input SendMessageEntry {
    """any JSON, at most 256 KB"""
    body: JSON!
    """0 … 900 (default 0)"""
    delaySeconds: Int
  }

  type QueueMessage {
    messageId: ID!
    queueName: String!
    body: JSON
    sentAt: DateTime!
    receiveCount: Int!
    firstReceivedAt: DateTime
    deadLetteredAt: DateTime
    deadLetterReason: String
  }

  type QueueMessageEdge {
    cursor: String!
    node: QueueMessage!
  }

  """Newest first."""
  type QueueMessageConnection {
    edges: [QueueMessageEdge!]!
    pageInfo: PageInfo!
  }

  """Delivers a queue's messages to a function: one poll invocation per batch."""
  type EventSourceMapping {
    id: ID!
    queueName: String!
    functionName: String!
    batchSize: Int!
    maxBatchingWindowMs: Int!
    reportBatchItemFailures: Boolean!
    maximumConcurrency: Int
    enabled: Boolean!
    createdAt: DateTime!
    updatedAt: DateTime!
  }

  input EventSourceMappingInput {
    queueName: String!
    functionName: String!
    """1 … 10000 (default 10)"""
    batchSize: Int
    """0 … 300000 (default 0): how long to gather a partial batch"""
    maxBatchingWindowMs: Int
    """the function answers {batchItemFailures: [{itemIdentifier}]} and only those return (default false)"""
    reportBatchItemFailures: Boolean
    """2 … 1000 batches in flight across all workers, or null for no limit"""
    maximumConcurrency: Int
    """default true"""
    enabled: Boolean
  }

  """Fields left out keep their value; maximumConcurrency: null removes the limit."""
  input EventSourceMappingUpdate {
    functionName: String
    batchSize: Int
    maxBatchingWindowMs: Int
    reportBatchItemFailures: Boolean
    maximumConcurrency: Int
    enabled: Boolean
  }

  extend type Query {
    queues: [Queue!]!
    queue(name: String!): Queue
    """first: 1 … 1000 (default 50)"""
    queueDeadLetters(queueName: String!, first: Int, after: String): QueueMessageConnection!
    eventSourceMappings(queueName: String, functionName: String): [EventSourceMapping!]!
    eventSourceMapping(id: ID!): EventSourceMapping
  }

  extend type Mutation {
    createQueue(input: QueueInput!): Queue!
    sendMessage(queueName: String!, body: JSON!, delaySeconds: Int): SendMessageResult!
    """up to 1000 entries, 6 MB in all; all or none are sent"""
    sendMessageBatch(queueName: String!, entries: [SendMessageEntry!]!): [SendMessageResult!]!
    """returns dead letters (all, or the given ids) to the queue with a fresh receive count; answers how many"""
    redriveQueueDeadLetters(queueName: String!, messageIds: [ID!]): Int!
    createEventSourceMapping(input: EventSourceMappingInput!): EventSourceMapping!
    updateEventSourceMapping(id: ID!, input: EventSourceMappingUpdate!): EventSourceMapping!
    deleteEventSourceMapping(id: ID!): Boolean!
  }
`;

type Args = Record<string, unknown>;
type QueueWithCounts = Queue & { counts: QueueCounts };
type DeadLetterPage = Page<QueueMessage> & { after: string | null };

const withoutNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));

/** null means "the default", except maximumConcurrency where null is "no limit" */
function mappingArgs(input: Record<string, unknown>): Record<string, unknown> {
  const out = withoutNulls(input);
  if ('maximumConcurrency' in input) out.maximumConcurrency = input.maximumConcurrency ?? null;
  return out;
}

async function withCounts(ctx: GraphQLContext, queues: Queue[]): Promise<QueueWithCounts[]> {
  const counts = await queueCounts(ctx.db, queues.map((q) => q.name));
  return queues.map((q) => ({ ...q, counts: counts.get(q.name) as QueueCounts }));
}

export const queueResolvers = {
  Queue: {
    approximateNumberOfMessages: (q: QueueWithCounts) => q.counts.visible,
    approximateNumberOfMessagesNotVisible: (q: QueueWithCounts) => q.counts.inFlight,
    approximateNumberOfMessagesDelayed: (q: QueueWithCounts) => q.counts.delayed,
    deadLetterCount: (q: QueueWithCounts) => q.counts.deadLettered,
    eventSourceMappings: (q: Queue, _: Args, ctx: GraphQLContext) => listEventSourceMappings(ctx.db, { queueName: q.name }),
  },

  QueueMessage: {
    messageId: (m: QueueMessage) => m.id,
  },

  QueueMessageConnection: {
    pageInfo: (p: DeadLetterPage) => ({
      hasNextPage: p.hasNextPage,
      hasPreviousPage: p.after !== null,
      startCursor: p.edges[0]?.cursor ?? null,
      endCursor: p.edges.at(-1)?.cursor ?? null,
    }),
  },

  Query: {
    queues: async (_: unknown, __: Args, ctx: GraphQLContext) => withCounts(ctx, await listQueues(ctx.db)),
    queue: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const q = await getQueue(ctx.db, args.name as string);
      return q ? (await withCounts(ctx, [q]))[0] : null;
    },
    queueDeadLetters: async (_: unknown, args: Args, ctx: GraphQLContext): Promise<DeadLetterPage> => {
      const after = (args.after as string | null | undefined) ?? null;
      const page = await listDeadLetterMessages(ctx.db, args.queueName as string, { first: args.first as number | null, after });
      return { ...page, after };
    },
    eventSourceMappings: (_: unknown, args: Args, ctx: GraphQLContext) =>
      listEventSourceMappings(ctx.db, { queueName: args.queueName as string | null, functionName: args.functionName as string | null }),
    eventSourceMapping: (_: unknown, args: Args, ctx: GraphQLContext) => getEventSourceMapping(ctx.db, args.id as string),
  },

  Mutation: {
    createQueue: async (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) =>
      (await withCounts(ctx, [await createQueue(ctx.db, withoutNulls(args.input))]))[0],
    sendMessage: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const [messageId] = await sendMessages(
        ctx.db,
        args.queueName as string,
        [withoutNulls({ body: args.body, delaySeconds: args.delaySeconds })],
        { chainDepth: chainDepthOf(ctx.request.headers) },
      );
      return { messageId };
    },
    sendMessageBatch: async (_: unknown, args: { queueName: string; entries: Record<string, unknown>[] }, ctx: GraphQLContext) => {
      const ids = await sendMessages(
        ctx.db,
        args.queueName,
        args.entries.map((e) => ({ ...withoutNulls(e), body: e.body })),
        { chainDepth: chainDepthOf(ctx.request.headers) },
      );
      return ids.map((messageId) => ({ messageId }));
    },
    redriveQueueDeadLetters: (_: unknown, args: { queueName: string; messageIds?: string[] | null }, ctx: GraphQLContext) =>
      redriveDeadLetterMessages(ctx.db, args.queueName, args.messageIds ?? null),
    createEventSourceMapping: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) =>
      createEventSourceMapping(ctx.db, mappingArgs(args.input), changeContext(ctx)),
    updateEventSourceMapping: (_: unknown, args: { id: string; input: Record<string, unknown> }, ctx: GraphQLContext) =>
      updateEventSourceMapping(ctx.db, args.id, mappingArgs(args.input), changeContext(ctx)),
    deleteEventSourceMapping: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
      await deleteEventSourceMapping(ctx.db, args.id, changeContext(ctx));
      return true;
    },
  },
};
