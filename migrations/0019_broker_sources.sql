-- External brokers as event sources (docs/brokers.md): RabbitMQ queues and NATS JetStream
-- streams delivered to a function in batches. Messages stay in the broker; each batch is
-- an ordinary `poll` invocation in the ledger, and a message is acknowledged to the broker
-- only after its batch's outcome has committed here.

create table ledger.broker_mappings (
  id                          uuid primary key,
  broker                      text not null check (broker in ('rabbitmq', 'nats')),
  function_name               text not null references ledger.functions (name),
  -- the connection URL carries credentials: sealed like API keys' SigV4 secrets
  -- (AES-256-GCM under LEDGER_SECRET_KEY, additional data = the mapping id), never shown;
  -- `endpoint` is the same URL without user info, for people
  connection_format           text not null check (connection_format in ('plain', 'aes-256-gcm')),
  connection_sealed           bytea not null,
  endpoint                    text not null,
  -- rabbitmq
  virtual_host                text,
  queue                       text,
  max_delivery_count          int check (max_delivery_count between 1 and 1000),
  -- nats
  stream                      text,
  subject_filter              text,
  starting_position           text check (starting_position in ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP')),
  starting_position_timestamp timestamptz,
  max_retry_attempts          int check (max_retry_attempts between -1 and 10000),
  on_failure_queue            text references ledger.message_queues (name),
  -- shared
  batch_size                  int not null check (batch_size between 1 and 10000),
  max_batching_window_ms      int not null check (max_batching_window_ms between 0 and 300000),
  report_batch_item_failures  boolean not null,
  enabled                     boolean not null,
  -- what the worker consuming it reports: Enabled, Disabled, Connecting, Error (with a reason)
  state                       text not null default 'Creating',
  state_reason                text,
  state_changed_at            timestamptz not null default now(),
  lag                         bigint,
  lag_at                      timestamptz,
  -- one worker consumes a mapping at a time (a stream's order; batches one after another)
  consumer_worker_id          text,
  consumer_expires_at         timestamptz,
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now(),
  check ((broker = 'rabbitmq') = (queue is not null)),
  check ((broker = 'nats') = (stream is not null))
);

-- Messages a mapping's batches have processed successfully, keyed by what identifies a
-- message across redeliveries (a JetStream stream sequence; a RabbitMQ message-id). Written
-- in the transaction that records the batch's outcome: a redelivery of a message already
-- here (its ack was lost) is acknowledged without invoking again.
create table ledger.broker_messages_done (
  mapping_id     uuid not null references ledger.broker_mappings (id) on delete cascade,
  message_key    text not null,
  invocation_id  uuid not null,
  done_at        timestamptz not null default now(),
  primary key (mapping_id, message_key)
);

grant select, insert, update, delete on ledger.broker_mappings, ledger.broker_messages_done to ledger_app;
