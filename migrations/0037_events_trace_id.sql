-- Finding invocations by trace id (GraphQL InvocationFilter.traceId, the console's search;
-- docs/observability.md "Finding an invocation's trace"). The trace id lives only in the
-- `accepted` event's traceparent (`00-<trace id>-<span id>-<flags>`), so without an index
-- the filter reads every accepted event. Partial: only accepted events that carry a
-- traceparent (none when tracing is off). ledger.events is partitioned (0020): an index
-- on the parent is made on every partition, and on each partition attached later.
create index events_accepted_trace_id on ledger.events ((split_part(data ->> 'traceparent', '-', 2)))
  where type = 'accepted' and data ? 'traceparent';
