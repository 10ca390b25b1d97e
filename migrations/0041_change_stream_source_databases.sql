-- Change streams from a table in another PostgreSQL database (docs/streams.md, "Source
-- tables in another database"): the source's connection string, sealed with the server's
-- secret key as broker URLs are (db/brokers.ts), and where it points without credentials.
-- All three null: the table is in the ledger's own database.
alter table ledger.change_sources
  add column connection_format text check (connection_format = 'aes-256-gcm'),
  add column connection_sealed bytea,
  -- host:port/database, never user info: what people and metrics see
  add column source_endpoint text,
  add constraint change_sources_connection_whole check (
    (connection_format is null) = (connection_sealed is null) and (connection_format is null) = (source_endpoint is null));
