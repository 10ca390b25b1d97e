// Table types for Kysely: one Database interface, row types derived from it.
import type { ColumnType, Generated, Insertable, Kysely, Selectable, Transaction } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json = ColumnType<unknown, string, string>;

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

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  applied_at: Generated<Date>;
}

export interface Database {
  'ledger.functions': FunctionsTable;
  'ledger.function_versions': FunctionVersionsTable;
  'ledger.function_concurrency': FunctionConcurrencyTable;
  'ledger.events': EventsTable;
  'ledger.invocations': InvocationsTable;
  'ledger.queue': QueueTable;
  'ledger.idempotency_keys': IdempotencyKeysTable;
  'ledger.attempt_logs': AttemptLogsTable;
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
