// Broker event source mappings (docs/brokers.md): a function fed from a RabbitMQ queue or a
// NATS JetStream stream. The broker keeps the messages; this module keeps the mapping, its
// sealed connection URL, the state the consuming worker reports, which worker consumes it,
// and the keys of messages already processed (so a redelivery after a lost ack is not
// invoked again). Each batch is a `poll` invocation written by the worker.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { z } from 'zod';
import { LedgerError } from './errors.ts';
import { FUNCTION_NAME, getFunction, inTransaction } from './functions.ts';
import { appendChange } from './changes.ts';
import type { ChangeContext } from './control-plane.ts';
import { UUID } from './invocations.ts';
import { MIN_SECRET_KEY_LENGTH } from './keys.ts';
import { parse, QUEUE_NAME } from './queues/schemas.ts';
import type { Db, Executor } from './schema.ts';
import { whyNotStorableText } from './storable.ts';

export const BROKERS = ['rabbitmq', 'nats'] as const;
export type Broker = (typeof BROKERS)[number];
export const STARTING_POSITIONS = ['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP'] as const;
export type StartingPosition = (typeof STARTING_POSITIONS)[number];
export const BROKER_MAPPINGS_CHANNEL = 'ledger_broker_mappings';

// ---------------------------------------------------------------------------------
// validation

const storable = (what: string) => (s: string) => whyNotStorableText(s) === null || `${what} cannot be stored`;
const brokerName = (what: string) =>
  z
    .string()
    .min(1, `${what} is required`)
    .max(255)
    .refine((s) => storable(what)(s) === true, `${what} cannot be stored`);

