-- Function code, content-addressed: one row per distinct zip, named by the SHA-256 of its
-- bytes. Immutable like events (a name that could change its bytes would name nothing),
-- checked by the database itself, and readable by any process that has DATABASE_URL
-- (docs/code.md). Function versions will reference a package by its sha256.
create table ledger.code_packages (
  sha256         text primary key check (sha256 ~ '^[0-9a-f]{64}$'),
  -- the zip exactly as uploaded or packed
  zip            bytea not null,
  zipped_size    bigint not null check (zipped_size > 0),
  -- as counted while inflating every file when the package was checked
  unzipped_size  bigint not null check (unzipped_size >= 0),
  file_count     int not null check (file_count >= 1),
  created_at     timestamptz not null default now(),
  -- the name is the content: no row can claim a hash its bytes do not have
  constraint code_packages_content_addressed check (sha256 = encode(sha256(zip), 'hex')),
  constraint code_packages_zipped_size check (zipped_size = octet_length(zip))
);

-- Zips are compressed already: keep them out of line without a second compression pass.
alter table ledger.code_packages alter column zip set storage external;

create function ledger.refuse_code_package_mutation() returns trigger
language plpgsql as $$
begin
  raise exception 'ledger.code_packages is append-only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege',
          hint = 'a code package is named by its content and never changes; store a new package instead';
end $$;

create trigger code_packages_no_update before update on ledger.code_packages
  for each statement execute function ledger.refuse_code_package_mutation();
create trigger code_packages_no_delete before delete on ledger.code_packages
  for each statement execute function ledger.refuse_code_package_mutation();
create trigger code_packages_no_truncate before truncate on ledger.code_packages
  for each statement execute function ledger.refuse_code_package_mutation();

grant select, insert on ledger.code_packages to ledger_app;
revoke update, delete, truncate on ledger.code_packages from public;
