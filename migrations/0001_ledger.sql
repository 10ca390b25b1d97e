-- The ledger: immutable events, the projections written beside them, and the
-- hot queue table that async work leaves as soon as it is terminal.
create schema if not exists ledger;

-- Roles are cluster-wide, so several databases may be migrated at the same time:
-- tolerate the role appearing between our check and our CREATE.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'ledger_app') then
    begin
      create role ledger_app nologin;
    exception when duplicate_object or unique_violation then null;
    end;
  end if;
end $$;

create function ledger.refuse_mutation() returns trigger
language plpgsql as $$
begin
  raise exception '%.% is append-only: % is not allowed', tg_table_schema, tg_table_name, tg_op
    using errcode = 'insufficient_privilege',
          hint = 'events are never changed; append a new event instead';
end $$;

-- Function registry: a name points at its latest immutable version.
create table ledger.functions (
  name            text primary key check (name ~ '^[A-Za-z0-9_-]{1,64}$'),
  latest_version  int not null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  deleted_at      timestamptz
);

-- Versions are immutable like events: an invocation records the version it ran with.
create table ledger.function_versions (
  name        text not null references ledger.functions (name),
  version     int not null check (version >= 1),
  config      jsonb not null,
  created_at  timestamptz not null default now(),
  primary key (name, version)
);

create trigger function_versions_immutable before update or delete or truncate on ledger.function_versions
  for each statement execute function ledger.refuse_mutation();

-- Concurrency slots: one row per function with reservedConcurrency, so claims can
-- count running attempts under a row lock instead of racing on count(*).
create table ledger.function_concurrency (
  name      text primary key references ledger.functions (name),
  reserved  int not null check (reserved >= 0),
  running   int not null default 0 check (running >= 0)
);

create table ledger.events (
  position       bigint generated always as identity primary key,
  invocation_id  uuid not null,
  seq            int not null check (seq >= 1),
  type           text not null check (type in ('accepted', 'started', 'failed', 'retried',
                                               'succeeded', 'dead_lettered', 'cancelled', 'redriven')),
  attempt        int check (attempt >= 1),
  data           jsonb not null default '{}',
  -- the statement's time, not the transaction's: a READ COMMITTED statement can see rows
  -- committed after its transaction began, and its own events must not predate them
  occurred_at    timestamptz not null default statement_timestamp(),
  tx_id          xid8 not null default pg_current_xact_id(),
  unique (invocation_id, seq),
  -- the first event of every invocation is `accepted`, and only the first
  check ((seq = 1) = (type = 'accepted'))
);
create index events_tx_order on ledger.events (tx_id, position);

-- Immutability, enforced for every role including the owner: statement-level
-- triggers fire even when no row matches.

create trigger events_no_update before update on ledger.events
  for each statement execute function ledger.refuse_mutation();
create trigger events_no_delete before delete on ledger.events
  for each statement execute function ledger.refuse_mutation();
create trigger events_no_truncate before truncate on ledger.events
  for each statement execute function ledger.refuse_mutation();

-- seq has no gap: every event after the first follows an existing event of the same
-- invocation. One query per INSERT statement (transition table), not per row.
create function ledger.check_event_seq() returns trigger
language plpgsql as $$
declare
  bad record;
begin
  select n.invocation_id, n.seq into bad
  from new_events n
  where n.seq > 1
    and not exists (select 1 from ledger.events e
                    where e.invocation_id = n.invocation_id and e.seq = n.seq - 1)
  limit 1;
  if found then
    raise exception 'ledger.events: seq % of invocation % leaves a gap', bad.seq, bad.invocation_id
      using errcode = 'check_violation';
  end if;
  return null;
end $$;

create trigger events_seq_contiguous after insert on ledger.events
  referencing new table as new_events
  for each statement execute function ledger.check_event_seq();

-- The writer folds events before it knows the statement's clock and sends 'infinity' for
-- "when this statement runs", the same instant as the events' occurred_at.
create function ledger.at_statement(t timestamptz) returns timestamptz
language sql stable as $$ select case when t = 'infinity' then statement_timestamp() else t end $$;

-- Projection: one row per invocation, folded from its events by the writer.
create table ledger.invocations (
  id                uuid primary key,
  function_name     text not null,
  function_version  int not null,
  invocation_type   text not null check (invocation_type in ('sync', 'async', 'poll')),
  status            text not null check (status in ('queued', 'running', 'retry_scheduled', 'succeeded',
                                                     'failed', 'dead_lettered', 'cancelled')),
  attempts          int not null default 0,
  failures_since_redrive int not null default 0,
  last_seq          int not null,
  last_event_type   text not null,
  idempotency_key   text,
  error_type        text,
  dead_letter_reason text,
  accepted_at       timestamptz not null,
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz not null
);
create index invocations_function_accepted on ledger.invocations (function_name, accepted_at desc);
create index invocations_accepted on ledger.invocations (accepted_at desc, id desc);
create index invocations_dead_letters on ledger.invocations (function_name, finished_at desc) where status = 'dead_lettered';

-- Hot table: only non-terminal invocations live here. Rows are updated on every
-- attempt, so leave room for HOT updates and vacuum it eagerly.
create table ledger.queue (
  invocation_id     uuid primary key,
  function_name     text not null,
  function_version  int not null,
  invocation_type   text not null,
  attempt           int not null default 0,      -- last attempt started
  run_at            timestamptz not null,
  accepted_at       timestamptz not null,
  locked_by         text,
  lease_expires_at  timestamptz
) with (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
-- Claims read only runnable rows: unlocked async/poll work ordered by due time.
create index queue_runnable on ledger.queue (run_at) where locked_by is null;
create index queue_leases on ledger.queue (lease_expires_at) where locked_by is not null;

-- Idempotency: first invocation per (function, key) for 24 hours.
create table ledger.idempotency_keys (
  function_name  text not null,
  key            text not null,
  invocation_id  uuid not null,
  expires_at     timestamptz not null,
  primary key (function_name, key)
);
create index idempotency_expiry on ledger.idempotency_keys (expires_at);

-- What each attempt printed (context.log); the last 4 KB is what Tail returns.
create table ledger.attempt_logs (
  invocation_id  uuid not null,
  attempt        int not null,
  log            text not null,
  primary key (invocation_id, attempt)
);

grant usage on schema ledger to ledger_app;
grant select, insert on ledger.events to ledger_app;
grant select, insert on ledger.function_versions to ledger_app;
grant select, insert, update, delete on ledger.invocations, ledger.queue, ledger.idempotency_keys,
  ledger.attempt_logs, ledger.functions, ledger.function_concurrency to ledger_app;
revoke update, delete, truncate on ledger.events from public;
