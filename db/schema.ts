// Table types for Kysely: one Database interface holding every table of the ledger
// schema, row types derived from it. db/schema.int.spec.ts compares it with a migrated
// database (tables, columns, nullability, the kind of value pg returns), so a migration
// that adds, drops or changes a column fails there until this file says the same.
// Values are typed as node-postgres returns them: int8 and numeric as strings, timestamps
// as Dates (db/timestamptz.ts), json as parsed values, bytea as Buffers.
import type { ColumnType, Generated, Insertable, Kysely, Selectable, Transaction } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json = ColumnType<unknown, string, string>;
/** pg parses an interval into an object; code reads it as `keep::text` and writes text. */
type Interval = ColumnType<object, string, string>;

export interface FunctionsTable {
  name: string;
  latest_version: number;
  first_version: ColumnType<number, number | undefined, number>;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  deleted_at: Timestamp | null;
}

export interface FunctionVersionsTable {
  name: string;
  version: number;
  config: ColumnType<Record<string, unknown>, string, never>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
}

export interface FunctionConcurrencyTable {
  name: string;
  reserved: number;
}

export interface EventsTable {
  position: ColumnType<string, never, never>;
  invocation_id: string;
  seq: number;
  type: string;
  attempt: number | null;
  data: Json;
  occurred_at: ColumnType<Date, Date | string | undefined, never>;
  tx_id: ColumnType<string, never, never>;
}

export interface InvocationsTable {
  id: string;
  function_name: string;
  function_version: number;
  invocation_type: string;
  status: string;
  attempts: number;
  failures_since_redrive: number;
  last_seq: number;
  last_event_type: string;
  idempotency_key: string | null;
  error_type: string | null;
  dead_letter_reason: string | null;
  accepted_at: Timestamp;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  updated_at: Timestamp;
}

export interface QueueTable {
  invocation_id: string;
  function_name: string;
  function_version: number;
  invocation_type: string;
  attempt: number;
  run_at: Timestamp;
  accepted_at: Timestamp;
  locked_by: string | null;
  lease_expires_at: Timestamp | null;
}

export interface IdempotencyKeysTable {
  function_name: string;
  key: string;
  invocation_id: string;
  expires_at: Timestamp;
}

export interface AttemptLogsTable {
  invocation_id: string;
  attempt: number;
  log: string;
}

// ---------------------------------------------------------------------------------
// the other tables, in name order

/** Write-once but for revoked_at (migrations/0006): no other column can be updated. */
export interface ApiKeysTable {
  id: ColumnType<string, string, never>;
  name: ColumnType<string | null, string | null, never>;
  scopes: ColumnType<string[], string[], never>;
  secret_sha256: ColumnType<Buffer, Buffer, never>;
  sigv4_secret_format: ColumnType<'plain' | 'aes-256-gcm', 'plain' | 'aes-256-gcm', never>;
  sigv4_secret: ColumnType<Buffer, Buffer, never>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  revoked_at: Timestamp | null;
}

