-- Tumbling windows for stream mappings (docs/streams.md, "Tumbling windows"), Lambda's
-- TumblingWindowInSeconds: a shard's records are grouped into windows by their arrival
-- time (a change stream's: the source commit time); each invocation of a window gets the
-- state the previous one of the same window and shard returned, and the window ends with
-- one invocation marked isFinalInvokeForWindow. The open window and its state live on the
-- checkpoint row (per mapping, shard and lane), written in the transaction that moves the
-- checkpoint; each batch records which window it carried.

alter table ledger.stream_mappings
  add column tumbling_window_seconds int not null default 0 check (tumbling_window_seconds between 0 and 900);

alter table ledger.stream_checkpoints
  -- the open window [window_start, window_end) and the state its last invocation returned
  add column window_start timestamptz,
  add column window_end timestamptz,
  add column window_state jsonb,
  -- the state passed 1 MB: the next invocation ends the window early (isWindowTerminatedEarly)
  add column window_terminated_early boolean not null default false,
  -- the end of the last closed window: a record that arrived before it (a put that
  -- committed late) counts in the next window, so a window is never opened twice
  add column window_closed_until timestamptz,
  add constraint stream_checkpoints_window check ((window_start is null) = (window_end is null) and (window_start is null) = (window_state is null));

alter table ledger.stream_batches
  add column window_start timestamptz,
  add column window_end timestamptz,
  add column final_invoke_for_window boolean,
  add column window_terminated_early boolean;

-- the window a batch carried (null without tumbling windows)
create or replace view audit.stream_deliveries as
select
  b.stream_name,
  b.shard_id,
  b.first_sequence_number,
  b.last_sequence_number,
  b.record_count,
  b.mapping_id,
  b.invocation_id,
  i.function_name,
  i.status,
  i.error_type,
  b.created_at as delivered_at,
  m.reason as checkpoint_reason,
  m.to_sequence_number as checkpoint_to,
  b.lane,
  b.sequence_numbers,
  b.window_start,
  b.window_end,
  b.final_invoke_for_window,
  b.window_terminated_early
from ledger.stream_batches b
join ledger.invocations i on i.id = b.invocation_id
left join ledger.stream_checkpoint_moves m on m.invocation_id = b.invocation_id;
