// GraphQL for tamper evidence (docs/tamper-evidence.md): the latest signed tree head,
// inclusion proofs for an invocation's events, and consistency proofs. Type definitions
// extend the schema's Query; the resolvers only call db/tamper/proofs.ts. Sizes and leaf
// indexes are Float: GraphQL's Int stops at 2^31, a ledger need not.
import { LedgerError } from '../../../db/errors.ts';
import { consistencyProof, invocationProof } from '../../../db/tamper/proofs.ts';
import { latestTreeHead } from '../../../db/tamper/store.ts';
import type { TreeHead } from '../../../db/tamper/tree-head.ts';
import type { GraphQLContext } from './context.ts';

export const proofTypeDefs = /* GraphQL */ `
  """
  A signed statement of the ledger's Merkle tree: its size, root and time, signed with
  Ed25519. Kept outside the database by witnesses; checked with tools/verify-ledger.mjs.
  """
  type TreeHead {
    """leaves (events) in the tree; an integer"""
    treeSize: Float!
    """milliseconds since the Unix epoch, as signed"""
    timestamp: Float!
    time: DateTime!
    """hex SHA-256"""
    rootHash: String!
    """hex SHA-256 of the raw Ed25519 public key"""
    keyId: String!
    """base64 Ed25519 signature"""
    signature: String!
  }

  """The event as it is hashed into its leaf (see docs/tamper-evidence.md, "Leaf encoding")."""
  type SealedEvent {
    invocationId: ID!
    seq: Int!
    """as stored and hashed: lower case (accepted, started, …)"""
    type: String!
    attempt: Int
    """UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ"""
    occurredAt: String!
    data: JSON!
  }

  type EventInclusionProof {
    """the event's ledger position (a bigint, hence a string)"""
    position: String!
    """its leaf in the tree; an integer"""
    leafIndex: Float!
    event: SealedEvent!
    """hex SHA-256 of the leaf"""
    leafHash: String!
    """hex hashes, leaf level first (RFC 9162 §2.1.3)"""
    auditPath: [String!]!
  }

  type UncoveredEvent {
    position: String!
    seq: Int!
  }

  """Every event of an invocation, proven to be in one tree."""
  type InvocationProof {
    invocationId: ID!
    treeSize: Float!
    rootHash: String!
    """the signed head of that size (null for a size no head was signed for)"""
    treeHead: TreeHead
    events: [EventInclusionProof!]!
    """events appended after that tree: prove them against a later head"""
    notCovered: [UncoveredEvent!]!
  }

  """The tree of toSize leaves extends the tree of fromSize leaves (RFC 9162 §2.1.4)."""
  type ConsistencyProof {
    fromSize: Float!
    toSize: Float!
    fromRoot: String!
    toRoot: String!
    fromTreeHead: TreeHead
    toTreeHead: TreeHead
    proof: [String!]!
  }

  extend type Query {
    """the newest signed tree head (null before the first)"""
    treeHead: TreeHead
    """inclusion proofs for every event of an invocation; treeSize defaults to the latest signed head's"""
    invocationProof(id: ID!, treeSize: Float): InvocationProof!
    """toSize defaults to the latest signed head's"""
    consistencyProof(fromSize: Float!, toSize: Float): ConsistencyProof!
  }
`;

function treeSizeArg(v: unknown, name: string): number | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new LedgerError('InvalidParameter', `${name} must be a positive integer`);
  return v;
}

const treeHeadFields = {
  time: (h: TreeHead) => new Date(h.timestamp),
};

export const proofResolvers = {
  Query: {
    treeHead: (_: unknown, _args: unknown, ctx: GraphQLContext) => latestTreeHead(ctx.db),
    invocationProof: (_: unknown, args: { id: string; treeSize?: number | null }, ctx: GraphQLContext) =>
      invocationProof(ctx.db, args.id, treeSizeArg(args.treeSize, 'treeSize')),
    consistencyProof: (_: unknown, args: { fromSize: number; toSize?: number | null }, ctx: GraphQLContext) =>
      consistencyProof(ctx.db, treeSizeArg(args.fromSize, 'fromSize') as number, treeSizeArg(args.toSize, 'toSize')),
  },
  TreeHead: treeHeadFields,
};
