-- The SQL audit surface (ledger.md §4): read-only views over the ledger in schema
-- `audit`, read by role `ledger_auditor`. The views run with their owner's rights (no
-- security_invoker), so the auditor needs no privilege on `ledger.*` and sees only
-- what the views show. docs/audit.md is the cookbook; test/audit runs every query in it.
create schema if not exists audit;

-- Roles are cluster-wide, so several databases may be migrated at the same time:
-- tolerate the role appearing between our check and our CREATE (as 0001 does).
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'ledger_auditor') then
    begin
      create role ledger_auditor nologin;
    exception when duplicate_object or unique_violation then null;
    end;
  end if;
end $$;

-- One row per invocation: the projection, plus the last attempt's duration and error
-- message read from its events (scalar subqueries: only computed when selected).
create view audit.invocations as
select
  i.id,
  i.function_name,
  i.function_version,
  i.invocation_type,
  i.status,
  i.attempts,
  i.accepted_at,
  i.finished_at,
  -- the handler's duration in the last finished attempt (durationMs of succeeded/failed)
  (select (e.data ->> 'durationMs')::numeric from ledger.events e
    where e.invocation_id = i.id and e.type in ('succeeded', 'failed')
    order by e.seq desc limit 1) as duration_ms,
  i.error_type,
  case when i.error_type is not null then
    (select e.data -> 'error' ->> 'errorMessage' from ledger.events e
      where e.invocation_id = i.id and e.type = 'failed'
      order by e.seq desc limit 1)
  end as error_message,
  i.dead_letter_reason,
  i.idempotency_key,
  i.started_at,
  -- wall time from accept to the terminal event, retries and queueing included
  round(extract(epoch from i.finished_at - i.accepted_at) * 1000, 1) as total_ms,
  i.updated_at
from ledger.invocations i;

-- The timeline: every event, with the fields auditors filter on lifted out of `data`
-- (the same expressions as the indexes below, so filters on them use the indexes).
create view audit.invocation_events as
select
  e.position,
  e.invocation_id,
  e.seq,
  e.type,
  e.attempt,
  e.occurred_at,
  e.data,
  e.data -> 'error' ->> 'errorType' as error_type,
  (e.data ->> 'durationMs')::numeric as duration_ms,
  e.data ->> 'workerId' as worker_id,
  e.tx_id
from ledger.events e;

-- One row per time an invocation was dead-lettered (a redriven invocation can be
-- dead-lettered again), with the last error before it and the redrive that followed,
-- if any. Only `redriven` may follow `dead_lettered`, so the redrive is the next seq.
create view audit.dead_letters as
select
  d.invocation_id,
  i.function_name,
  i.function_version,
  i.invocation_type,
  d.occurred_at as dead_lettered_at,
  d.data ->> 'reason' as reason,
  f.data -> 'error' ->> 'errorType' as error_type,
  f.data -> 'error' ->> 'errorMessage' as error_message,
  coalesce(f.attempt, 0) as attempts,
  r.seq is not null as redriven,
  r.occurred_at as redriven_at,
  r.data ->> 'by' as redriven_by,
  i.status as current_status,
  d.seq
from ledger.events d
join ledger.invocations i on i.id = d.invocation_id
left join lateral (
  select f.attempt, f.data from ledger.events f
  where f.invocation_id = d.invocation_id and f.seq < d.seq and f.type = 'failed'
  order by f.seq desc limit 1
) f on true
left join ledger.events r on r.invocation_id = d.invocation_id and r.seq = d.seq + 1 and r.type = 'redriven'
where d.type = 'dead_lettered';

-- Per function and UTC hour of the events: what happened in that hour. `hour` is
-- date_bin (immutable, unlike date_trunc on timestamptz), so a filter on it is pushed
-- below the GROUP BY and served by the BRIN index on the same expression.
create view audit.function_stats_hourly as
select
  i.function_name,
  date_bin('1 hour', e.occurred_at, timestamptz '2000-01-01 00:00:00+00') as hour,
  count(*) filter (where e.type = 'accepted') as invocations,
  count(*) filter (where e.type = 'started') as attempts,
  count(*) filter (where e.type = 'succeeded') as succeeded,
  count(*) filter (where e.type = 'failed') as failed_attempts,
  count(*) filter (where e.type = 'retried') as retries,
  count(*) filter (where e.type = 'dead_lettered') as dead_lettered,
  count(*) filter (where e.type = 'cancelled') as cancelled,
  count(*) filter (where e.type = 'redriven') as redriven,
  round(percentile_cont(0.5) within group (order by (e.data ->> 'durationMs')::float8)
    filter (where e.type in ('succeeded', 'failed'))::numeric, 1) as p50_duration_ms,
  round(percentile_cont(0.95) within group (order by (e.data ->> 'durationMs')::float8)
    filter (where e.type in ('succeeded', 'failed'))::numeric, 1) as p95_duration_ms,
  round(max((e.data ->> 'durationMs')::numeric) filter (where e.type in ('succeeded', 'failed')), 1) as max_duration_ms
from ledger.events e
join ledger.invocations i on i.id = e.invocation_id
group by 1, 2;

-- Indexes for the cookbook at 10M events. One invocation's timeline is served by the
-- unique (invocation_id, seq) index of 0001, a function's recent invocations by
-- invocations (function_name, accepted_at). Partial indexes cover only the rare event
-- types, and BRIN indexes (events are appended in time order) cost the writer almost
-- nothing, so the append path keeps its speed.
create index events_failed_at on ledger.events (occurred_at) where type = 'failed';
create index events_failed_error_type on ledger.events ((data -> 'error' ->> 'errorType'), occurred_at) where type = 'failed';
create index events_dead_lettered_at on ledger.events (occurred_at) where type = 'dead_lettered';
create index events_redriven_at on ledger.events (occurred_at) where type = 'redriven';
create index events_occurred_brin on ledger.events using brin (occurred_at);
create index events_hour_brin on ledger.events
  using brin (date_bin('1 hour', occurred_at, timestamptz '2000-01-01 00:00:00+00'));
create index invocations_dead_letters_error on ledger.invocations (error_type, finished_at desc) where status = 'dead_lettered';
-- unfinished work, however old: small, since invocations leave it when they finish
create index invocations_unfinished on ledger.invocations (accepted_at) where status in ('queued', 'retry_scheduled', 'running');

-- The auditor reads `audit` and nothing else: no ledger.*, no writes, no CREATE.
revoke all on schema audit from public;
grant usage on schema audit to ledger_auditor;
grant select on all tables in schema audit to ledger_auditor;
alter default privileges in schema audit grant select on tables to ledger_auditor;
-- The application may use the views as read models too.
grant usage on schema audit to ledger_app;
grant select on all tables in schema audit to ledger_app;
alter default privileges in schema audit grant select on tables to ledger_app;
-- PostgreSQL 15+ no longer grants CREATE on public to PUBLIC; make sure the auditor
-- holds none either (a no-op unless someone granted it).
do $$
begin
  if to_regnamespace('public') is not null then
    revoke create on schema public from ledger_auditor;
  end if;
end $$;
