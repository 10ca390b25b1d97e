-- Recursive loops through queues (docs/worker.md): a message remembers how deep in a
-- chain of invocations the sender was, so the poll invocation delivering it is one hop
-- deeper, and a loop through a queue is stopped like one through destinations. Like the
-- body, it is what was sent: no update grant (0006 grants updates column by column).
alter table ledger.messages add column chain_depth int not null default 0 check (chain_depth >= 0);
