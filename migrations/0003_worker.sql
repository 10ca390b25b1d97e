-- The async engine's operational tables: the destination outbox, and an index that lets
-- claims count a limited function's running attempts without scanning the queue.

-- reservedConcurrency: running attempts of a function are its leased queue rows.
create index if not exists queue_function_running on ledger.queue (function_name) where locked_by is not null;

-- Destination deliveries (onSuccess / onFailure). A row is written in the same transaction
-- as the terminal event that caused it, so a committed outcome always has its delivery
-- intent. `function:` destinations are accepted as async invocations in that same
-- transaction (status 'delivered' at once, target_invocation_id set); URL destinations
-- are POSTed by any worker, with retries, until 'delivered' or 'failed'.
create table ledger.destination_deliveries (
  id                    bigint generated always as identity primary key,
  invocation_id         uuid not null,
  invoke_count          int not null,
  condition             text not null check (condition in ('Success', 'RetriesExhausted', 'EventAgeExceeded', 'ZeroReservedConcurrency')),
  destination           text not null,
  record                jsonb not null,
  status                text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts              int not null default 0,
  last_error            text,
  last_status_code      int,
  target_invocation_id  uuid,
  next_attempt_at       timestamptz not null default now(),
  created_at            timestamptz not null default now(),
  delivered_at          timestamptz,
  unique (invocation_id, invoke_count, destination)
);
create index destination_deliveries_due on ledger.destination_deliveries (next_attempt_at) where status = 'pending';
create index destination_deliveries_invocation on ledger.destination_deliveries (invocation_id);

grant select, insert, update, delete on ledger.destination_deliveries to ledger_app;
