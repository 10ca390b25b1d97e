-- The ledger.invocations projection is updated in place by every event (docs/benchmarks.md,
-- "What moved the numbers"). An update is HOT (one new heap tuple on the same page, no
-- index entry) only when no indexed column changes, predicates of partial indexes
-- included. `status` was in three predicates and `finished_at` in a key, so `started` and
-- `succeeded` each wrote a new entry into every index of the table.
--
-- Here the indexes keep only columns that a drained invocation never changes after its
-- accept (id, function_name, accepted_at), or that change only when it fails or is
-- dead-lettered or redriven (error_type, dead_letter_reason):
--
-- * Dead letters are found by `dead_letter_reason is not null`, which holds exactly while
--   status is 'dead_lettered' (the reason is set by `dead_lettered` and cleared by
--   `redriven`, docs/event-model.md); the constraint below holds every new row to it.
--   Listing is newest accepted first, as every invocation list is.
-- * Unfinished invocations are exactly the rows of ledger.queue (the writer keeps a queue
--   row for every invocation that is not terminal), so a status filter on queued, running
--   or retry_scheduled reads the queue instead of an index over the whole projection.

drop index ledger.invocations_unfinished;
drop index ledger.invocations_dead_letters;
drop index ledger.invocations_dead_letters_error;

create index invocations_dead_letters on ledger.invocations (function_name, accepted_at desc, id desc)
  where dead_letter_reason is not null;
create index invocations_dead_letters_error on ledger.invocations (error_type, accepted_at desc, id desc)
  where dead_letter_reason is not null;

-- new rows only: a row written before this migration is not scanned here
alter table ledger.invocations add constraint invocations_dead_letter_reason_check
  check ((status = 'dead_lettered') = (dead_letter_reason is not null)) not valid;

-- room on each page for the next version of its rows, so the update can stay on the page
-- (applies to pages written from now on)
alter table ledger.invocations set (fillfactor = 50);
