-- The control-plane ledger: every change to a resource (a function, a version, an alias,
-- a schedule, a mapping, a key, …) is one immutable row, as invocations are events.
-- Each resource is its own stream: `seq` counts its changes from 1 without gaps, so
-- "the revision I read" is a seq, and a change made against a stale one is refused by
-- the unique key rather than silently overwriting (docs/changes.md).
create table ledger.changes (
  position       bigint generated always as identity primary key,
  -- open vocabularies, checked for shape: a new kind of resource needs no migration
  resource_type  text not null check (resource_type ~ '^[a-z][a-z0-9_]{0,39}$'),
  resource_name  text not null check (length(resource_name) between 1 and 256),
  seq            int not null check (seq >= 1),
  action         text not null check (action ~ '^[a-z][a-z0-9_]{0,39}$'),
  -- who: an API key id, `cli:<os user>`, `startup` for FUNCTIONS_DIR; never a secret
  actor          text not null check (length(actor) between 1 and 200),
  -- the HTTP/GraphQL request id that made it, when there was one
  request_id     text,
  -- what changed: for updates `before` and `after`, plus what the action needs (code hash…)
  data           jsonb not null default '{}' check (jsonb_typeof(data) = 'object'),
  occurred_at    timestamptz not null default statement_timestamp(),
  tx_id          xid8 not null default pg_current_xact_id(),
  unique (resource_type, resource_name, seq)
);
create index changes_by_time on ledger.changes using brin (occurred_at);

-- Immutable for every role, the owner included (statement-level: fires even on no rows).
create trigger changes_no_update before update on ledger.changes
  for each statement execute function ledger.refuse_mutation();
create trigger changes_no_delete before delete on ledger.changes
  for each statement execute function ledger.refuse_mutation();
create trigger changes_no_truncate before truncate on ledger.changes
  for each statement execute function ledger.refuse_mutation();

-- No gaps: a change after the first follows its resource's previous change.
create function ledger.check_change_seq() returns trigger
language plpgsql as $$
declare
  bad record;
begin
  select n.resource_type, n.resource_name, n.seq into bad
  from new_changes n
  where n.seq > 1
    and not exists (select 1 from ledger.changes c
                    where c.resource_type = n.resource_type and c.resource_name = n.resource_name
                      and c.seq = n.seq - 1)
  limit 1;
  if found then
    raise exception 'ledger.changes: seq % of % % leaves a gap', bad.seq, bad.resource_type, bad.resource_name
      using errcode = 'check_violation';
  end if;
  return null;
end $$;

create trigger changes_seq_contiguous after insert on ledger.changes
  referencing new table as new_changes
  for each statement execute function ledger.check_change_seq();

grant select, insert on ledger.changes to ledger_app;
revoke update, delete, truncate on ledger.changes from public;

-- Who changed what, when: for auditors (`ledger_auditor` reads `audit` only).
create view audit.changes as
select
  c.position,
  c.resource_type,
  c.resource_name,
  c.seq,
  c.action,
  c.actor,
  c.request_id,
  c.occurred_at,
  c.data -> 'before' as before,
  c.data -> 'after' as after,
  c.data,
  c.tx_id
from ledger.changes c;

grant select on audit.changes to ledger_auditor, ledger_app;
