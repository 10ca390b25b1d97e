-- ParallelizationFactor for stream mappings (docs/streams.md): up to 10 batches of one
-- shard at once. The shard's partition keys are split into `parallelization_factor` lanes
-- by their MD5 (ledger.stream_lane); each lane has its own checkpoint and runs one batch
-- at a time, so the records of a key stay in order. A batch delivers only its lane's
-- records, so it lists the sequence numbers it delivered.

alter table ledger.stream_mappings
  add column parallelization_factor int not null default 1 check (parallelization_factor between 1 and 10);

alter table ledger.stream_checkpoints add column lane int not null default 0 check (lane between 0 and 9);
alter table ledger.stream_checkpoints drop constraint stream_checkpoints_pkey;
alter table ledger.stream_checkpoints add primary key (mapping_id, shard_id, lane);

alter table ledger.stream_batches add column lane int not null default 0;
alter table ledger.stream_batches add column sequence_numbers bigint[];
alter table ledger.stream_checkpoint_moves add column lane int not null default 0;

-- The lane of a partition key: the first 4 bytes of its MD5, as a non-negative integer,
-- modulo the mapping's factor. The same in db/streams.ts (laneOf).
create function ledger.stream_lane(partition_key text, lanes int) returns int
language sql immutable strict parallel safe
return ((('x' || left(md5(partition_key), 8))::bit(32)::int & 2147483647) % lanes);

-- A batch of a lane delivered its listed records, not every record of its range.
create or replace view audit.stream_deliveries as
select
  b.stream_name,
  b.shard_id,
  b.first_sequence_number,
  b.last_sequence_number,
  b.record_count,
  b.mapping_id,
  b.invocation_id,
  i.function_name,
  i.status,
  i.error_type,
  b.created_at as delivered_at,
  m.reason as checkpoint_reason,
  m.to_sequence_number as checkpoint_to,
  b.lane,
  b.sequence_numbers
from ledger.stream_batches b
join ledger.invocations i on i.id = b.invocation_id
left join ledger.stream_checkpoint_moves m on m.invocation_id = b.invocation_id;
