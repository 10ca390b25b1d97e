-- ledger.function_concurrency.running (0001) was meant as a counter of running attempts
-- and was never written: running attempts are counted from the leased rows of
-- ledger.queue under the function's concurrency row lock (docs/worker.md,
-- reservedConcurrency). A column that always reads 0 would mislead a reader of the
-- schema, so it goes.
alter table ledger.function_concurrency drop column running;