export interface ArchiveLogTable {
  id: ColumnType<string, never, never>;
  action: string;
  partition_name: string;
  range_from: string;
  range_to: string;
  event_count: string;
  invocation_count: string;
  first_position: string | null;
  last_position: string | null;
  first_occurred_at: Timestamp | null;
  last_occurred_at: Timestamp | null;
  manifest_sha256: string;
  location: string;
  restored_into: string | null;
  actor: Generated<string>;
  at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface BrokerMappingsTable {
  id: string;
  broker: string;
  function_name: string;
  connection_format: string;
  connection_sealed: Buffer;
  endpoint: string;
  virtual_host: string | null;
  queue: string | null;
  max_delivery_count: number | null;
  stream: string | null;
  subject_filter: string | null;
  starting_position: string | null;
  starting_position_timestamp: Timestamp | null;
  max_retry_attempts: number | null;
  on_failure_queue: string | null;
  batch_size: number;
  max_batching_window_ms: number;
  report_batch_item_failures: boolean;
  enabled: boolean;
  state: Generated<string>;
  state_reason: string | null;
  state_changed_at: ColumnType<Date, Date | string | undefined, Date | string>;
  lag: string | null;
  lag_at: Timestamp | null;
  consumer_worker_id: string | null;
  consumer_expires_at: Timestamp | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface BrokerMessagesDoneTable {
  mapping_id: string;
  message_key: string;
  invocation_id: string;
  done_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface ChangeSourcesTable {
  mapping_id: string;
  stream_name: string;
  schema_name: string;
  table_name: string;
  key_columns: string[];
  stream_view_type: string;
  slot_name: string;
  publication_name: string;
  ingested_lsn: string;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  /** 0041: a source table in another database (sealed connection string), all null for the ledger's own */
  connection_format: string | null;
  connection_sealed: Buffer | null;
  source_endpoint: string | null;
}

export interface ChangesTable {
  position: ColumnType<string, never, never>;
  resource_type: string;
  resource_name: string;
  seq: number;
  action: string;
  actor: string;
  request_id: string | null;
  data: ColumnType<unknown, string | undefined, string>;
  occurred_at: ColumnType<Date, Date | string | undefined, Date | string>;
  tx_id: Generated<string>;
}

export interface CodePackagesTable {
  sha256: string;
  zip: Buffer;
  zipped_size: string;
  unzipped_size: string;
  file_count: number;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface DestinationDeliveriesTable {
  id: ColumnType<string, never, never>;
  invocation_id: string;
  invoke_count: number;
  condition: string;
  destination: string;
  record: Json;
  status: Generated<string>;
  attempts: Generated<number>;
  last_error: string | null;
  last_status_code: number | null;
  target_invocation_id: string | null;
  next_attempt_at: ColumnType<Date, Date | string | undefined, Date | string>;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  delivered_at: Timestamp | null;
}

export interface EventPartitionLogTable {
  partition_name: string;
  range_from: string;
  range_to: string;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface EventSourceMappingsTable {
  id: string;
  queue_name: string;
  function_name: string;
  batch_size: number;
  max_batching_window_ms: number;
  report_batch_item_failures: boolean;
  maximum_concurrency: number | null;
  enabled: boolean;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface FunctionAliasesTable {
  name: string;
  alias: string;
  function_version: number;
  additional_weights: ColumnType<unknown, string | undefined, string>;
  description: Generated<string>;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface MerkleLeafBlocksTable {
  block_index: string;
  last_tx_id: string;
  last_position: string;
  positions: string[];
  leaf_hashes: Buffer;
  root_hash: Buffer;
}

export interface MerkleNodesTable {
  level: number;
  node_index: string;
  hash: Buffer;
}

export interface MessageBatchesTable {
  invocation_id: string;
  mapping_id: string;
  worker_id: string;
  message_count: number;
  expires_at: Timestamp;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface MessageQueuesTable {
  name: string;
  visibility_timeout_seconds: number;
  max_receive_count: number;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface MessagesTable {
  id: string;
  seq: ColumnType<string, never, never>;
  queue_name: string;
  body: Json;
  body_bytes: number;
  sent_at: ColumnType<Date, Date | string | undefined, Date | string>;
  visible_at: Timestamp;
  receive_count: Generated<number>;
  first_received_at: Timestamp | null;
  receipt: string | null;
  dead_lettered_at: Timestamp | null;
  dead_letter_reason: string | null;
  chain_depth: Generated<number>;
}

export interface PublishedVersionsTable {
  name: string;
  version: number;
  description: Generated<string>;
  published_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface ReplayItemsTable {
  replay_id: string;
  ordinal: number;
  original_id: string;
  invocation_id: string | null;
}

export interface ReplaysTable {
  id: string;
  function_name: string;
  target: string;
  target_version: number;
  selection: ColumnType<unknown, string | undefined, string>;
  concurrency: number;
  total: number;
  created_by: string | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface RetentionPurgesTable {
  id: ColumnType<string, never, never>;
  run_id: string;
  kind: string;
  rule_id: string;
  keep: Interval;
  cutoff: Timestamp;
  removed: number;
  first_key: string;
  last_key: string;
  oldest_at: Timestamp | null;
  newest_at: Timestamp | null;
  content_sha256: string;
  detail: ColumnType<unknown, string | undefined, string>;
  actor: Generated<string>;
  at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface RetentionRulesTable {
  id: ColumnType<string, never, never>;
  kind: string;
  keep: Interval | null;
  actor: Generated<string>;
  at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface ScheduleTicksTable {
  schedule_id: string;
  schedule_name: string;
  group_name: string;
  scheduled_time: Timestamp;
  outcome: string;
  skip_reason: string | null;
  fire_at: Timestamp | null;
  flexible_offset_ms: Generated<number>;
  late: Generated<boolean>;
  invocation_id: string | null;
  execution_id: string | null;
  decided_at: Timestamp;
  decided_by: string;
  recorded_at: ColumnType<Date, Date | string | undefined, Date | string>;
  tx_id: Generated<string>;
}

export interface SchedulerClockTable {
  only_row: Generated<boolean>;
  offset_ms: Generated<string>;
}

export interface SchedulesTable {
  id: string;
  group_name: Generated<string>;
  name: string;
  description: string | null;
  expression: string;
  timezone: Generated<string>;
  start_date: Timestamp | null;
  end_date: Timestamp | null;
  state: Generated<string>;
  flexible_window_minutes: number | null;
  target_function: string;
  target_qualifier: string | null;
  target_input: string | null;
  target_role_arn: string | null;
  max_retry_attempts: Generated<number>;
  max_event_age_seconds: Generated<number>;
  dead_letter_arn: string | null;
  misfire_mode: Generated<string>;
  max_catch_up: number | null;
  action_after_completion: Generated<string>;
  active_since: Timestamp;
  decided_through: Timestamp;
  next_fire_at: Timestamp | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  applied_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface SealStateTable {
  singleton: Generated<boolean>;
  tree_size: Generated<string>;
  last_tx_id: Generated<string>;
  last_position: Generated<string>;
  root_hash: Generated<Buffer>;
  tail_positions: Generated<string[]>;
  tail_hashes: Generated<Buffer>;
  sealed_by: string | null;
  sealed_at: Timestamp | null;
  lease_holder: string | null;
  lease_until: Timestamp | null;
}

export interface StreamBatchesTable {
  invocation_id: string;
  mapping_id: string;
  stream_name: string;
  shard_id: string;
  first_sequence_number: string;
  last_sequence_number: string;
  record_count: number;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  lane: Generated<number>;
  sequence_numbers: string[] | null;
  window_start: Timestamp | null;
  window_end: Timestamp | null;
  final_invoke_for_window: boolean | null;
  window_terminated_early: boolean | null;
}

export interface StreamCheckpointMovesTable {
  id: ColumnType<string, never, never>;
  mapping_id: string;
  stream_name: string;
  shard_id: string;
  invocation_id: string;
  from_sequence_number: string;
  to_sequence_number: string;
  reason: string;
  moved_at: ColumnType<Date, Date | string | undefined, Date | string>;
  lane: Generated<number>;
}

export interface StreamCheckpointsTable {
  mapping_id: string;
  stream_name: string;
  shard_id: string;
  sequence_number: string;
  held_by: string | null;
  held_until: Timestamp | null;
  retry_attempts: Generated<number>;
  retry_last_sequence_number: string | null;
  retry_at: Timestamp | null;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  lane: Generated<number>;
  window_start: Timestamp | null;
  window_end: Timestamp | null;
  window_state: Json | null;
  window_terminated_early: Generated<boolean>;
  window_closed_until: Timestamp | null;
}

export interface StreamMappingsTable {
  id: string;
  stream_name: string;
  function_name: string;
  starting_position: string;
  starting_position_timestamp: Timestamp | null;
  batch_size: number;
  max_batching_window_ms: number;
  maximum_retry_attempts: number;
  maximum_record_age_seconds: number;
  bisect_batch_on_function_error: boolean;
  report_batch_item_failures: boolean;
  on_failure_destination: string | null;
  enabled: boolean;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  parallelization_factor: Generated<number>;
  source_table: string | null;
  tumbling_window_seconds: Generated<number>;
}

export interface StreamRecordsTable {
  stream_name: string;
  shard_id: string;
  sequence_number: string;
  partition_key: string;
  data: Buffer;
  arrived_at: ColumnType<Date, Date | string | undefined, Date | string>;
  source_lsn: string | null;
}

export interface StreamShardsTable {
  stream_name: string;
  shard_id: string;
  starting_hash_key: string;
  ending_hash_key: string;
  last_sequence_number: Generated<string>;
}

export interface StreamsTable {
  name: string;
  shard_count: number;
  retention_hours: number;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface ThrottleCountsTable {
  minute: Timestamp;
  function_name: string;
  invocation_type: string;
  reason: string;
  count: string;
}

export interface TreeHeadsTable {
  id: ColumnType<string, never, never>;
  tree_size: string;
  timestamp_ms: string;
  root_hash: Buffer;
  key_id: string;
  signature: Buffer;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface Database {
  'ledger.api_keys': ApiKeysTable;
  'ledger.archive_log': ArchiveLogTable;
  'ledger.attempt_logs': AttemptLogsTable;
  'ledger.broker_mappings': BrokerMappingsTable;
  'ledger.broker_messages_done': BrokerMessagesDoneTable;
  'ledger.change_sources': ChangeSourcesTable;
  'ledger.changes': ChangesTable;
  'ledger.code_packages': CodePackagesTable;
  'ledger.destination_deliveries': DestinationDeliveriesTable;
  'ledger.event_partition_log': EventPartitionLogTable;
  'ledger.event_source_mappings': EventSourceMappingsTable;
  'ledger.events': EventsTable;
  'ledger.function_aliases': FunctionAliasesTable;
  'ledger.function_concurrency': FunctionConcurrencyTable;
  'ledger.function_versions': FunctionVersionsTable;
  'ledger.functions': FunctionsTable;
  'ledger.idempotency_keys': IdempotencyKeysTable;
  'ledger.invocations': InvocationsTable;
  'ledger.merkle_leaf_blocks': MerkleLeafBlocksTable;
  'ledger.merkle_nodes': MerkleNodesTable;
  'ledger.message_batches': MessageBatchesTable;
  'ledger.message_queues': MessageQueuesTable;
  'ledger.messages': MessagesTable;
  'ledger.published_versions': PublishedVersionsTable;
  'ledger.queue': QueueTable;
  'ledger.replay_items': ReplayItemsTable;
  'ledger.replays': ReplaysTable;
  'ledger.retention_purges': RetentionPurgesTable;
  'ledger.retention_rules': RetentionRulesTable;
  'ledger.schedule_ticks': ScheduleTicksTable;
  'ledger.scheduler_clock': SchedulerClockTable;
  'ledger.schedules': SchedulesTable;
  'ledger.schema_migrations': SchemaMigrationsTable;
  'ledger.seal_state': SealStateTable;
  'ledger.stream_batches': StreamBatchesTable;
  'ledger.stream_checkpoint_moves': StreamCheckpointMovesTable;
  'ledger.stream_checkpoints': StreamCheckpointsTable;
  'ledger.stream_mappings': StreamMappingsTable;
  'ledger.stream_records': StreamRecordsTable;
  'ledger.stream_shards': StreamShardsTable;
  'ledger.streams': StreamsTable;
  'ledger.throttle_counts': ThrottleCountsTable;
  'ledger.tree_heads': TreeHeadsTable;
}

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Anything queries can run on: the pool-backed instance or an open transaction. */
export type Executor = Db | Tx;

export type EventRow = Selectable<EventsTable>;
export type InvocationRow = Selectable<InvocationsTable>;
export type QueueRow = Selectable<QueueTable>;
export type FunctionVersionRow = Selectable<FunctionVersionsTable>;
export type NewInvocationRow = Insertable<InvocationsTable>;
