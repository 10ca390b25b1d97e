-- The control plane (docs/control-plane.md): published versions and aliases, beside the
-- function registry of 0001. Every write to these tables is made in the same transaction
-- as its row in ledger.changes (0017), which keeps the history; these tables keep only
-- what is current.

-- A name deleted and created again starts a new life at this version: versions before it
-- belong to the earlier function of that name and are not listed.
alter table ledger.functions add column first_version int not null default 1 check (first_version >= 1);

-- Lambda's published versions: a function version frozen under its number. Immutable,
-- like the versions themselves.
create table ledger.published_versions (
  name          text not null,
  version       int not null,
  description   text not null default '' check (length(description) <= 256),
  published_at  timestamptz not null default statement_timestamp(),
  primary key (name, version),
  -- not a foreign key to function_versions: that would change how a TRUNCATE of the
  -- versions is refused (by the foreign key rather than their append-only trigger);
  -- a version is published only as it is read under the function's lock (db/control-plane.ts)
  foreign key (name) references ledger.functions (name)
);

create trigger published_versions_immutable before update or delete or truncate on ledger.published_versions
  for each statement execute function ledger.refuse_mutation();

grant select, insert on ledger.published_versions to ledger_app;
revoke update, delete, truncate on ledger.published_versions from public;

-- An alias names a published version and, optionally, a second one with a share of the
-- traffic (Lambda's RoutingConfig.AdditionalVersionWeights). Current state only: its
-- history, weights included, is in ledger.changes (resource_type 'alias').
create table ledger.function_aliases (
  name              text not null references ledger.functions (name),
  alias             text not null check (alias ~ '^[a-zA-Z0-9_-]{1,128}$' and alias !~ '^[0-9]+$'),
  function_version  int not null check (function_version >= 1),
  -- {"<version>": weight between 0 and 1}
  additional_weights jsonb not null default '{}' check (jsonb_typeof(additional_weights) = 'object'),
  description       text not null default '' check (length(description) <= 256),
  created_at        timestamptz not null default statement_timestamp(),
  updated_at        timestamptz not null default statement_timestamp(),
  primary key (name, alias)
);

grant select, insert, update, delete on ledger.function_aliases to ledger_app;
