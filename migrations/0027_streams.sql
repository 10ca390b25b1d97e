-- Native streams with Kinesis semantics (docs/streams.md): a stream has a fixed number of
-- shards, each owning a range of the 128-bit MD5 space of partition keys; records are
-- numbered per shard in commit order and kept for the stream's retention. Stream event
-- source mappings read each shard in order from a checkpoint. Records and the history of
-- batches and checkpoint moves are append-only for the application; records past
-- retention are deleted by the worker's upkeep.

create table ledger.streams (
  name             text primary key check (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
  shard_count      int not null check (shard_count between 1 and 64),
  retention_hours  int not null check (retention_hours between 1 and 8760),
  created_at       timestamptz not null default now()
);

create table ledger.stream_shards (
  stream_name          text not null references ledger.streams (name) on delete cascade,
  shard_id             text not null check (shard_id ~ '^shardId-[0-9]{12}$'),
  -- the shard's inclusive range of MD5(partition key) as an unsigned 128-bit integer
  starting_hash_key    numeric(39, 0) not null,
  ending_hash_key      numeric(39, 0) not null,
  -- the last sequence number handed out: a put locks the shard's row and counts on from
  -- here, so within a shard sequence numbers increase in commit order (a reader that has
  -- seen n never meets a later-committing record below n)
  last_sequence_number bigint not null default 0,
  primary key (stream_name, shard_id),
  check (starting_hash_key <= ending_hash_key)
);

create table ledger.stream_records (
  stream_name      text not null,
  shard_id         text not null,
  sequence_number  bigint not null,
  partition_key    text not null check (char_length(partition_key) between 1 and 256),
  data             bytea not null,
  arrived_at       timestamptz not null default now(),
  primary key (stream_name, shard_id, sequence_number),
  foreign key (stream_name, shard_id) references ledger.stream_shards on delete cascade
);
create index stream_records_arrival on ledger.stream_records (stream_name, arrived_at);

create function ledger.guard_stream_record() returns trigger
language plpgsql as $$
begin
  raise exception 'ledger.stream_records: a record is never changed (stream %, shard %, sequence %)', old.stream_name, old.shard_id, old.sequence_number
    using errcode = 'insufficient_privilege', hint = 'records are only appended, and deleted past the stream''s retention';
end $$;
create trigger stream_records_immutable before update on ledger.stream_records
  for each row execute function ledger.guard_stream_record();

create table ledger.stream_mappings (
  id                             uuid primary key,
  stream_name                    text not null references ledger.streams (name),
  function_name                  text not null references ledger.functions (name),
  starting_position              text not null check (starting_position in ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP')),
  starting_position_timestamp    timestamptz,
  batch_size                     int not null check (batch_size between 1 and 10000),
  max_batching_window_ms         int not null check (max_batching_window_ms between 0 and 300000),
  maximum_retry_attempts         int not null check (maximum_retry_attempts between -1 and 10000),
  maximum_record_age_seconds     int not null check (maximum_record_age_seconds = -1 or maximum_record_age_seconds between 60 and 604800),
  bisect_batch_on_function_error boolean not null,
  report_batch_item_failures     boolean not null,
  -- `function:<name>` or an http(s) URL, as a function's onFailure (docs/worker.md)
  on_failure_destination         text,
  enabled                        boolean not null,
  created_at                     timestamptz not null default now(),
  updated_at                     timestamptz not null default now(),
  check ((starting_position = 'AT_TIMESTAMP') = (starting_position_timestamp is not null))
);

-- Where a mapping is in a shard: every record up to sequence_number is done (processed,
-- or sent to the on-failure destination). Operational state, one row per mapping and
-- shard, made when the mapping is created (LATEST: at the shard's last sequence number).
-- While a batch runs, its poll invocation holds the shard until held_until; a failed
-- batch leaves the range to retry (retry_last_sequence_number: bisected halves) and
-- when to try again.
create table ledger.stream_checkpoints (
  mapping_id                  uuid not null references ledger.stream_mappings (id) on delete cascade,
  stream_name                 text not null,
  shard_id                    text not null,
  sequence_number             bigint not null,
  held_by                     uuid,
  held_until                  timestamptz,
  retry_attempts              int not null default 0,
  retry_last_sequence_number  bigint,
  retry_at                    timestamptz,
  updated_at                  timestamptz not null default now(),
  primary key (mapping_id, shard_id),
  foreign key (stream_name, shard_id) references ledger.stream_shards on delete cascade
);

-- One row per poll invocation of a stream mapping: the records it delivered. Written in
-- the transaction that accepts the invocation.
create table ledger.stream_batches (
  invocation_id           uuid primary key,
  mapping_id              uuid not null,
  stream_name             text not null,
  shard_id                text not null,
  first_sequence_number   bigint not null,
  last_sequence_number    bigint not null,
  record_count            int not null,
  created_at              timestamptz not null default now()
);
create index stream_batches_range on ledger.stream_batches (stream_name, shard_id, first_sequence_number);

-- Every move of a checkpoint, written in the transaction that records the batch's
-- outcome: from where to where, which invocation moved it, and why (`processed`,
-- `partial`: up to the record before the lowest reported failure, `on_failure`: the
-- batch went to the on-failure destination).
create table ledger.stream_checkpoint_moves (
  id                    bigint generated always as identity primary key,
  mapping_id            uuid not null,
  stream_name           text not null,
  shard_id              text not null,
  invocation_id         uuid not null,
  from_sequence_number  bigint not null,
  to_sequence_number    bigint not null,
  reason                text not null check (reason in ('processed', 'partial', 'on_failure')),
  moved_at              timestamptz not null default now(),
  check (to_sequence_number > from_sequence_number)
);
create index stream_checkpoint_moves_invocation on ledger.stream_checkpoint_moves (invocation_id);

create trigger stream_batches_append_only before update or delete on ledger.stream_batches
  for each row execute function ledger.refuse_mutation();
create trigger stream_batches_no_truncate before truncate on ledger.stream_batches
  for each statement execute function ledger.refuse_mutation();
create trigger stream_checkpoint_moves_append_only before update or delete on ledger.stream_checkpoint_moves
  for each row execute function ledger.refuse_mutation();
create trigger stream_checkpoint_moves_no_truncate before truncate on ledger.stream_checkpoint_moves
  for each statement execute function ledger.refuse_mutation();

grant select, insert, delete on ledger.streams to ledger_app;
grant select, insert, update (last_sequence_number) on ledger.stream_shards to ledger_app;
grant select, insert, delete on ledger.stream_records to ledger_app;
grant select, insert, update, delete on ledger.stream_mappings, ledger.stream_checkpoints to ledger_app;
grant select, insert on ledger.stream_batches, ledger.stream_checkpoint_moves to ledger_app;

-- "Which invocation processed record X, and how often": every batch with the records it
-- delivered, how its invocation ended and how far it moved the checkpoint.
--   select * from audit.stream_deliveries
--   where stream_name = 'orders' and shard_id = 'shardId-000000000000' and 42 between first_sequence_number and last_sequence_number;
create view audit.stream_deliveries as
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
  m.to_sequence_number as checkpoint_to
from ledger.stream_batches b
join ledger.invocations i on i.id = b.invocation_id
left join ledger.stream_checkpoint_moves m on m.invocation_id = b.invocation_id;

grant select on audit.stream_deliveries to ledger_auditor, ledger_app;