const connectionUrl = (schemes: string[]) =>
  z.string().refine((s) => {
    try {
      return schemes.includes(new URL(s).protocol.replace(/:$/, ''));
    } catch {
      return false;
    }
  }, `url must be a ${schemes.map((x) => `${x}://`).join(' or ')} URL`);

const URLS = { rabbitmq: connectionUrl(['amqp', 'amqps']), nats: connectionUrl(['nats', 'tls']) } as const;

const common = {
  functionName: z.string().regex(FUNCTION_NAME, `functionName must match ${FUNCTION_NAME.source}`),
  batchSize: z.number().int().min(1).max(10_000).default(100),
  maxBatchingWindowMs: z.number().int().min(0).max(300_000).default(500),
  reportBatchItemFailures: z.boolean().default(false),
  enabled: z.boolean().default(true),
};

const rabbitInput = z
  .object({
    broker: z.literal('rabbitmq'),
    url: URLS.rabbitmq,
    virtualHost: z.string().max(255).default('/'),
    queue: brokerName('queue'),
    /** classic queues: deliveries before a failing message is dead-lettered (quorum queues use their own x-delivery-limit) */
    maxDeliveryCount: z.number().int().min(1).max(1_000).default(5),
    ...common,
  })
  .strict();

const natsInput = z
  .object({
    broker: z.literal('nats'),
    url: URLS.nats,
    stream: z.string().regex(/^[A-Za-z0-9_-]{1,255}$/, 'stream must match [A-Za-z0-9_-]{1,255}'),
    subjectFilter: brokerName('subjectFilter').nullable().default(null),
    startingPosition: z.enum(STARTING_POSITIONS).default('TRIM_HORIZON'),
    startingPositionTimestamp: z.coerce.date().nullable().default(null),
    /** -1: retry until the batch succeeds (Lambda's default for streams) */
    maxRetryAttempts: z.number().int().min(-1).max(10_000).default(-1),
    onFailureQueue: z.string().regex(QUEUE_NAME, `onFailureQueue must match ${QUEUE_NAME.source}`).nullable().default(null),
    ...common,
  })
  .strict()
  .refine((m) => (m.startingPosition === 'AT_TIMESTAMP') === (m.startingPositionTimestamp !== null), {
    message: 'startingPositionTimestamp is required with AT_TIMESTAMP, and only then',
  });

export const brokerMappingInputSchema = z.discriminatedUnion('broker', [rabbitInput, natsInput]);
export type BrokerMappingInput = z.input<typeof brokerMappingInputSchema>;

export const brokerMappingUpdateSchema = z
  .object({
    /** new credentials or host; same scheme family as the broker (checked against the mapping) */
    url: z.string().optional(),
    functionName: common.functionName.optional(),
    batchSize: z.number().int().min(1).max(10_000).optional(),
    maxBatchingWindowMs: z.number().int().min(0).max(300_000).optional(),
    reportBatchItemFailures: z.boolean().optional(),
    enabled: z.boolean().optional(),
  })
  .strict();
export type BrokerMappingUpdate = z.input<typeof brokerMappingUpdateSchema>;

// ---------------------------------------------------------------------------------
// the sealed connection URL

export type ConnectionFormat = 'plain' | 'aes-256-gcm';

function encryptionKey(secretKey: string): Buffer {
  if (secretKey.length < MIN_SECRET_KEY_LENGTH) {
    throw new LedgerError('InvalidParameter', `LEDGER_SECRET_KEY must be at least ${MIN_SECRET_KEY_LENGTH} characters`);
  }
  return Buffer.from(hkdfSync('sha256', secretKey, 'invoke-ledger', 'broker connection url', 32));
}

/** Seals a connection URL for the row `id` (AES-256-GCM under the server's secret key; plain without one). Change stream source databases use it too. */
export function sealUrl(id: string, url: string, secretKey: string | null | undefined): { format: ConnectionFormat; sealed: Buffer } {
  if (!secretKey) return { format: 'plain', sealed: Buffer.from(url, 'utf8') };
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', encryptionKey(secretKey), iv);
  cipher.setAAD(Buffer.from(id, 'utf8')); // a sealed URL copied onto another mapping does not open
  const ct = Buffer.concat([cipher.update(url, 'utf8'), cipher.final()]);
  return { format: 'aes-256-gcm', sealed: Buffer.concat([iv, cipher.getAuthTag(), ct]) };
}

/** The connection URL of a mapping; throws when it is sealed and the key is missing or another one. */
export function openConnectionUrl(m: { id: string; connectionFormat: ConnectionFormat; connectionSealed: Buffer }, secretKey: string | null | undefined, what = 'broker mapping'): string {
  if (m.connectionFormat === 'plain') return m.connectionSealed.toString('utf8');
  if (!secretKey) throw new Error(`the connection URL of ${what} ${m.id} is sealed, and LEDGER_SECRET_KEY is not set`);
  const decipher = createDecipheriv('aes-256-gcm', encryptionKey(secretKey), m.connectionSealed.subarray(0, 12));
  decipher.setAAD(Buffer.from(m.id, 'utf8'));
  decipher.setAuthTag(m.connectionSealed.subarray(12, 28));
  try {
    return Buffer.concat([decipher.update(m.connectionSealed.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    throw new Error(`the connection URL of ${what} ${m.id} does not open with this LEDGER_SECRET_KEY`);
  }
}

/** The URL without user info, query or fragment: what people see. */
export function endpointOf(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

// ---------------------------------------------------------------------------------
// mappings

export interface BrokerMapping {
  id: string;
  broker: Broker;
  functionName: string;
  /** scheme://host:port, without credentials */
  endpoint: string;
  virtualHost: string | null;
  queue: string | null;
  maxDeliveryCount: number | null;
  stream: string | null;
  subjectFilter: string | null;
  startingPosition: StartingPosition | null;
  startingPositionTimestamp: Date | null;
  maxRetryAttempts: number | null;
  onFailureQueue: string | null;
  batchSize: number;
  maxBatchingWindowMs: number;
  reportBatchItemFailures: boolean;
  enabled: boolean;
  state: string;
  stateReason: string | null;
  stateChangedAt: Date;
  /** messages not yet delivered, as the broker last reported; null until known */
  lag: number | null;
  lagAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A mapping as the consuming worker needs it (with the sealed URL). */
export interface ConsumableBrokerMapping extends BrokerMapping {
  connectionFormat: ConnectionFormat;
  connectionSealed: Buffer;
  /** latest version of the function; null when it was deleted */
  functionVersion: number | null;
}

interface Row {
  id: string;
  broker: Broker;
  function_name: string;
  connection_format: ConnectionFormat;
  connection_sealed: Buffer;
  endpoint: string;
  virtual_host: string | null;
  queue: string | null;
  max_delivery_count: number | null;
  stream: string | null;
  subject_filter: string | null;
  starting_position: StartingPosition | null;
  starting_position_timestamp: Date | null;
  max_retry_attempts: number | null;
  on_failure_queue: string | null;
  batch_size: number;
  max_batching_window_ms: number;
  report_batch_item_failures: boolean;
  enabled: boolean;
  state: string;
  state_reason: string | null;
  state_changed_at: Date;
  lag: string | null;
  lag_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const toMapping = (r: Row): BrokerMapping => ({
  id: r.id,
  broker: r.broker,
  functionName: r.function_name,
  endpoint: r.endpoint,
  virtualHost: r.virtual_host,
  queue: r.queue,
  maxDeliveryCount: r.max_delivery_count,
  stream: r.stream,
  subjectFilter: r.subject_filter,
  startingPosition: r.starting_position,
  startingPositionTimestamp: r.starting_position_timestamp,
  maxRetryAttempts: r.max_retry_attempts,
  onFailureQueue: r.on_failure_queue,
  batchSize: r.batch_size,
  maxBatchingWindowMs: r.max_batching_window_ms,
  reportBatchItemFailures: r.report_batch_item_failures,
  enabled: r.enabled,
  state: r.state,
  stateReason: r.state_reason,
  stateChangedAt: r.state_changed_at,
  lag: r.lag === null ? null : Number(r.lag),
  lagAt: r.lag_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** A mapping's stream in ledger.changes; its id is a UUID, so it never meets another mapping's. */
export const BROKER_MAPPING_CHANGES = 'event_source_mapping';

/**
 * What a change records of a mapping: its definition, not the worker's reports (state,
 * lag, hold). Never the connection URL, not even sealed: `endpoint` only.
 */
function definitionOf(m: BrokerMapping): Record<string, unknown> {
  const { state: _s, stateReason: _r, stateChangedAt: _c, lag: _l, lagAt: _a, createdAt: _ca, updatedAt: _u, id: _id, ...definition } = m;
  return Object.fromEntries(Object.entries(definition).filter(([, v]) => v !== null));
}

/** The keys whose values differ, before and after; `url` says that the URL changed, never what it is. */
function diffOf(before: BrokerMapping, after: BrokerMapping, urlChanged: boolean): { before: Record<string, unknown>; after: Record<string, unknown> } {
  const b = definitionOf(before);
  const a = definitionOf(after);
  const out = { before: {} as Record<string, unknown>, after: {} as Record<string, unknown> };
  for (const key of new Set([...Object.keys(b), ...Object.keys(a)])) {
    if (JSON.stringify(b[key]) !== JSON.stringify(a[key])) {
      out.before[key] = b[key] ?? null;
      out.after[key] = a[key] ?? null;
    }
  }
  if (urlChanged) {
    out.before['url'] = '(sealed)';
    out.after['url'] = '(changed)';
  }
  return out;
}

const notFound = (id: string) => new LedgerError('EventSourceMappingNotFound', `Event source mapping not found: ${id}`);
const notify = (db: Executor, id: string) => sql`select pg_notify(${BROKER_MAPPINGS_CHANNEL}, ${id})`.execute(db);

export async function createBrokerMapping(db: Db, ctx: ChangeContext, input: unknown, options: { secretKey?: string | null } = {}): Promise<BrokerMapping> {
  const m = parse(brokerMappingInputSchema, input);
  const id = randomUUID();
  const { format, sealed } = sealUrl(id, m.url, options.secretKey);
  return db.transaction().execute(async (tx) => {
    const fn = await getFunction(tx, m.functionName);
    if (!fn) throw new LedgerError('FunctionNotFound', `Function not found: ${m.functionName}`);
    const rabbit = m.broker === 'rabbitmq' ? m : null;
    const nats = m.broker === 'nats' ? m : null;
    if (nats?.onFailureQueue) {
      const { rows } = await sql`select 1 from ledger.message_queues where name = ${nats.onFailureQueue}`.execute(tx);
      if (rows.length === 0) throw new LedgerError('QueueNotFound', `Queue not found: ${nats.onFailureQueue}`);
    }
    const { rows } = await sql<Row>`
      insert into ledger.broker_mappings (id, broker, function_name, connection_format, connection_sealed, endpoint,
        virtual_host, queue, max_delivery_count, stream, subject_filter, starting_position, starting_position_timestamp,
        max_retry_attempts, on_failure_queue, batch_size, max_batching_window_ms, report_batch_item_failures, enabled, state)
      values (${id}::uuid, ${m.broker}, ${m.functionName}, ${format}, ${sealed}, ${endpointOf(m.url)},
        ${rabbit?.virtualHost ?? null}, ${rabbit?.queue ?? null}, ${rabbit?.maxDeliveryCount ?? null},
        ${nats?.stream ?? null}, ${nats?.subjectFilter ?? null}, ${nats?.startingPosition ?? null}, ${nats?.startingPositionTimestamp ?? null},
        ${nats?.maxRetryAttempts ?? null}, ${nats?.onFailureQueue ?? null},
        ${m.batchSize}, ${m.maxBatchingWindowMs}, ${m.reportBatchItemFailures}, ${m.enabled}, ${m.enabled ? 'Creating' : 'Disabled'})
      returning *`.execute(tx);
    const created = toMapping(rows[0] as Row);
    await appendChange(tx, { resourceType: BROKER_MAPPING_CHANGES, resourceName: id, action: 'created', actor: ctx.actor, requestId: ctx.requestId, data: { before: null, after: definitionOf(created) } });
    await notify(tx, id);
    return created;
  });
}

export async function getBrokerMapping(db: Executor, id: string): Promise<BrokerMapping | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<Row>`select * from ledger.broker_mappings where id = ${id}::uuid`.execute(db);
  return rows[0] ? toMapping(rows[0]) : null;
}

export async function listBrokerMappings(db: Executor, filter: { functionName?: string | null } = {}): Promise<BrokerMapping[]> {
  const { rows } = await sql<Row>`
    select * from ledger.broker_mappings
    where ${filter.functionName ?? null}::text is null or function_name = ${filter.functionName ?? null}
    order by created_at, id`.execute(db);
  return rows.map(toMapping);
}

/** A partial change; `enabled: false` stops consumption (the batch running finishes first). */
export async function updateBrokerMapping(db: Db, ctx: ChangeContext, id: string, patch: unknown, options: { secretKey?: string | null } = {}): Promise<BrokerMapping> {
  const p = parse(brokerMappingUpdateSchema, patch);
  if (!UUID.test(id)) throw notFound(id);
  return db.transaction().execute(async (tx) => {
    const { rows: old } = await sql<Row>`select * from ledger.broker_mappings where id = ${id}::uuid for update`.execute(tx);
    if (!old[0]) throw notFound(id);
    const before = toMapping(old[0]);
    if (p.functionName !== undefined && !(await getFunction(tx, p.functionName))) {
      throw new LedgerError('FunctionNotFound', `Function not found: ${p.functionName}`);
    }
    let connection: { format: ConnectionFormat; sealed: Buffer; endpoint: string } | null = null;
    if (p.url !== undefined) {
      const url = parse(z.object({ url: URLS[before.broker] }), { url: p.url }).url;
      connection = { ...sealUrl(id, url, options.secretKey), endpoint: endpointOf(url) };
    }
    const set = (v: unknown) => v !== undefined;
    const { rows } = await sql<Row>`
      update ledger.broker_mappings set
        connection_format = coalesce(${connection?.format ?? null}, connection_format),
        connection_sealed = coalesce(${connection?.sealed ?? null}::bytea, connection_sealed),
        endpoint = coalesce(${connection?.endpoint ?? null}, endpoint),
        function_name = case when ${set(p.functionName)} then ${p.functionName ?? null} else function_name end,
        batch_size = case when ${set(p.batchSize)} then ${p.batchSize ?? null}::int else batch_size end,
        max_batching_window_ms = case when ${set(p.maxBatchingWindowMs)} then ${p.maxBatchingWindowMs ?? null}::int else max_batching_window_ms end,
        report_batch_item_failures = case when ${set(p.reportBatchItemFailures)} then ${p.reportBatchItemFailures ?? null}::boolean else report_batch_item_failures end,
        enabled = case when ${set(p.enabled)} then ${p.enabled ?? null}::boolean else enabled end,
        -- the worker reports the rest; these two it cannot (nobody consumes a disabled mapping yet)
        state = case when ${p.enabled === false} then 'Disabled' when ${p.enabled === true} and not enabled then 'Creating' else state end,
        state_reason = case when ${p.enabled !== undefined} and ${p.enabled ?? null}::boolean is distinct from enabled then null else state_reason end,
        updated_at = now()
      where id = ${id}::uuid
      returning *`.execute(tx);
    const after = toMapping(rows[0] as Row);
    const diff = diffOf(before, after, connection !== null);
    // an update that changes nothing is not a change
    if (Object.keys(diff.after).length > 0) {
      await appendChange(tx, { resourceType: BROKER_MAPPING_CHANGES, resourceName: id, action: 'updated', actor: ctx.actor, requestId: ctx.requestId, data: diff });
    }
    await notify(tx, id);
    return after;
  });
}

/** Deletes the mapping; its worker stops consuming (the running batch finishes and acknowledges). */
export async function deleteBrokerMapping(db: Executor, ctx: ChangeContext, id: string): Promise<BrokerMapping> {
  if (!UUID.test(id)) throw notFound(id);
  return inTransaction(db, async (tx) => {
    const { rows } = await sql<Row>`delete from ledger.broker_mappings where id = ${id}::uuid returning *`.execute(tx);
    if (!rows[0]) throw notFound(id);
    const deleted = toMapping(rows[0]);
    await appendChange(tx, { resourceType: BROKER_MAPPING_CHANGES, resourceName: id, action: 'deleted', actor: ctx.actor, requestId: ctx.requestId, data: { before: definitionOf(deleted), after: null } });
    await notify(tx, id);
    return deleted;
  });
}

// ---------------------------------------------------------------------------------
// what the consuming worker does

/** Enabled mappings, with the sealed URL, that no other worker holds (or whose holder's lease ran out). */
export async function listConsumableBrokerMappings(db: Executor): Promise<ConsumableBrokerMapping[]> {
  const { rows } = await sql<Row & { latest_version: number | null }>`
    select m.*, case when f.deleted_at is null then f.latest_version end as latest_version
    from ledger.broker_mappings m join ledger.functions f on f.name = m.function_name
    where m.enabled
    order by m.created_at, m.id`.execute(db);
  return rows.map((r) => ({
    ...toMapping(r),
    connectionFormat: r.connection_format,
    connectionSealed: r.connection_sealed,
    functionVersion: r.latest_version,
  }));
}

/**
 * Takes or renews a worker's hold on a mapping for `leaseMs`: true while it is this
 * worker's (and still enabled). One worker consumes a mapping at a time, so its batches
 * run one after another and a stream's order holds across workers.
 */
export async function holdBrokerMapping(db: Executor, id: string, workerId: string, leaseMs: number): Promise<boolean> {
  const { rows } = await sql`
    update ledger.broker_mappings set consumer_worker_id = ${workerId},
      consumer_expires_at = now() + make_interval(secs => ${leaseMs / 1000})
    where id = ${id}::uuid and enabled
      and (consumer_worker_id is null or consumer_worker_id = ${workerId} or consumer_expires_at < now())
    returning 1`.execute(db);
  return rows.length > 0;
}

/** Gives a mapping up at once (stop, disable), so another worker need not wait for the lease. */
export async function releaseBrokerMapping(db: Executor, id: string, workerId: string): Promise<void> {
  await sql`
    update ledger.broker_mappings set consumer_worker_id = null, consumer_expires_at = null
    where id = ${id}::uuid and consumer_worker_id = ${workerId}`.execute(db);
}

/** The state the consuming worker reports (Enabled, Disabled, Connecting, Error). Changes only. */
export async function reportBrokerMappingState(db: Executor, id: string, state: string, reason: string | null = null): Promise<void> {
  await sql`
    update ledger.broker_mappings set state = ${state}, state_reason = ${reason === null ? null : reason.slice(0, 1000)}, state_changed_at = now()
    where id = ${id}::uuid and (state, coalesce(state_reason, '')) is distinct from (${state}, ${reason ?? ''})`.execute(db);
}

export async function reportBrokerMappingLag(db: Executor, id: string, lag: number): Promise<void> {
  await sql`update ledger.broker_mappings set lag = ${lag}, lag_at = now() where id = ${id}::uuid`.execute(db);
}

/** Of `keys`, those a batch of this mapping already processed successfully. */
export async function doneMessageKeys(db: Executor, mappingId: string, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const { rows } = await sql<{ message_key: string }>`
    select message_key from ledger.broker_messages_done
    where mapping_id = ${mappingId}::uuid and message_key = any(${keys}::text[])`.execute(db);
  return new Set(rows.map((r) => r.message_key));
}

/** In the transaction that records the batch's outcome: these messages were processed. */
export async function markMessagesDone(tx: Executor, mappingId: string, invocationId: string, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  await sql`
    insert into ledger.broker_messages_done (mapping_id, message_key, invocation_id)
    select ${mappingId}::uuid, k, ${invocationId}::uuid from unnest(${keys}::text[]) as k
    -- a mapping deleted while its batch ran: its outcome is still recorded
    where exists (select 1 from ledger.broker_mappings where id = ${mappingId}::uuid)
    on conflict do nothing`.execute(tx);
}
