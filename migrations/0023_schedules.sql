-- Schedules (docs/schedules.md): EventBridge Scheduler definitions, and the ledger of
-- their ticks. A tick is decided exactly once: the primary key (schedule_id,
-- scheduled_time) refuses a second decision, and a fired tick's row is written in the
-- same transaction as its invocation's `accepted` event, so however many workers run,
-- a tick produces one invocation or none.
create table ledger.schedules (
  -- immutable identity: seeds flexible offsets, execution ids and idempotency keys, so a
  -- schedule deleted and created again under its name is another schedule
  id                     uuid primary key,
  group_name             text not null default 'default' check (group_name ~ '^[0-9a-zA-Z_.-]{1,64}$'),
  name                   text not null check (name ~ '^[0-9a-zA-Z_.-]{1,64}$'),
  description            text check (length(description) <= 512),
  expression             text not null check (length(expression) between 1 and 256),
  timezone               text not null default 'UTC',
  start_date             timestamptz,
  end_date               timestamptz,
  state                  text not null default 'ENABLED' check (state in ('ENABLED', 'DISABLED')),
  flexible_window_minutes int check (flexible_window_minutes between 1 and 1440), -- null: Mode OFF
  -- the target: a function, a version number or null for $LATEST, and the Input text
  target_function        text not null,
  target_qualifier       text,
  target_input           text,
  target_role_arn        text,
  max_retry_attempts     int not null default 185 check (max_retry_attempts between 0 and 185),
  max_event_age_seconds  int not null default 86400 check (max_event_age_seconds between 60 and 86400),
  dead_letter_arn        text,
  misfire_mode           text not null default 'once' check (misfire_mode in ('skip', 'once', 'all')),
  max_catch_up           int check (max_catch_up between 1 and 1000),
  action_after_completion text not null default 'NONE' check (action_after_completion in ('NONE', 'DELETE')),
  -- the anchor of a rate() without StartDate: when this definition became active
  active_since           timestamptz not null,
  -- every tick up to and including this instant is decided (fired or skipped)
  decided_through        timestamptz not null,
  -- when the scheduler should look at it next (the next tick's fire time); null: no tick left
  next_fire_at           timestamptz,
  created_at             timestamptz not null default statement_timestamp(),
  updated_at             timestamptz not null default statement_timestamp(),
  unique (group_name, name),
  check ((misfire_mode = 'all') = (max_catch_up is not null))
);
-- the scheduler reads only schedules with a tick to decide, earliest first
create index schedules_due on ledger.schedules (next_fire_at) where next_fire_at is not null;

-- One row per tick, fired or skipped; immutable like the events.
create table ledger.schedule_ticks (
  schedule_id        uuid not null,
  schedule_name      text not null,
  group_name         text not null,
  scheduled_time     timestamptz not null,
  outcome            text not null check (outcome in ('fired', 'skipped')),
  skip_reason        text check (skip_reason in ('misfire_skip', 'misfire_coalesced', 'misfire_cap', 'disabled',
                                                  'end_date', 'updated', 'target_missing')),
  -- scheduled_time + flexible_offset_ms: when it was due to fire
  fire_at            timestamptz,
  flexible_offset_ms int not null default 0 check (flexible_offset_ms >= 0),
  -- fired after the misfire grace period (a catch-up run after downtime)
  late               boolean not null default false,
  invocation_id      uuid,
  execution_id       text,
  -- the scheduler's clock when it decided the tick (docs/schedules.md, "The scheduler's clock")
  decided_at         timestamptz not null,
  decided_by         text not null,
  recorded_at        timestamptz not null default statement_timestamp(),
  tx_id              xid8 not null default pg_current_xact_id(),
  primary key (schedule_id, scheduled_time),
  check ((outcome = 'fired') = (invocation_id is not null)),
  check ((outcome = 'skipped') = (skip_reason is not null))
);
create index schedule_ticks_by_name on ledger.schedule_ticks (group_name, schedule_name, scheduled_time);
create index schedule_ticks_invocation on ledger.schedule_ticks (invocation_id) where invocation_id is not null;

create trigger schedule_ticks_no_update before update on ledger.schedule_ticks
  for each statement execute function ledger.refuse_mutation();
create trigger schedule_ticks_no_delete before delete on ledger.schedule_ticks
  for each statement execute function ledger.refuse_mutation();
create trigger schedule_ticks_no_truncate before truncate on ledger.schedule_ticks
  for each statement execute function ledger.refuse_mutation();

-- The scheduler's clock is the database's plus this offset (0 in production). Tests move
-- it forward to run hours of ticks in seconds; an operator can read it in audit.schedule_ticks
-- (decided_at against recorded_at).
create table ledger.scheduler_clock (
  only_row   boolean primary key default true check (only_row),
  offset_ms  bigint not null default 0
);
insert into ledger.scheduler_clock default values;

grant select, insert, update, delete on ledger.schedules to ledger_app;
grant select, insert on ledger.schedule_ticks to ledger_app;
grant select, update on ledger.scheduler_clock to ledger_app;
revoke update, delete, truncate on ledger.schedule_ticks from public;

-- Every tick of every schedule, with the invocation it produced and how that ended.
create view audit.schedule_ticks as
select
  t.group_name,
  t.schedule_name,
  t.schedule_id,
  t.scheduled_time,
  t.outcome,
  t.skip_reason,
  t.fire_at,
  t.flexible_offset_ms,
  t.late,
  t.invocation_id,
  t.execution_id,
  t.decided_at,
  t.decided_by,
  t.recorded_at,
  i.status as invocation_status,
  t.tx_id
from ledger.schedule_ticks t
left join ledger.invocations i on i.id = t.invocation_id;

grant select on audit.schedule_ticks to ledger_auditor, ledger_app;
