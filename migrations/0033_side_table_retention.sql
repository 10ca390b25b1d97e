-- Retention for the bulky tables beside the events (docs/retention.md, "Retention of the
-- side tables"): attempt logs, destination deliveries, dead-lettered queue messages.
--
-- None of them is needed to prove what happened: the events are (and they leave only as a
-- verifiable archive, 0020). docs/retention.md says why for each kind. A user sets a rule
-- per kind (how long to keep); the worker removes expired rows in bounded batches through
-- ledger.purge_expired, which never touches live work and records every batch it removes
-- in ledger.retention_purges, so an auditor sees what went, when and by which rule.

-- The rules, as a history: the newest row of a kind is its rule. keep null: keep for ever
-- (the default, also when a kind has no row).
create table ledger.retention_rules (
  id     bigint generated always as identity primary key,
  kind   text not null check (kind in ('attempt_logs', 'destination_deliveries', 'queue_messages')),
  keep   interval check (keep >= interval '0'),
  actor  text not null default session_user,
  at     timestamptz not null default now()
);
create index retention_rules_kind on ledger.retention_rules (kind, id desc);
create trigger retention_rules_immutable before update or delete or truncate on ledger.retention_rules
  for each statement execute function ledger.refuse_mutation();

-- One row per batch removed. Rows are gone, so the record says how many, which keys (first
-- and last in the order removed), the time span they covered, the SHA-256 of the removed
-- rows (each row's text, in key order, newline-separated: equal to a copy taken before,
-- or not) and a breakdown per kind (detail).
create table ledger.retention_purges (
  id              bigint generated always as identity primary key,
  run_id          uuid not null,
  kind            text not null,
  rule_id         bigint not null references ledger.retention_rules (id),
  keep            interval not null,
  cutoff          timestamptz not null,
  removed         int not null check (removed > 0),
  first_key       text not null,
  last_key        text not null,
  oldest_at       timestamptz,
  newest_at       timestamptz,
  content_sha256  text not null check (content_sha256 ~ '^[0-9a-f]{64}$'),
  detail          jsonb not null default '{}',
  actor           text not null default session_user,
  at              timestamptz not null default now()
);
create index retention_purges_run on ledger.retention_purges (run_id, id);
create trigger retention_purges_immutable before update or delete or truncate on ledger.retention_purges
  for each statement execute function ledger.refuse_mutation();

-- Finding expired rows reads only settled ones, oldest first.
create index destination_deliveries_settled on ledger.destination_deliveries (created_at) where status <> 'pending';
create index messages_dead_lettered_at on ledger.messages (dead_lettered_at) where dead_lettered_at is not null;

-- Attempt logs stay append-only (0006): nothing rewrites what an attempt printed, and
-- nothing deletes it, except ledger.purge_expired removing whole expired rows (it sets
-- ledger.retention_purge for its own statement; the application role has no DELETE grant).
create or replace function ledger.guard_attempt_log() returns trigger
language plpgsql as $$
begin
  if tg_op = 'UPDATE' and new is not distinct from old then
    return new; -- the writer's upsert of the same text: nothing changes
  end if;
  if tg_op = 'DELETE' and current_setting('ledger.retention_purge', true) = 'attempt_logs' then
    return old;
  end if;
  raise exception 'ledger.attempt_logs is append-only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege',
          hint = 'what an attempt printed is never changed; expired logs go through a retention rule (docs/retention.md)';
end $$;

-- Removes at most p_batch expired rows of one kind under its current rule; returns how
-- many (0: no rule, keep for ever, or nothing expired). Live work is never touched:
--   attempt_logs            only of invocations that finished (terminal status, no queue row)
--                           before the cutoff, or whose events were archived and dropped;
--   destination_deliveries  only delivered or failed ones (never pending) created before it;
--   queue_messages          only dead-lettered ones, dead-lettered before it (messages not
--                           dead-lettered are waiting, in flight, or deleted when their batch succeeded).
-- Rows another transaction holds (a redrive, a delivery attempt) are skipped, not waited for.
create function ledger.purge_expired(p_kind text, p_batch int, p_run uuid) returns int
language plpgsql security definer set search_path = pg_catalog, ledger as $$
declare
  r ledger.retention_rules%rowtype;
  cut timestamptz;
  res record;
begin
  if p_batch is null or p_batch < 1 or p_batch > 100000 then
    raise exception 'purge batch size must be from 1 to 100000, not %', p_batch using errcode = 'invalid_parameter_value';
  end if;
  select * into r from ledger.retention_rules where kind = p_kind order by id desc limit 1;
  if not found then
    if p_kind not in ('attempt_logs', 'destination_deliveries', 'queue_messages') then
      raise exception 'no retention kind %', p_kind using errcode = 'invalid_parameter_value';
    end if;
    return 0;
  end if;
  if r.keep is null then return 0; end if;
  cut := now() - r.keep;

  if p_kind = 'attempt_logs' then
    perform set_config('ledger.retention_purge', 'attempt_logs', true);
    with doomed as (
      select l.invocation_id, l.attempt, coalesce(i.finished_at, ledger.uuid_time(l.invocation_id)) as ended_at
      from ledger.attempt_logs l
      left join ledger.invocations i on i.id = l.invocation_id
      -- ids are UUIDv7 (0020): an invocation accepted after the cutoff cannot have ended before it
      where l.invocation_id < ledger.uuid_lower_bound(cut)
        and not exists (select 1 from ledger.queue q where q.invocation_id = l.invocation_id)
        and (case when i.id is not null
                  then i.status in ('succeeded', 'failed', 'dead_lettered', 'cancelled') and i.finished_at < cut
                  -- no projection: only once the invocation's events left as an archive
                  else ledger.uuid_time(l.invocation_id) < cut
                       and not exists (select 1 from ledger.events e where e.invocation_id = l.invocation_id)
             end)
      order by l.invocation_id, l.attempt
      limit p_batch
      for update of l skip locked
    ), gone as (
      delete from ledger.attempt_logs l using doomed d
      where l.invocation_id = d.invocation_id and l.attempt = d.attempt
      returning l.invocation_id, l.attempt, l.log, d.ended_at, l as row_value
    )
    select count(*)::int as n,
           (array_agg(invocation_id::text || '/' || attempt order by invocation_id, attempt))[1] as first_key,
           (array_agg(invocation_id::text || '/' || attempt order by invocation_id desc, attempt desc))[1] as last_key,
           min(ended_at) as oldest_at, max(ended_at) as newest_at,
           encode(sha256(convert_to(coalesce(string_agg(row_value::text, E'\n' order by invocation_id, attempt), ''), 'UTF8')), 'hex') as digest,
           jsonb_build_object('invocations', count(distinct invocation_id), 'logBytes', coalesce(sum(octet_length(log)), 0)) as detail
      into res from gone;
    perform set_config('ledger.retention_purge', '', true);

  elsif p_kind = 'destination_deliveries' then
    with doomed as (
      select id from ledger.destination_deliveries
      where status <> 'pending' and created_at < cut
      order by created_at, id
      limit p_batch
      for update skip locked
    ), gone as (
      delete from ledger.destination_deliveries x using doomed d where x.id = d.id
      returning x.id, x.status, x.created_at, x as row_value
    )
    select count(*)::int as n,
           min(id)::text as first_key, max(id)::text as last_key,
           min(created_at) as oldest_at, max(created_at) as newest_at,
           encode(sha256(convert_to(coalesce(string_agg(row_value::text, E'\n' order by id), ''), 'UTF8')), 'hex') as digest,
           jsonb_build_object('delivered', count(*) filter (where status = 'delivered'),
                              'failed', count(*) filter (where status = 'failed')) as detail
      into res from gone;

  else -- queue_messages
    with doomed as (
      select id from ledger.messages
      where dead_lettered_at < cut
      order by dead_lettered_at, id
      limit p_batch
      for update skip locked
    ), gone as (
      delete from ledger.messages x using doomed d where x.id = d.id
      returning x.id, x.seq, x.queue_name, x.dead_lettered_at, x as row_value
    )
    select count(*)::int as n,
           (array_agg(id::text order by seq))[1] as first_key,
           (array_agg(id::text order by seq desc))[1] as last_key,
           min(dead_lettered_at) as oldest_at, max(dead_lettered_at) as newest_at,
           encode(sha256(convert_to(coalesce(string_agg(row_value::text, E'\n' order by seq), ''), 'UTF8')), 'hex') as digest,
           jsonb_build_object('queues', coalesce((select jsonb_object_agg(q, c) from (select queue_name as q, count(*) as c from gone group by 1) per_queue), '{}')) as detail
      into res from gone;
  end if;

  if res.n > 0 then
    insert into ledger.retention_purges (run_id, kind, rule_id, keep, cutoff, removed, first_key, last_key,
                                         oldest_at, newest_at, content_sha256, detail)
    values (p_run, p_kind, r.id, r.keep, cut, res.n, res.first_key, res.last_key,
            res.oldest_at, res.newest_at, res.digest, res.detail);
  end if;
  return res.n;
end $$;

-- For auditors: every rule ever set, and every purge, per batch and per run.
create view audit.retention_rules as
select id, kind, keep, actor, at,
       id = (select max(id) from ledger.retention_rules c where c.kind = r.kind) as current
from ledger.retention_rules r;

create view audit.retention_purges as
select id, run_id, kind, rule_id, keep, cutoff, removed, first_key, last_key, oldest_at, newest_at,
       content_sha256, detail, actor, at
from ledger.retention_purges;

create view audit.retention_runs as
select run_id, kind, min(rule_id) as rule_id, min(keep) as keep, max(cutoff) as cutoff, count(*) as batches,
       sum(removed) as removed, min(oldest_at) as oldest_at, max(newest_at) as newest_at,
       min(at) as started_at, max(at) as finished_at, min(actor) as actor
from ledger.retention_purges
group by run_id, kind;

grant select on ledger.retention_rules, ledger.retention_purges to ledger_app;
revoke execute on function ledger.purge_expired(text, int, uuid) from public;
grant execute on function ledger.purge_expired(text, int, uuid) to ledger_app;
grant select on audit.retention_rules, audit.retention_purges, audit.retention_runs to ledger_auditor, ledger_app;
