-- Retention without losing the audit (docs/retention.md): ledger.events becomes a table
-- partitioned by month of invocation, so an old month can be exported to a verifiable
-- archive, then detached and dropped whole, instead of DELETEd row by row (which the
-- immutability triggers refuse anyway).
--
-- The key is invocation_id. Invocation ids are UUIDv7: their first 48 bits are the accept
-- time in Unix milliseconds, and uuid compares byte by byte, so a range of ids is a range
-- of accept times and every event of one invocation lives in the partition of the month
-- it was accepted in. (invocation_id, seq) stays unique (the key is part of it) and the
-- seq-contiguity check still reads one partition. Ids that are not time-ordered (UUIDv4
-- written before this migration, or by hand) land in events_default, which is never
-- archived.
--
-- The primary key must contain the partition key: it becomes (position, invocation_id).
-- position still comes from one identity sequence, so it stays unique and ordered as before.
--
-- Works on a populated ledger: the events are copied in one statement, inside the
-- migration's transaction (the old table is locked throughout), with their position and
-- tx_id unchanged, so tamper-evidence leaves keep pointing at the same events.

lock table ledger.events in access exclusive mode;

-- The first id of a millisecond: the lower bound of the ids accepted from `t` on.
create function ledger.uuid_lower_bound(t timestamptz) returns uuid
language sql immutable strict as $$
  select (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000')::uuid
  from lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0') as h
$$;

-- The accept time a UUIDv7 carries; null for any other version.
create function ledger.uuid_time(id uuid) returns timestamptz
language sql immutable strict as $$
  select case when substr(id::text, 15, 1) = '7'
              then to_timestamp(('x' || lpad(replace(substr(id::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0) end
$$;

-- Views read the table by identity, not by name: remember every view that depends on
-- ledger.events (directly or through another view), drop them, and create them again over
-- the new table with the same definition, options, comment and grants.
create temporary table events_dependent_views on commit drop as
with recursive deps(oid) as (
  select distinct r.ev_class
  from pg_depend d join pg_rewrite r on r.oid = d.objid
  where d.classid = 'pg_rewrite'::regclass and d.refobjid = 'ledger.events'::regclass
    and r.ev_class <> 'ledger.events'::regclass
  union
  select distinct r.ev_class
  from deps join pg_depend d on d.refobjid = deps.oid
  join pg_rewrite r on r.oid = d.objid
  where d.classid = 'pg_rewrite'::regclass and r.ev_class <> deps.oid
)
select c.oid, format('%I.%I', n.nspname, c.relname) as name, c.relkind, pg_get_viewdef(c.oid) as def,
       c.reloptions, obj_description(c.oid, 'pg_class') as comment,
       (select coalesce(array_agg(format('grant %s on %I.%I to %s', a.privilege_type, n.nspname, c.relname,
                                         case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end)), '{}')
        from aclexplode(c.relacl) a where a.grantee <> c.relowner) as grants
from (select distinct oid from deps) v join pg_class c on c.oid = v.oid join pg_namespace n on n.oid = c.relnamespace;

do $$
declare
  v record;
begin
  if exists (select 1 from events_dependent_views where relkind <> 'v') then
    raise exception 'a materialized view depends on ledger.events; drop it before migrating';
  end if;
  for v in select * from events_dependent_views order by oid desc loop
    execute format('drop view if exists %s cascade', v.name);
  end loop;
end $$;

-- What later migrations may have added to ledger.events goes over to the new table:
-- indexes are made again from their definitions, grants given again. A trigger this
-- migration does not know would be lost silently: refuse instead.
do $$
declare
  unknown text;
begin
  select string_agg(tgname, ', ') into unknown from pg_trigger
  where tgrelid = 'ledger.events'::regclass and not tgisinternal
    and tgname not in ('events_no_update', 'events_no_delete', 'events_no_truncate', 'events_seq_contiguous');
  if unknown is not null then
    raise exception '0020 makes ledger.events anew and does not know its trigger(s) %: add them to 0020', unknown;
  end if;
end $$;
create temporary table events_extra_indexes on commit drop as
select pg_get_indexdef(x.indexrelid) as def
from pg_index x join pg_class c on c.oid = x.indexrelid
where x.indrelid = 'ledger.events'::regclass
  and not exists (select 1 from pg_constraint k where k.conindid = x.indexrelid)
  and c.relname not in ('events_tx_order', 'events_failed_at', 'events_failed_error_type', 'events_dead_lettered_at',
                        'events_redriven_at', 'events_occurred_brin', 'events_hour_brin');
create temporary table events_grants on commit drop as
select format('grant %s on ledger.events to %s', a.privilege_type,
              case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end) as grant_sql
from pg_class c, aclexplode(c.relacl) a
where c.oid = 'ledger.events'::regclass and a.grantee <> c.relowner;

alter table ledger.events rename to events_unpartitioned;
-- index names are unique per schema: free them for the new table's
do $$
declare
  i record;
begin
  for i in select indexrelid::regclass::text as name, c.relname from pg_index x join pg_class c on c.oid = x.indexrelid
           where x.indrelid = 'ledger.events_unpartitioned'::regclass loop
    execute format('alter index %s rename to %I', i.name, i.relname || '_unpartitioned');
  end loop;
end $$;

create table ledger.events (
  position       bigint generated always as identity,
  invocation_id  uuid not null,
  seq            int not null constraint events_seq_check check (seq >= 1),
  type           text not null constraint events_type_check check (type in ('accepted', 'started', 'failed', 'retried',
                                               'succeeded', 'dead_lettered', 'cancelled', 'redriven')),
  attempt        int constraint events_attempt_check check (attempt >= 1),
  data           jsonb not null default '{}',
  -- the statement's time, not the transaction's (see 0001)
  occurred_at    timestamptz not null default statement_timestamp(),
  tx_id          xid8 not null default pg_current_xact_id(),
  primary key (position, invocation_id),
  constraint events_invocation_id_seq_key unique (invocation_id, seq),
  constraint events_check check ((seq = 1) = (type = 'accepted'))
) partition by range (invocation_id);

create table ledger.events_default partition of ledger.events default;

-- Partition upkeep: one partition per UTC month, named events_yYYYYmMM, created ahead of
-- time by whoever calls this (the server at start and every hour, `archive partitions`).
-- Security definer: ledger_app may make partitions, not alter the table otherwise.
-- Returns the partitions it created. A month whose ids already sit in events_default
-- (written before its partition existed) is skipped with a warning; `verify` reports it.
create function ledger.premake_event_partitions(months_ahead int default 3, from_month timestamptz default now())
returns setof text
language plpgsql security definer set search_path = pg_catalog, ledger as $$
declare
  m timestamptz;
  part text;
begin
  for m in select generate_series(date_trunc('month', from_month at time zone 'UTC') at time zone 'UTC',
                                  date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                                    + make_interval(months => greatest(months_ahead, 0)),
                                  interval '1 month') loop
    part := 'events_' || to_char(m at time zone 'UTC', '"y"YYYY"m"MM');
    continue when to_regclass('ledger.' || part) is not null
      -- archived and dropped: never made again
      or exists (select 1 from ledger.archive_log a where a.partition_name = part and a.action = 'dropped');
    begin
      execute format('create table ledger.%I partition of ledger.events for values from (%L) to (%L)',
                     part, ledger.uuid_lower_bound(m), ledger.uuid_lower_bound(m + interval '1 month'));
    exception
      when check_violation then
        raise warning 'ledger.events: partition % not made: events_default holds ids of that month', part;
        continue;
      when duplicate_table then
        continue; -- another process made it meanwhile
    end;
    perform ledger.guard_event_partition(part);
    insert into ledger.event_partition_log (partition_name, range_from, range_to)
      values (part, ledger.uuid_lower_bound(m), ledger.uuid_lower_bound(m + interval '1 month'));
    return next part;
  end loop;
end $$;

-- Every partition refuses UPDATE, DELETE and TRUNCATE itself: statement triggers on the
-- parent do not fire for a statement that names a partition.
create function ledger.guard_event_partition(part text) returns void
language plpgsql security definer set search_path = pg_catalog, ledger as $$
begin
  execute format('create trigger events_no_update before update on ledger.%I for each statement execute function ledger.refuse_mutation()', part);
  execute format('create trigger events_no_delete before delete on ledger.%I for each statement execute function ledger.refuse_mutation()', part);
  execute format('create trigger events_no_truncate before truncate on ledger.%I for each statement execute function ledger.refuse_mutation()', part);
end $$;

-- Every month partition ever made: a month that is gone from the database must have been
-- archived and dropped (ledger.archive_log), or its events are lost; `verify` checks it.
create table ledger.event_partition_log (
  partition_name  text primary key,
  range_from      uuid not null,
  range_to        uuid not null,
  created_at      timestamptz not null default now()
);
create trigger event_partition_log_immutable before update or delete or truncate on ledger.event_partition_log
  for each statement execute function ledger.refuse_mutation();

-- What happened to archived ranges: exported (a file was written), dropped (the partition
-- is gone from the database), restored (loaded back into a table outside the ledger).
-- Append-only like the events.
create table ledger.archive_log (
  id              bigint generated always as identity primary key,
  action          text not null check (action in ('exported', 'dropped', 'restored')),
  partition_name  text not null,
  -- ids in [range_from, range_to): the partition's bounds
  range_from      uuid not null,
  range_to        uuid not null,
  event_count     bigint not null check (event_count >= 0),
  invocation_count bigint not null check (invocation_count >= 0),
  first_position  bigint,
  last_position   bigint,
  first_occurred_at timestamptz,
  last_occurred_at  timestamptz,
  -- SHA-256 of the manifest file, hex: names the archive
  manifest_sha256 text not null check (manifest_sha256 ~ '^[0-9a-f]{64}$'),
  -- where the archive was written or read, as given to the command
  location        text not null,
  -- where restored events were loaded (restored only)
  restored_into   text,
  actor           text not null default session_user,
  at              timestamptz not null default now()
);
create index archive_log_partition on ledger.archive_log (partition_name, id);
create trigger archive_log_immutable before update or delete or truncate on ledger.archive_log
  for each statement execute function ledger.refuse_mutation();

-- Partitions for every month that has (time-ordered) invocations, and three ahead; then
-- the copy, keeping positions and transaction ids, each row routed to its month.
select ledger.premake_event_partitions(3, (select least(min(ledger.uuid_time(invocation_id)), now()) from ledger.events_unpartitioned where seq = 1));

insert into ledger.events (position, invocation_id, seq, type, attempt, data, occurred_at, tx_id)
  overriding system value
select position, invocation_id, seq, type, attempt, data, occurred_at, tx_id from ledger.events_unpartitioned;

do $$
declare
  new_seq text := pg_get_serial_sequence('ledger.events', 'position');
begin
  perform setval(new_seq, s.last_value, s.is_called) from ledger.events_position_seq s;
  drop table ledger.events_unpartitioned;
  execute format('alter sequence %s rename to events_position_seq', new_seq);
end $$;

create index events_tx_order on ledger.events (tx_id, position);
-- the indexes of 0002, now on every partition
create index events_failed_at on ledger.events (occurred_at) where type = 'failed';
create index events_failed_error_type on ledger.events ((data -> 'error' ->> 'errorType'), occurred_at) where type = 'failed';
create index events_dead_lettered_at on ledger.events (occurred_at) where type = 'dead_lettered';
create index events_redriven_at on ledger.events (occurred_at) where type = 'redriven';
create index events_occurred_brin on ledger.events using brin (occurred_at);
create index events_hour_brin on ledger.events
  using brin (date_bin('1 hour', occurred_at, timestamptz '2000-01-01 00:00:00+00'));

-- Immutability and seq contiguity as in 0001, created after the copy (the copied events
-- passed them when they were written).
create trigger events_no_update before update on ledger.events
  for each statement execute function ledger.refuse_mutation();
create trigger events_no_delete before delete on ledger.events
  for each statement execute function ledger.refuse_mutation();
create trigger events_no_truncate before truncate on ledger.events
  for each statement execute function ledger.refuse_mutation();
create trigger events_seq_contiguous after insert on ledger.events
  referencing new table as new_events
  for each statement execute function ledger.check_event_seq();
select ledger.guard_event_partition('events_default');

do $$
declare
  d text;
begin
  for d in select def from events_extra_indexes loop execute d; end loop;
  for d in select grant_sql from events_grants loop execute d; end loop;
end $$;
grant select, insert on ledger.events to ledger_app;
revoke update, delete, truncate on ledger.events from public;
grant select on ledger.archive_log, ledger.event_partition_log to ledger_app;
grant execute on function ledger.premake_event_partitions(int, timestamptz) to ledger_app;
revoke execute on function ledger.guard_event_partition(text) from public;

-- The views, as they were.
do $$
declare
  v record;
  g text;
begin
  for v in select * from events_dependent_views order by oid loop
    execute format('create view %s%s as %s', v.name,
                   case when v.reloptions is null then '' else format(' with (%s)', array_to_string(v.reloptions, ', ')) end,
                   v.def);
    if v.comment is not null then execute format('comment on view %s is %L', v.name, v.comment); end if;
    foreach g in array v.grants loop execute g; end loop;
  end loop;
end $$;

-- For auditors: the partitions the database holds (with the ids and accept months they
-- cover), and what has been archived, dropped and restored, by whom and when.
create view ledger.event_partitions as
select c.relname::text as partition_name,
       case when b.bound = 'DEFAULT' then null else substring(b.bound from 'FROM \(''([0-9a-f-]+)''\)')::uuid end as range_from,
       case when b.bound = 'DEFAULT' then null else substring(b.bound from 'TO \(''([0-9a-f-]+)''\)')::uuid end as range_to,
       case when c.relname ~ '^events_y\d{4}m\d{2}$'
            then to_timestamp(substring(c.relname from 9 for 4) || '-' || substring(c.relname from 14 for 2), 'YYYY-MM') at time zone 'UTC' end as month
from pg_inherits i
join pg_class c on c.oid = i.inhrelid
cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
where i.inhparent = 'ledger.events'::regclass;

create view audit.event_partitions as
select p.partition_name, p.month, p.range_from, p.range_to,
       a.action as last_archive_action, a.at as last_archive_at
from ledger.event_partitions p
left join lateral (select action, at from ledger.archive_log l where l.partition_name = p.partition_name order by id desc limit 1) a on true;

create view audit.archives as
select id, action, partition_name, range_from, range_to, event_count, invocation_count, first_position, last_position,
       first_occurred_at, last_occurred_at, manifest_sha256, location, restored_into, actor, at
from ledger.archive_log;

-- The archive that holds an invocation whose events are no longer in the database.
create function audit.archive_of(invocation uuid) returns setof audit.archives
language sql stable as $$
  select a.* from audit.archives a
  where a.action in ('exported', 'dropped') and invocation >= a.range_from and invocation < a.range_to
  order by a.id
$$;

grant select on ledger.event_partitions to ledger_app;
grant select on audit.event_partitions, audit.archives to ledger_auditor, ledger_app;
grant execute on function audit.archive_of(uuid) to ledger_auditor, ledger_app;
