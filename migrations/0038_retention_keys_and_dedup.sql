-- Retention rules for two more tables beside the events (docs/retention.md, "Retention of
-- the side tables"): idempotency keys past their lifetime, and the broker deduplication
-- rows (ledger.broker_messages_done). Same machinery as 0033: a rule per kind, removal in
-- bounded batches by ledger.purge_expired, every batch recorded in ledger.retention_purges.

alter table ledger.retention_rules drop constraint retention_rules_kind_check;
alter table ledger.retention_rules add constraint retention_rules_kind_check
  check (kind in ('attempt_logs', 'destination_deliveries', 'queue_messages', 'idempotency_keys', 'broker_messages_done'));

-- Finding expired deduplication rows reads them oldest first (idempotency keys have
-- idempotency_expiry since 0001).
create index broker_messages_done_at on ledger.broker_messages_done (done_at);

-- As in 0033, plus:
--   idempotency_keys      only keys an accept no longer honours (expires_at passed) whose
--                         invocation was accepted more than 24 hours before the cutoff;
--   broker_messages_done  rows written (the batch succeeded) before the cutoff.
create or replace function ledger.purge_expired(p_kind text, p_batch int, p_run uuid) returns int
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
    if p_kind not in ('attempt_logs', 'destination_deliveries', 'queue_messages', 'idempotency_keys', 'broker_messages_done') then
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

  elsif p_kind = 'queue_messages' then
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

  elsif p_kind = 'idempotency_keys' then
    -- A key row is needed while it can still answer: an accept honours it until expires_at
    -- (db/invocations.ts takes an expired key over), and verify expects it for 24 hours
    -- after its invocation's accepted event (IDEMPOTENCY_TTL_SECONDS in db/invocations.ts).
    -- Both must lie before the cutoff. A row whose accepted event is not in the database
    -- is left alone: verify reports it, and rebuild-projections removes it.
    with doomed as (
      select k.function_name, k.key, k.expires_at
      from ledger.idempotency_keys k
      join ledger.events e on e.invocation_id = k.invocation_id and e.seq = 1
      where k.expires_at < cut
        and k.expires_at < now()
        and e.occurred_at + interval '24 hours' < cut
      order by k.expires_at, k.function_name, k.key
      limit p_batch
      for update of k skip locked
    ), gone as (
      delete from ledger.idempotency_keys x using doomed d
      where x.function_name = d.function_name and x.key = d.key and x.expires_at < now()
      returning x.function_name, x.key, x.expires_at, x as row_value
    )
    select count(*)::int as n,
           (array_agg(jsonb_build_array(function_name, key)::text order by function_name, key))[1] as first_key,
           (array_agg(jsonb_build_array(function_name, key)::text order by function_name desc, key desc))[1] as last_key,
           min(expires_at) as oldest_at, max(expires_at) as newest_at,
           encode(sha256(convert_to(coalesce(string_agg(row_value::text, E'\n' order by function_name, key), ''), 'UTF8')), 'hex') as digest,
           jsonb_build_object('functions', coalesce((select jsonb_object_agg(f, c) from (select function_name as f, count(*) as c from gone group by 1) per_fn), '{}')) as detail
      into res from gone;

  else -- broker_messages_done
    -- A row answers "already processed" to a redelivery of a message whose acknowledgement
    -- was lost. Removed only past the rule's period, which must be longer than the broker
    -- keeps a message (docs/retention.md says why and how to choose it).
    with doomed as (
      select mapping_id, message_key
      from ledger.broker_messages_done
      where done_at < cut
      order by done_at, mapping_id, message_key
      limit p_batch
      for update skip locked
    ), gone as (
      delete from ledger.broker_messages_done x using doomed d
      where x.mapping_id = d.mapping_id and x.message_key = d.message_key
      returning x.mapping_id, x.message_key, x.done_at, x as row_value
    )
    select count(*)::int as n,
           (array_agg(jsonb_build_array(mapping_id, message_key)::text order by mapping_id, message_key))[1] as first_key,
           (array_agg(jsonb_build_array(mapping_id, message_key)::text order by mapping_id desc, message_key desc))[1] as last_key,
           min(done_at) as oldest_at, max(done_at) as newest_at,
           encode(sha256(convert_to(coalesce(string_agg(row_value::text, E'\n' order by mapping_id, message_key), ''), 'UTF8')), 'hex') as digest,
           jsonb_build_object('mappings', coalesce((select jsonb_object_agg(m, c) from (select mapping_id::text as m, count(*) as c from gone group by 1) per_mapping), '{}')) as detail
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

