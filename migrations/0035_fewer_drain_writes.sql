-- A claim turns a runnable ledger.queue row into a leased one (locked_by, lease_expires_at
-- set): that update cannot be HOT, so it writes an entry into every index whose predicate
-- the new version meets. Two indexes held the same rows, the leased ones:
-- queue_function_running (function_name) for the reservedConcurrency count
-- (db/concurrency.ts) and queue_leases (lease_expires_at) for the reaper
-- (db/claims.ts). One index keyed by both serves both, and a claim writes one entry
-- fewer: about 73 B of WAL per drained job (docs/benchmarks.md, "Issue 26, second round").
-- The reaper's scan is bounded by the attempts in flight, which is what the index holds.
drop index ledger.queue_function_running;
drop index ledger.queue_leases;
create index queue_leases on ledger.queue (function_name, lease_expires_at) where locked_by is not null;

-- The projection row of a drained invocation gets two new versions (started, succeeded)
-- before vacuum comes by. With fillfactor 50 (0034) a page has room for one more version
-- of each row; the second fits only once the first old version is pruned, which any
-- transaction of the database still running holds back, so 35-45 % of the projection's
-- updates in a full-scale drain were not HOT (each one a new entry in every index of the
-- table and a row-lock record: about 470 B of WAL). A third of the page for new rows
-- leaves room for both versions. Pages written from now on; a full-page image leaves
-- the free space out, so it does not grow with it.
alter table ledger.invocations set (fillfactor = 30);
