-- Replay (docs/replay.md): recorded invocations run again against another version of
-- their function, to see what that version would have done with real inputs.
--
-- A replay is an ordinary invocation of type `replay`: it has its own events (accepted,
-- started, succeeded | failed), like a sync one it is never retried or dead-lettered,
-- and its `accepted` event names the run and the original (`data.replay = {replayId, of}`).
-- These two tables only say what a run was asked to do and which replay invocation
-- answers which original; every result and every comparison is read from the events.

alter table ledger.invocations drop constraint invocations_invocation_type_check;
alter table ledger.invocations add constraint invocations_invocation_type_check
  check (invocation_type in ('sync', 'async', 'poll', 'replay'));

-- One row per run, written once: what was selected, against which version, how fast.
create table ledger.replays (
  id              uuid primary key,
  function_name   text not null,
  -- the target as asked (`$LATEST`, a version number, later an alias) and what it resolved to
  target          text not null check (length(target) between 1 and 128),
  target_version  int not null check (target_version >= 1),
  -- the selection as asked (time range, statuses, ids, sample), for the record
  selection       jsonb not null default '{}' check (jsonb_typeof(selection) = 'object'),
  -- replay invocations of this run running at once, across every worker
  concurrency     int not null check (concurrency between 1 and 64),
  total           int not null check (total >= 0),
  created_by      text,
  created_at      timestamptz not null default statement_timestamp()
);
create index replays_created on ledger.replays (created_at desc);

create trigger replays_no_update before update on ledger.replays
  for each statement execute function ledger.refuse_mutation();
create trigger replays_no_delete before delete on ledger.replays
  for each statement execute function ledger.refuse_mutation();
create trigger replays_no_truncate before truncate on ledger.replays
  for each statement execute function ledger.refuse_mutation();

-- One row per selected original. `invocation_id` is set once, in the transaction that
-- accepts the replay invocation (the same id its accepted event carries).
create table ledger.replay_items (
  replay_id      uuid not null references ledger.replays (id),
  ordinal        int not null check (ordinal >= 1),
  original_id    uuid not null,
  invocation_id  uuid unique,
  primary key (replay_id, ordinal)
);
-- what is left to start, in order
create index replay_items_pending on ledger.replay_items (replay_id, ordinal) where invocation_id is null;
-- the replays running now (a claim counts its run's against the run's concurrency); partial,
-- so live rows of the hot queue table never touch it
create index queue_replays on ledger.queue (invocation_id) where invocation_type = 'replay';

create function ledger.guard_replay_item() returns trigger
language plpgsql as $$
begin
  if tg_op in ('DELETE', 'TRUNCATE') then
    raise exception 'ledger.replay_items: items are never deleted (% refused)', tg_op
      using errcode = 'insufficient_privilege';
  end if;
  if (new.replay_id, new.ordinal, new.original_id) is distinct from (old.replay_id, old.ordinal, old.original_id)
     or (old.invocation_id is not null and new.invocation_id is distinct from old.invocation_id) then
    raise exception 'ledger.replay_items: an item only ever gets its replay invocation, once (replay %, item %)', old.replay_id, old.ordinal
      using errcode = 'insufficient_privilege';
  end if;
  return new;
end $$;
create trigger replay_items_write_once before update or delete on ledger.replay_items
  for each row execute function ledger.guard_replay_item();
create trigger replay_items_no_truncate before truncate on ledger.replay_items
  for each statement execute function ledger.guard_replay_item();

grant select, insert on ledger.replays to ledger_app;
grant select, insert, update (invocation_id) on ledger.replay_items to ledger_app;

-- For auditors: each original beside its replay, with both outcomes read from the events.
-- `same_result` compares the JSON values (jsonb equality: key order does not matter).
create view audit.replay_pairs as
select
  it.replay_id,
  it.ordinal,
  it.original_id,
  o.function_name,
  o.function_version as original_version,
  o.status as original_status,
  it.invocation_id as replay_invocation_id,
  n.function_version as replay_version,
  n.status as replay_status,
  ob.result as original_result,
  nb.result as replay_result,
  ob.error_type as original_error_type,
  nb.error_type as replay_error_type,
  ob.duration_ms as original_duration_ms,
  nb.duration_ms as replay_duration_ms,
  case when n.status in ('succeeded', 'failed') and o.status in ('succeeded', 'failed', 'dead_lettered') then
    o.status = 'succeeded' and n.status = 'succeeded' and ob.result = nb.result
  end as same_result
from ledger.replay_items it
join ledger.invocations o on o.id = it.original_id
left join ledger.invocations n on n.id = it.invocation_id
left join lateral (
  select e.data -> 'result' as result, e.data -> 'error' ->> 'errorType' as error_type, (e.data ->> 'durationMs')::numeric as duration_ms
  from ledger.events e where e.invocation_id = it.original_id and e.type in ('succeeded', 'failed')
  order by e.seq desc limit 1
) ob on true
left join lateral (
  select e.data -> 'result' as result, e.data -> 'error' ->> 'errorType' as error_type, (e.data ->> 'durationMs')::numeric as duration_ms
  from ledger.events e where e.invocation_id = it.invocation_id and e.type in ('succeeded', 'failed')
  order by e.seq desc limit 1
) nb on true;

-- One row per run with its progress.
create view audit.replays as
select
  r.id,
  r.function_name,
  r.target,
  r.target_version,
  r.selection,
  r.concurrency,
  r.total,
  r.created_by,
  r.created_at,
  (select count(*) from ledger.replay_items it where it.replay_id = r.id and it.invocation_id is not null)::int as started,
  (select count(*) from ledger.replay_items it join ledger.invocations n on n.id = it.invocation_id
    where it.replay_id = r.id and n.status in ('succeeded', 'failed'))::int as finished
from ledger.replays r;

grant select on audit.replay_pairs, audit.replays to ledger_auditor, ledger_app;
