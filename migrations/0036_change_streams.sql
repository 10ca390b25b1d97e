-- Change streams from PostgreSQL tables (docs/streams.md, "Change streams from PostgreSQL
-- tables"): a table's row changes, read through logical replication (pgoutput, one
-- publication and one replication slot per mapping), are appended in commit order to a
-- stream of the ledger's own that only this mapping reads. The stream mapping machinery
-- (checkpoints, retries, bisect, on-failure) delivers them; records carry the commit LSN
-- of their transaction so the slot is confirmed only past changes whose batches settled.

-- the source table of a change stream mapping (`schema.table`); null for a native stream's
alter table ledger.stream_mappings add column source_table text;

-- the commit LSN of the source transaction a change record came from; null for put records
alter table ledger.stream_records add column source_lsn pg_lsn;

create table ledger.change_sources (
  mapping_id        uuid primary key references ledger.stream_mappings (id) on delete cascade,
  stream_name       text not null references ledger.streams (name),
  schema_name       text not null,
  table_name        text not null,
  -- the table's primary key columns, in key order: dynamodb.Keys and the partition key
  key_columns       text[] not null check (cardinality(key_columns) > 0),
  stream_view_type  text not null check (stream_view_type in ('KEYS_ONLY', 'NEW_IMAGE', 'OLD_IMAGE', 'NEW_AND_OLD_IMAGES')),
  slot_name         text not null unique check (slot_name ~ '^ledger_cs_[0-9a-f]{32}$'),
  publication_name  text not null unique check (publication_name ~ '^ledger_cs_[0-9a-f]{32}$'),
  -- every source transaction up to this commit LSN is in stream_records: a transaction
  -- the slot sends again (after a restart) is not appended twice
  ingested_lsn      pg_lsn not null,
  created_at        timestamptz not null default now()
);

grant select, insert, update, delete on ledger.change_sources to ledger_app;
