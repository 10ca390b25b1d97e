-- Throttles, counted where every process can see them (docs/observability.md#throttles).
--
-- A throttle writes nothing to the ledger: a sync call refused with 429 never became an
-- invocation, and an async invocation held back by its function's reserved concurrency only
-- waits. Each process counts them in memory (ledger_throttles_total) and adds its counts to
-- this table once per flush, per minute, function, invocation type and reason, so the
-- console and SQL can chart the throttles of all processes. A counter, not a record: rows
-- are only ever incremented, and lose nothing the ledger proves.
create table ledger.throttle_counts (
  minute           timestamptz not null check (date_trunc('minute', minute) = minute),
  function_name    text not null,
  invocation_type  text not null check (invocation_type in ('sync', 'async')),
  reason           text not null,
  count            bigint not null check (count > 0),
  primary key (minute, function_name, invocation_type, reason)
);

-- counts only grow: an update that lowers one, or a delete, is refused (retention aside, a
-- counter that can be rewritten downwards would hide throttling)
create function ledger.throttle_counts_only_grow() returns trigger language plpgsql as $$
begin
  if new.minute <> old.minute or new.function_name <> old.function_name or new.invocation_type <> old.invocation_type
     or new.reason <> old.reason or new.count < old.count then
    raise exception 'ledger.throttle_counts only grows' using errcode = '55000';
  end if;
  return new;
end $$;
create trigger throttle_counts_only_grow before update on ledger.throttle_counts
  for each row execute function ledger.throttle_counts_only_grow();

grant select, insert, update on ledger.throttle_counts to ledger_app;

create view audit.throttles as
select minute, function_name, invocation_type, reason, count from ledger.throttle_counts;
grant select on audit.throttles to ledger_auditor, ledger_app;
