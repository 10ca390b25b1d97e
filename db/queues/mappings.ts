// Event source mappings of a queue to a function: create, read, update, delete, list,
// each change recorded in ledger.changes in the same transaction (docs/changes.md).
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { appendChange } from '../changes.ts';
import type { ChangeContext } from '../control-plane.ts';
import { LedgerError } from '../errors.ts';
import { getFunction, type FunctionVersion } from '../functions.ts';
import { UUID } from '../invocations.ts';
import type { Db, Executor } from '../schema.ts';
import { requireQueue, type Queue } from './queues.ts';
import { mappingInputSchema, mappingUpdateSchema, MESSAGES_CHANNEL, parse } from './schemas.ts';

export interface EventSourceMapping {
  id: string;
  queueName: string;
  functionName: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  reportBatchItemFailures: boolean;
  maximumConcurrency: number | null;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface MappingRow {
  id: string;
  queue_name: string;
  function_name: string;
  batch_size: number;
  max_batching_window_ms: number;
  report_batch_item_failures: boolean;
  maximum_concurrency: number | null;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

export const toMapping = (r: MappingRow): EventSourceMapping => ({
  id: r.id,
  queueName: r.queue_name,
  functionName: r.function_name,
  batchSize: r.batch_size,
  maxBatchingWindowMs: r.max_batching_window_ms,
  reportBatchItemFailures: r.report_batch_item_failures,
  maximumConcurrency: r.maximum_concurrency,
  enabled: r.enabled,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

async function requireLiveFunction(db: Executor, functionName: string): Promise<FunctionVersion> {
  const fn = await getFunction(db, functionName);
  if (!fn) throw new LedgerError('FunctionNotFound', `Function not found: ${functionName}`);
  return fn;
}

/**
 * Like Lambda's SQS mappings: a batch may run for the function's whole timeout, and its
 * messages must not become receivable by another batch meanwhile.
 */
function assertVisibilityCoversTimeout(queue: Queue, fn: FunctionVersion): void {
  if (queue.visibilityTimeoutSeconds * 1000 < fn.timeoutMs) {
    throw new LedgerError(
      'InvalidParameter',
      `Queue visibility timeout: ${queue.visibilityTimeoutSeconds} seconds is less than Function timeout: ${fn.timeoutMs / 1000} seconds`,
    );
  }
}

/** Who made a mapping change (db/control-plane.ts ChangeContext); `system` for a direct library call. */
const SYSTEM: ChangeContext = { actor: 'system' };
/** The stream of a queue mapping in ledger.changes (docs/changes.md): `event_source_mapping` / its UUID. */
export const MAPPING_RESOURCE = 'event_source_mapping';

/** What ledger.changes keeps of a mapping: its settings, not its timestamps. */
function mappingDefinition(m: EventSourceMapping): Record<string, unknown> {
  return {
    queueName: m.queueName,
    functionName: m.functionName,
    batchSize: m.batchSize,
    maxBatchingWindowMs: m.maxBatchingWindowMs,
    reportBatchItemFailures: m.reportBatchItemFailures,
    maximumConcurrency: m.maximumConcurrency,
    enabled: m.enabled,
  };
}

/**
 * Creates a mapping and records it (`created`) in the same transaction. A second mapping
 * of the same queue to the same function is refused (EventSourceMappingExists), as Lambda
 * refuses one for the same queue ARN and function: the queue row is locked while checking,
 * so two concurrent creates cannot both pass.
 */
export async function createEventSourceMapping(db: Db, input: unknown, by: ChangeContext = SYSTEM): Promise<EventSourceMapping> {
  const m = parse(mappingInputSchema, input);
  return db.transaction().execute(async (tx) => {
    const queue = await requireQueue(tx, m.queueName);
    assertVisibilityCoversTimeout(queue, await requireLiveFunction(tx, m.functionName));
    await sql`select 1 from ledger.message_queues where name = ${m.queueName} for no key update`.execute(tx);
    const existing = await listEventSourceMappings(tx, { queueName: m.queueName, functionName: m.functionName });
    if (existing[0]) {
      throw new LedgerError(
        'EventSourceMappingExists',
        `An event source mapping of queue ${m.queueName} to function ${m.functionName} already exists: update or delete the mapping with UUID ${existing[0].id}`,
        { uuid: existing[0].id },
      );
    }
    const { rows } = await sql<MappingRow>`
      insert into ledger.event_source_mappings (id, queue_name, function_name, batch_size, max_batching_window_ms,
        report_batch_item_failures, maximum_concurrency, enabled)
      values (${randomUUID()}::uuid, ${m.queueName}, ${m.functionName}, ${m.batchSize}, ${m.maxBatchingWindowMs},
        ${m.reportBatchItemFailures}, ${m.maximumConcurrency}, ${m.enabled})
      returning *`.execute(tx);
    const created = toMapping(rows[0] as MappingRow);
    await appendChange(tx, {
      resourceType: MAPPING_RESOURCE,
      resourceName: created.id,
      action: 'created',
      actor: by.actor,
      requestId: by.requestId,
      data: { before: null, after: mappingDefinition(created) },
      expectedSeq: 0,
    });
    if (m.enabled) await sql`select pg_notify(${MESSAGES_CHANNEL}, ${m.queueName})`.execute(tx);
    return created;
  });
}

export async function getEventSourceMapping(db: Executor, id: string): Promise<EventSourceMapping | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<MappingRow>`select * from ledger.event_source_mappings where id = ${id}::uuid`.execute(db);
  return rows[0] ? toMapping(rows[0]) : null;
}

const mappingNotFound = (id: string) => new LedgerError('EventSourceMappingNotFound', `Event source mapping not found: ${id}`);

/** The keys whose values differ, before and after. */
function mappingDiff(before: EventSourceMapping, after: EventSourceMapping): { before: Record<string, unknown>; after: Record<string, unknown> } {
  const b = mappingDefinition(before);
  const a = mappingDefinition(after);
  const changed = Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return { before: Object.fromEntries(changed.map((k) => [k, b[k]])), after: Object.fromEntries(changed.map((k) => [k, a[k]])) };
}

/**
 * Applies a partial change; `enabled: false` stops new batches (running ones finish).
 * Recorded as `enabled` or `disabled` when that is all that changed, else `updated`,
 * with the settings before and after; a change that changes nothing writes nothing.
 */
export async function updateEventSourceMapping(db: Db, id: string, patch: unknown, by: ChangeContext = SYSTEM): Promise<EventSourceMapping> {
  const p = parse(mappingUpdateSchema, patch);
  if (!UUID.test(id)) throw mappingNotFound(id);
  return db.transaction().execute(async (tx) => {
    const { rows: locked } = await sql<MappingRow>`select * from ledger.event_source_mappings where id = ${id}::uuid for update`.execute(tx);
    if (!locked[0]) throw mappingNotFound(id);
    const current = toMapping(locked[0]);
    if (p.functionName !== undefined && p.functionName !== current.functionName) {
      const fn = await requireLiveFunction(tx, p.functionName);
      assertVisibilityCoversTimeout(await requireQueue(tx, current.queueName), fn);
      await sql`select 1 from ledger.message_queues where name = ${current.queueName} for no key update`.execute(tx);
      const existing = await listEventSourceMappings(tx, { queueName: current.queueName, functionName: p.functionName });
      if (existing[0]) {
        throw new LedgerError(
          'EventSourceMappingExists',
          `An event source mapping of queue ${current.queueName} to function ${p.functionName} already exists (UUID ${existing[0].id})`,
          { uuid: existing[0].id },
        );
      }
    }
    const next: EventSourceMapping = {
      ...current,
      ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)),
    };
    const d = mappingDiff(current, next);
    if (Object.keys(d.after).length === 0) return current;
    const { rows } = await sql<MappingRow>`
      update ledger.event_source_mappings set
        function_name = ${next.functionName},
        batch_size = ${next.batchSize}::int,
        max_batching_window_ms = ${next.maxBatchingWindowMs}::int,
        report_batch_item_failures = ${next.reportBatchItemFailures}::boolean,
        maximum_concurrency = ${next.maximumConcurrency}::int,
        enabled = ${next.enabled}::boolean,
        updated_at = now()
      where id = ${id}::uuid
      returning *`.execute(tx);
    const updated = toMapping(rows[0] as MappingRow);
    const onlyEnabled = Object.keys(d.after).length === 1 && 'enabled' in d.after;
    await appendChange(tx, {
      resourceType: MAPPING_RESOURCE,
      resourceName: id,
      action: onlyEnabled ? (updated.enabled ? 'enabled' : 'disabled') : 'updated',
      actor: by.actor,
      requestId: by.requestId,
      data: d,
    });
    if (updated.enabled) await sql`select pg_notify(${MESSAGES_CHANNEL}, ${updated.queueName})`.execute(tx);
    return updated;
  });
}

/** Deletes the mapping and records it (`deleted`); batches already running finish and settle their messages. */
export async function deleteEventSourceMapping(db: Db, id: string, by: ChangeContext = SYSTEM): Promise<EventSourceMapping> {
  if (!UUID.test(id)) throw mappingNotFound(id);
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<MappingRow>`delete from ledger.event_source_mappings where id = ${id}::uuid returning *`.execute(tx);
    if (!rows[0]) throw mappingNotFound(id);
    const deleted = toMapping(rows[0]);
    await appendChange(tx, {
      resourceType: MAPPING_RESOURCE,
      resourceName: id,
      action: 'deleted',
      actor: by.actor,
      requestId: by.requestId,
      data: { before: mappingDefinition(deleted), after: null },
    });
    return deleted;
  });
}

export async function listEventSourceMappings(
  db: Executor,
  filter: { queueName?: string | null; functionName?: string | null } = {},
): Promise<EventSourceMapping[]> {
  const { rows } = await sql<MappingRow>`
    select * from ledger.event_source_mappings
    where (${filter.queueName ?? null}::text is null or queue_name = ${filter.queueName ?? null})
      and (${filter.functionName ?? null}::text is null or function_name = ${filter.functionName ?? null})
    order by created_at, id`.execute(db);
  return rows.map(toMapping);
}
