-- What the application role writes once, it cannot rewrite.
--
-- Events and function versions are immutable since 0001. This closes the same class of
-- hole in the tables beside them (docs/security.md lists what is enforced for whom):
--   * api_keys: revocation is permanent and stamped with the revoking transaction's time;
--     nothing else about a key changes; keys are never deleted. Triggers, so this holds
--     for the owner too.
--   * attempt_logs: what an attempt printed is kept as printed. Triggers (the writer's
--     INSERT … ON CONFLICT DO UPDATE needs the UPDATE grant, so a grant cannot say it).
--   * destination_deliveries: the record, where it goes and why are fixed at insert; the
--     application may only move a delivery along (attempts, status, errors) and never
--     deletes one. Column grants.
--   * messages: a body, its queue and its send time are what was sent; the application
--     may receive, settle, dead-letter, redrive and delete. Column grants.

create function ledger.guard_api_key() returns trigger
language plpgsql as $$
begin
  if tg_op in ('DELETE', 'TRUNCATE') then
    raise exception 'ledger.api_keys: keys are never deleted (% refused); revoke a key instead', tg_op
      using errcode = 'insufficient_privilege';
  end if;
  if (new.id, new.name, new.scopes, new.secret_sha256, new.sigv4_secret_format, new.sigv4_secret, new.created_at)
     is distinct from
     (old.id, old.name, old.scopes, old.secret_sha256, old.sigv4_secret_format, old.sigv4_secret, old.created_at) then
    raise exception 'ledger.api_keys: a key is never changed, only revoked (key %)', old.id
      using errcode = 'insufficient_privilege',
            hint = 'create a new key with the scopes you want and revoke this one';
  end if;
  if old.revoked_at is not null and new.revoked_at is distinct from old.revoked_at then
    raise exception 'ledger.api_keys: key % is revoked, and revocation is permanent', old.id
      using errcode = 'insufficient_privilege';
  end if;
  if old.revoked_at is null and new.revoked_at is not null and new.revoked_at <> now() then
    raise exception 'ledger.api_keys: revoked_at is the time of the revoking transaction (now()), not %', new.revoked_at
      using errcode = 'check_violation';
  end if;
  return new;
end $$;

create trigger api_keys_revocation_permanent before update or delete on ledger.api_keys
  for each row execute function ledger.guard_api_key();
create trigger api_keys_no_truncate before truncate on ledger.api_keys
  for each statement execute function ledger.guard_api_key();

create function ledger.guard_attempt_log() returns trigger
language plpgsql as $$
begin
  if tg_op = 'UPDATE' and new is not distinct from old then
    return new; -- the writer's upsert of the same text: nothing changes
  end if;
  raise exception 'ledger.attempt_logs is append-only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege',
          hint = 'what an attempt printed is never changed';
end $$;

create trigger attempt_logs_append_only before update or delete on ledger.attempt_logs
  for each row execute function ledger.guard_attempt_log();
create trigger attempt_logs_no_truncate before truncate on ledger.attempt_logs
  for each statement execute function ledger.refuse_mutation();
revoke delete on ledger.attempt_logs from ledger_app;

-- Revoking a table privilege also revokes its column privileges: revoke, then grant columns.
revoke update, delete on ledger.destination_deliveries from ledger_app;
grant update (status, attempts, last_error, last_status_code, next_attempt_at, delivered_at)
  on ledger.destination_deliveries to ledger_app;

revoke update on ledger.messages from ledger_app;
grant update (visible_at, receive_count, first_received_at, receipt, dead_lettered_at, dead_letter_reason)
  on ledger.messages to ledger_app;
