-- Durable message queues and event source mappings (poll-based invocation).
-- Messages are operational state, not ledger events: a message lives here until a
-- batch that received it succeeds (deleted) or it has been received max_receive_count
-- times (dead-lettered, kept until redriven). Each batch a mapping delivers is an
-- ordinary invocation in the ledger (invocation_type 'poll').

create table ledger.message_queues (
  name                        text primary key check (name ~ '^[A-Za-z0-9_-]{1,64}$'),
  visibility_timeout_seconds  int not null check (visibility_timeout_seconds between 0 and 43200),
  max_receive_count           int not null check (max_receive_count between 1 and 1000),
  created_at                  timestamptz not null default now()
);

create table ledger.messages (
  id                uuid primary key,
  -- send order: messages that become visible together are received in the order sent
  seq               bigint generated always as identity,
  queue_name        text not null references ledger.message_queues (name) on delete cascade,
  body              jsonb not null,
  body_bytes        int not null,
  sent_at           timestamptz not null default now(),
  -- a message is receivable when visible_at <= now() and it is not dead-lettered
  visible_at        timestamptz not null,
  receive_count     int not null default 0,
  first_received_at timestamptz,
  -- the poll invocation holding the message (SQS's receipt handle): only it may delete
  -- or return the message, so a batch that outlived the visibility timeout cannot
  -- delete a message another batch now holds
  receipt           uuid,
  dead_lettered_at  timestamptz,
  dead_letter_reason text
) with (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
-- Receives read only live messages in visibility order.
create index messages_receivable on ledger.messages (queue_name, visible_at, seq) where dead_lettered_at is null;
create index messages_dead_letters on ledger.messages (queue_name, dead_lettered_at desc, id) where dead_lettered_at is not null;

create table ledger.event_source_mappings (
  id                          uuid primary key,
  queue_name                  text not null references ledger.message_queues (name),
  function_name               text not null references ledger.functions (name),
  batch_size                  int not null check (batch_size between 1 and 10000),
  max_batching_window_ms      int not null check (max_batching_window_ms between 0 and 300000),
  report_batch_item_failures  boolean not null,
  maximum_concurrency         int check (maximum_concurrency between 2 and 1000),
  enabled                     boolean not null,
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now()
);
create index event_source_mappings_enabled on ledger.event_source_mappings (queue_name) where enabled;

-- Batches in flight: one row per poll invocation from its receive to its completion.
-- maximum_concurrency counts the unexpired rows of a mapping under the mapping's row
-- lock; a batch whose worker died stops counting when its lease expires.
create table ledger.message_batches (
  invocation_id  uuid primary key,
  mapping_id     uuid not null,
  worker_id      text not null,
  message_count  int not null,
  expires_at     timestamptz not null,
  created_at     timestamptz not null default now()
);
create index message_batches_mapping on ledger.message_batches (mapping_id, expires_at);

grant select, insert, update, delete on ledger.message_queues, ledger.messages, ledger.event_source_mappings,
  ledger.message_batches to ledger_app;
