-- Tamper evidence (docs/tamper-evidence.md): every event becomes a leaf of an RFC 6962
-- Merkle tree, in the order (tx_id, position) that no late commit can change, and the
-- tree's root is signed now and then (Ed25519) and published outside the database.
--
-- Storage gives O(log n) proofs without recomputing the tree: leaf hashes are kept in
-- blocks of 16 (one row per 16 events, with the block's subtree root), and the roots of
-- complete subtrees of 256, 4096, … leaves in merkle_nodes. Any complete subtree's root
-- is then at most 8 stored hashes away. The leaves of the last, unfinished block live in
-- seal_state until the block fills.

-- What is sealed: the cursor, the tree's size and root, and the unfinished block.
-- One row. One sealer at a time: a process holds the lease (lease_holder until
-- lease_until, taken and renewed by a plain UPDATE, so it works behind PgBouncer in
-- transaction mode), reads and hashes outside any transaction, and writes in a short one
-- that locks this row and checks tree_size is still what it started from: a sealer whose
-- lease ran out meanwhile writes nothing.
create table ledger.seal_state (
  singleton       boolean primary key default true check (singleton),
  tree_size       bigint not null default 0 check (tree_size >= 0),
  -- the last sealed event in (tx_id, position) order
  last_tx_id      xid8 not null default '0',
  last_position   bigint not null default 0,
  root_hash       bytea not null default sha256(''::bytea) check (length(root_hash) = 32),
  -- leaves of the unfinished block: tree_size % 16 of them
  tail_positions  bigint[] not null default '{}',
  tail_hashes     bytea not null default ''::bytea,
  sealed_by       text,
  sealed_at       timestamptz,
  lease_holder    text,
  lease_until     timestamptz,
  check (cardinality(tail_positions) = tree_size % 16 and length(tail_hashes) = 32 * (tree_size % 16))
);
insert into ledger.seal_state default values;

-- Leaves [16 * block_index, 16 * block_index + 16): positions and SHA-256 leaf hashes in
-- leaf order, and the root of those 16 leaves. (last_tx_id, last_position) finds the
-- block of an event in O(log n).
create table ledger.merkle_leaf_blocks (
  block_index    bigint primary key check (block_index >= 0),
  last_tx_id     xid8 not null,
  last_position  bigint not null,
  positions      bigint[] not null check (cardinality(positions) = 16),
  leaf_hashes    bytea not null check (length(leaf_hashes) = 512),
  root_hash      bytea not null check (length(root_hash) = 32)
);
-- hashes do not compress: keep them out of pglz's way
alter table ledger.merkle_leaf_blocks alter column leaf_hashes set storage external;
create index merkle_leaf_blocks_last on ledger.merkle_leaf_blocks (last_tx_id, last_position);

-- Roots of complete subtrees at levels 8, 12, 16, …: node (level, node_index) covers
-- leaves [node_index * 2^level, (node_index + 1) * 2^level).
create table ledger.merkle_nodes (
  level       smallint not null check (level >= 8 and level % 4 = 0),
  node_index  bigint not null check (node_index >= 0),
  hash        bytea not null check (length(hash) = 32),
  primary key (level, node_index)
);

-- Signed tree heads, as published to the witnesses.
create table ledger.tree_heads (
  id            bigint generated always as identity primary key,
  tree_size     bigint not null check (tree_size >= 0),
  timestamp_ms  bigint not null,
  root_hash     bytea not null check (length(root_hash) = 32),
  key_id        text not null,
  signature     bytea not null check (length(signature) = 64),
  created_at    timestamptz not null default now()
);
create index tree_heads_size on ledger.tree_heads (tree_size, id);

-- The record is append-only like the events (a superuser can still rewrite it: that is
-- what the signed heads outside the database are for).
create trigger merkle_leaf_blocks_immutable before update or delete or truncate on ledger.merkle_leaf_blocks
  for each statement execute function ledger.refuse_mutation();
create trigger merkle_nodes_immutable before update or delete or truncate on ledger.merkle_nodes
  for each statement execute function ledger.refuse_mutation();
create trigger tree_heads_immutable before update or delete or truncate on ledger.tree_heads
  for each statement execute function ledger.refuse_mutation();
create trigger seal_state_kept before delete or truncate on ledger.seal_state
  for each statement execute function ledger.refuse_mutation();

grant select, insert on ledger.merkle_leaf_blocks, ledger.merkle_nodes, ledger.tree_heads to ledger_app;
grant select, update on ledger.seal_state to ledger_app;

-- For auditors (docs/tamper-evidence.md): the signed heads, and the sealer's record of
-- every leaf (leaf_index, position, leaf_hash), which the verifier uses to name what
-- changed once the record itself reproduces a signed root.
create view audit.tree_heads as
select id, tree_size, timestamp_ms, encode(root_hash, 'hex') as root_hash, key_id,
       encode(signature, 'base64') as signature, created_at
from ledger.tree_heads;

create view audit.merkle_leaves as
select b.block_index * 16 + o.i - 1 as leaf_index, o.position,
       substring(b.leaf_hashes from (o.i::int - 1) * 32 + 1 for 32) as leaf_hash
from ledger.merkle_leaf_blocks b, unnest(b.positions) with ordinality as o(position, i)
union all
select s.tree_size - cardinality(s.tail_positions) + o.i - 1, o.position,
       substring(s.tail_hashes from (o.i::int - 1) * 32 + 1 for 32)
from ledger.seal_state s, unnest(s.tail_positions) with ordinality as o(position, i);

grant select on audit.tree_heads, audit.merkle_leaves to ledger_auditor, ledger_app;
