// Lambda's event source mapping operations on the wire (docs/control-plane.md#event-source-mappings):
// Create/Get/Update/Delete/ListEventSourceMappings, with the paths and JSON shapes of
// `@aws-sdk/client-lambda` and `aws lambda`. An EventSourceArn names one of this server's
// queues in SQS ARN form (`arn:aws:sqs:<region>:000000000000:<queue>`) or one of its native
// streams in Kinesis ARN form (`arn:aws:kinesis:<region>:000000000000:stream/<name>`), or a
// RabbitMQ broker in Amazon MQ form (`arn:aws:mq:<region>:000000000000:broker:<host>:<port>`,
// the credentials in a BASIC_AUTH source access configuration, sealed, never answered), or a
// change stream of a PostgreSQL table in DynamoDB Streams form
// (`arn:aws:dynamodb:<region>:000000000000:table/<schema.table>/stream/<label>`).
// Translation only: each operation is one call into db/queues/mappings.ts, db/streams.ts,
// db/change-streams.ts or db/brokers.ts, which record it in ledger.changes.
//
// Mapping kinds: `sourceOf` turns an EventSourceArn into a kind, and each operation has
// one switch over the kinds, so another kind of source (a broker) is one more case there.
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import {
  createEventSourceMapping,
  getEventSourceMapping,
  listEventSourceMappings,
  updateEventSourceMapping,
  deleteEventSourceMapping,
  type EventSourceMapping,
} from '../../db/queues/mappings.ts';
import type { EventSourceMappingUpdate } from '../../db/queues/schemas.ts';
import { createBrokerMapping, deleteBrokerMapping, endpointOf, getBrokerMapping, listBrokerMappings, updateBrokerMapping, type BrokerMapping } from '../../db/brokers.ts';
import type { Db } from '../../db/schema.ts';
import { createStreamMapping, deleteStreamMapping, getStreamMapping, listStreamMappings, updateStreamMapping, type StreamMapping } from '../../db/streams.ts';
import {
  createChangeStreamMapping,
  deleteChangeStreamMapping,
  getChangeStreamMapping,
  listChangeStreamMappings,
  richestStreamViewType,
  tableOf,
  type ChangeSource,
  type ChangeStreamMapping,
} from '../../db/change-streams.ts';
import { parseFunctionRef } from './function-ref.ts';
import {
  ACCOUNT_ID,
  answer,
  destinationArn,
  destinationOf,
  intIn,
  invalid,
  jsonBody,
  objectField,
  optionalBoolean,
  paginate,
  requiredString,
} from './lambda-control-routes.ts';

export interface EventSourceRoutesOptions {
  db: Db;
  logger: Logger;
  region?: string;
  /** LEDGER_SECRET_KEY: seals a broker's connection URL (db/brokers.ts) */
  secretKey?: string | null;
}

/** An EventSourceArn, by kind. */
type MappingSource =
  | { kind: 'queue'; queueName: string }
  | { kind: 'stream'; streamName: string }
  | { kind: 'change'; table: string }
  | { kind: 'rabbitmq'; host: string; port: string };

/** A mapping found by UUID, by kind. */
type FoundMapping =
  | { kind: 'queue'; mapping: EventSourceMapping }
  | { kind: 'stream'; mapping: StreamMapping }
  | { kind: 'change'; mapping: ChangeStreamMapping }
  | { kind: 'rabbitmq'; mapping: BrokerMapping };

const SQS_ARN = /^arn:aws[a-zA-Z-]*:sqs:[a-z0-9-]+:\d{12}:([A-Za-z0-9_-]{1,80})$/;
const KINESIS_ARN = /^arn:aws[a-zA-Z-]*:kinesis:[a-z0-9-]+:\d{12}:stream\/([A-Za-z0-9_.-]{1,128})$/;
/**
 * A DynamoDB stream ARN names a change stream of a PostgreSQL table: the table part is
 * `schema.table` (or `table`, schema public); the label (DynamoDB's stream creation time) is
 * accepted as anything and answered as the mapping's UUID, which the records' eventSourceARN carries.
 */
const DYNAMODB_ARN = /^arn:aws[a-zA-Z-]*:dynamodb:[a-z0-9-]+:\d{12}:table\/([A-Za-z0-9_.$]{1,127})\/stream\/[A-Za-z0-9_.:-]{1,64}$/;
/** Amazon MQ's broker:<name>:<id>, where here the name is the broker's host and the id its port */
const MQ_ARN = /^arn:aws[a-zA-Z-]*:mq:[a-z0-9-]+:\d{12}:broker:([A-Za-z0-9_.-]{1,253}):(\d{1,5})$/;

/** The request fields each operation understands, per kind; anything else Lambda knows is refused, not ignored. */
const QUEUE_FIELDS = ['FunctionName', 'Enabled', 'BatchSize', 'MaximumBatchingWindowInSeconds', 'FunctionResponseTypes', 'ScalingConfig'];
const STREAM_FIELDS = [
  'FunctionName',
  'Enabled',
  'BatchSize',
  'MaximumBatchingWindowInSeconds',
  'ParallelizationFactor',
  'BisectBatchOnFunctionError',
  'MaximumRetryAttempts',
  'MaximumRecordAgeInSeconds',
  'FunctionResponseTypes',
  'DestinationConfig',
  'TumblingWindowInSeconds',
];
const RABBIT_FIELDS = ['FunctionName', 'Enabled', 'BatchSize', 'MaximumBatchingWindowInSeconds', 'FunctionResponseTypes', 'SourceAccessConfigurations'];
const FIELDS = {
  queue: { create: new Set([...QUEUE_FIELDS, 'EventSourceArn']), update: new Set([...QUEUE_FIELDS, 'UUID']), label: 'queue' },
  stream: {
    create: new Set([...STREAM_FIELDS, 'EventSourceArn', 'StartingPosition', 'StartingPositionTimestamp']),
    update: new Set([...STREAM_FIELDS, 'UUID']),
    label: 'Kinesis (stream)',
  },
  change: {
    create: new Set([...STREAM_FIELDS, 'EventSourceArn', 'StartingPosition']),
    update: new Set([...STREAM_FIELDS, 'UUID']),
    label: 'DynamoDB (change stream)',
  },
  rabbitmq: {
    create: new Set([...RABBIT_FIELDS, 'EventSourceArn', 'Queues']),
    update: new Set([...RABBIT_FIELDS, 'UUID']),
    label: 'Amazon MQ (RabbitMQ)',
  },
} as const;

export function sourceOf(arn: string): MappingSource {
  const sqs = SQS_ARN.exec(arn);
  if (sqs) return { kind: 'queue', queueName: sqs[1] as string };
  const kinesis = KINESIS_ARN.exec(arn);
  if (kinesis) return { kind: 'stream', streamName: kinesis[1] as string };
  const mq = MQ_ARN.exec(arn);
  if (mq) return { kind: 'rabbitmq', host: mq[1] as string, port: mq[2] as string };
  const dynamo = DYNAMODB_ARN.exec(arn);
  const table = dynamo ? tableOf(dynamo[1] as string) : null;
  if (table) return { kind: 'change', table: table.join('.') };
  throw invalid(
    `EventSourceArn ${arn} is not supported: name one of this server's queues as arn:aws:sqs:<region>:${ACCOUNT_ID}:<queue>, streams as arn:aws:kinesis:<region>:${ACCOUNT_ID}:stream/<name>, a change stream of a table as arn:aws:dynamodb:<region>:${ACCOUNT_ID}:table/<schema.table>/stream/<label>, or a RabbitMQ broker as arn:aws:mq:<region>:${ACCOUNT_ID}:broker:<host>:<port>`,
  );
}

export function lambdaEventSourceRoutes(o: EventSourceRoutesOptions): Hono {
  const app = new Hono();
  const db = o.db;
  const region = o.region ?? 'us-east-1';
  const functionArn = (name: string) => `arn:aws:lambda:${region}:${ACCOUNT_ID}:function:${name}`;
  const queueArn = (name: string) => `arn:aws:sqs:${region}:${ACCOUNT_ID}:${name}`;
  const kinesisArn = (name: string) => `arn:aws:kinesis:${region}:${ACCOUNT_ID}:stream/${name}`;
  const mappingArn = (id: string) => `arn:aws:lambda:${region}:${ACCOUNT_ID}:event-source-mapping:${id}`;
  const dynamoArn = (table: string, mappingId: string) => `arn:aws:dynamodb:${region}:${ACCOUNT_ID}:table/${table}/stream/${mappingId}`;
  const tableNameOf = (s: ChangeSource) => `${s.schemaName}.${s.tableName}`;

  /** EventSourceMappingConfiguration. `state` is what Lambda reports for the operation that answers. */
  const queueBody = (m: EventSourceMapping, state?: string) => ({
    UUID: m.id,
    EventSourceMappingArn: mappingArn(m.id),
    EventSourceArn: queueArn(m.queueName),
    FunctionArn: functionArn(m.functionName),
    BatchSize: m.batchSize,
    // the database keeps milliseconds (GraphQL can set 500 ms); Lambda's field is whole seconds
    MaximumBatchingWindowInSeconds: Math.ceil(m.maxBatchingWindowMs / 1000),
    FunctionResponseTypes: m.reportBatchItemFailures ? ['ReportBatchItemFailures'] : [],
    ...(m.maximumConcurrency !== null ? { ScalingConfig: { MaximumConcurrency: m.maximumConcurrency } } : {}),
    // restJson timestamps are epoch seconds
    LastModified: m.updatedAt.getTime() / 1000,
    State: state ?? (m.enabled ? 'Enabled' : 'Disabled'),
    StateTransitionReason: 'USER_INITIATED',
  });

  /** EventSourceMappingConfiguration of a Kinesis mapping, as Lambda answers for one. */
  const streamBody = (m: StreamMapping, state?: string) => ({
    UUID: m.id,
    EventSourceMappingArn: mappingArn(m.id),
    EventSourceArn: kinesisArn(m.streamName),
    FunctionArn: functionArn(m.functionName),
    StartingPosition: m.startingPosition,
    ...(m.startingPositionTimestamp ? { StartingPositionTimestamp: m.startingPositionTimestamp.getTime() / 1000 } : {}),
    BatchSize: m.batchSize,
    MaximumBatchingWindowInSeconds: Math.ceil(m.maximumBatchingWindowInSeconds),
    ParallelizationFactor: m.parallelizationFactor,
    BisectBatchOnFunctionError: m.bisectBatchOnFunctionError,
    MaximumRetryAttempts: m.maximumRetryAttempts,
    MaximumRecordAgeInSeconds: m.maximumRecordAgeInSeconds,
    TumblingWindowInSeconds: m.tumblingWindowInSeconds,
    FunctionResponseTypes: m.reportBatchItemFailures ? ['ReportBatchItemFailures'] : [],
    DestinationConfig: { OnFailure: m.onFailure ? { Destination: destinationArn(m.onFailure, functionArn) } : {} },
    LastModified: m.updatedAt.getTime() / 1000,
    State: state ?? (m.enabled ? 'Enabled' : 'Disabled'),
    StateTransitionReason: 'User action',
  });

  /** EventSourceMappingConfiguration of a change stream mapping, as Lambda answers for a DynamoDB stream one: a Kinesis one's fields, the table's stream ARN. */
  const changeBody = (m: ChangeStreamMapping, state?: string) => ({ ...streamBody(m, state), EventSourceArn: dynamoArn(tableNameOf(m.source), m.id) });

  /** The broker's Amazon MQ-style ARN, from the endpoint kept beside the sealed URL (scheme://host:port). */
  const mqArn = (endpoint: string) => {
    const u = new URL(endpoint);
    return `arn:aws:mq:${region}:${ACCOUNT_ID}:broker:${u.hostname}:${u.port || (u.protocol === 'amqps:' ? '5671' : '5672')}`;
  };

  /** EventSourceMappingConfiguration of an Amazon MQ for RabbitMQ mapping. BASIC_AUTH shows the endpoint, never the credentials. */
  const rabbitBody = (m: BrokerMapping, state?: string) => ({
    UUID: m.id,
    EventSourceMappingArn: mappingArn(m.id),
    EventSourceArn: mqArn(m.endpoint),
    FunctionArn: functionArn(m.functionName),
    Queues: [m.queue],
    SourceAccessConfigurations: [
      { Type: 'BASIC_AUTH', URI: m.endpoint },
      { Type: 'VIRTUAL_HOST', URI: m.virtualHost ?? '/' },
    ],
    BatchSize: m.batchSize,
    MaximumBatchingWindowInSeconds: Math.ceil(m.maxBatchingWindowMs / 1000),
    FunctionResponseTypes: m.reportBatchItemFailures ? ['ReportBatchItemFailures'] : [],
    LastModified: m.updatedAt.getTime() / 1000,
    State: state ?? (m.enabled ? 'Enabled' : 'Disabled'),
    StateTransitionReason: 'USER_INITIATED',
    // what the consuming worker last reported (docs/brokers.md), in Lambda's words for a broker problem
    LastProcessingResult: m.state === 'Error' ? `PROBLEM: ${m.stateReason ?? 'error'}` : m.enabled ? m.state : 'No records processed',
  });

  async function find(uuid: string): Promise<FoundMapping> {
    const queue = await getEventSourceMapping(db, uuid);
    if (queue) return { kind: 'queue', mapping: queue };
    const change = await getChangeStreamMapping(db, uuid);
    if (change) return { kind: 'change', mapping: change };
    const stream = await getStreamMapping(db, uuid);
    if (stream) return { kind: 'stream', mapping: stream };
    const broker = await getBrokerMapping(db, uuid);
    if (broker?.broker === 'rabbitmq') return { kind: 'rabbitmq', mapping: broker };
    if (broker) throw invalid(`Event source mapping ${uuid} is a NATS JetStream mapping, which has no Lambda equivalent: manage it through GraphQL or the CLI (docs/brokers.md)`);
    throw new LedgerError('EventSourceMappingNotFound', `The resource you requested does not exist. (Event source mapping ${uuid})`);
  }

  const createRoute = (c: Context) =>
    answer(c, o.logger, async (ctx) => {
      const body = await jsonBody(c, 1024 * 1024);
      const source = sourceOf(requiredString(body, 'EventSourceArn'));
      refuseUnknown(body, FIELDS[source.kind].create, FIELDS[source.kind].label);
      const functionName = unqualifiedName(requiredString(body, 'FunctionName'));
      switch (source.kind) {
        case 'rabbitmq': {
          const access = accessOf(body['SourceAccessConfigurations']);
          if (access.url === undefined) throw invalid('SourceAccessConfigurations needs a BASIC_AUTH entry whose URI is the broker URL (amqp://user:password@host:port)');
          const u = new URL(access.url);
          if (u.hostname !== source.host || (u.port || (u.protocol === 'amqps:' ? '5671' : '5672')) !== source.port) {
            throw invalid('The BASIC_AUTH broker URL must name the host and port of the EventSourceArn');
          }
          const queues = body['Queues'];
          if (!Array.isArray(queues) || queues.length !== 1 || typeof queues[0] !== 'string') throw invalid('Queues must name exactly one queue');
          const m = await createBrokerMapping(
            db,
            ctx,
            {
              broker: 'rabbitmq',
              url: access.url,
              virtualHost: access.virtualHost ?? '/',
              queue: queues[0],
              functionName,
              ...brokerSettingsOf(body),
            },
            { secretKey: o.secretKey ?? null },
          );
          return { status: 202, body: rabbitBody(m, 'Creating') };
        }
        case 'change': {
          const startingPosition = body['StartingPosition'];
          if (startingPosition === undefined || startingPosition === null) throw invalid('StartingPosition is required: TRIM_HORIZON or LATEST');
          if (startingPosition !== 'TRIM_HORIZON' && startingPosition !== 'LATEST') throw invalid(`Unsupported starting position for arn type: ${requiredString(body, 'EventSourceArn')}`);
          const m = await conflictInLambdaWords(
            (uuid) =>
              `The event source arn (" ${dynamoArn(source.table, uuid)} ") and function (" ${functionName} ") provided mapping already exists. Please update or delete the existing mapping with UUID ${uuid}`,
            async () =>
              createChangeStreamMapping(
                db,
                {
                  ...streamSettingsOf(body),
                  table: source.table,
                  functionName,
                  startingPosition,
                  streamViewType: await richestStreamViewType(db, source.table),
                  ...(body['ParallelizationFactor'] != null ? { parallelizationFactor: intIn(body['ParallelizationFactor'], 'ParallelizationFactor', 1, 10) } : {}),
                },
                ctx,
                { refuseDuplicate: true },
              ),
          );
          return { status: 202, body: changeBody(m, 'Creating') };
        }
        case 'stream': {
          const m = await conflictInLambdaWords(
            (uuid) =>
              `The event source arn (" ${kinesisArn(source.streamName)} ") and function (" ${functionName} ") provided mapping already exists. Please update or delete the existing mapping with UUID ${uuid}`,
            () =>
              createStreamMapping(
                db,
                {
                  ...streamSettingsOf(body),
                  streamName: source.streamName,
                  functionName,
                  startingPosition: body['StartingPosition'],
                  startingPositionTimestamp: timestampOf(body['StartingPositionTimestamp']),
                  ...(body['ParallelizationFactor'] != null ? { parallelizationFactor: intIn(body['ParallelizationFactor'], 'ParallelizationFactor', 1, 10) } : {}),
                },
                ctx,
                { refuseDuplicate: true },
              ),
          );
          return { status: 202, body: streamBody(m, 'Creating') };
        }
        case 'queue': {
          const settings = settingsOf(body);
          const batchSize = settings.batchSize ?? 10;
          assertWindowForBatch(batchSize, settings.maxBatchingWindowMs ?? 0);
          const m = await conflictInLambdaWords(
            (uuid) =>
              `An event source mapping with SQS arn (" ${queueArn(source.queueName)} ") and function (" ${functionName} ") already exists. Please update or delete the existing mapping with UUID ${uuid}`,
            () => createEventSourceMapping(db, { ...settings, queueName: source.queueName, functionName }, ctx),
          );
          return { status: 202, body: queueBody(m, 'Creating') };
        }
      }
    });
  app.post('/2015-03-31/event-source-mappings', createRoute);
  app.post('/2015-03-31/event-source-mappings/', createRoute);

  const listRoute = (c: Context) =>
    answer(c, o.logger, async () => {
      const arn = c.req.query('EventSourceArn') || undefined;
      const fnRaw = c.req.query('FunctionName') || undefined;
      const functionName = fnRaw === undefined ? null : unqualifiedName(fnRaw);
      const source = arn === undefined ? null : sourceOf(arn);
      const all: { key: string; body: unknown }[] = [];
      // every kind's mappings; a filter by ARN lists only its kind
      if (source === null || source.kind === 'queue') {
        const queue = await listEventSourceMappings(db, { queueName: source?.kind === 'queue' ? source.queueName : null, functionName });
        all.push(...queue.map((m) => ({ key: m.id, body: queueBody(m) })));
      }
      if (source === null || source.kind === 'stream') {
        // a change stream's own stream is listed as its table's DynamoDB stream below
        const streams = await listStreamMappings(db, { streamName: source?.kind === 'stream' ? source.streamName : null, functionName });
        all.push(...streams.filter((m) => m.sourceTable === null).map((m) => ({ key: m.id, body: streamBody(m) })));
      }
      if (source === null || source.kind === 'change') {
        const changes = await listChangeStreamMappings(db, { table: source?.kind === 'change' ? source.table : null, functionName });
        all.push(...changes.filter((m) => source?.kind !== 'change' || tableNameOf(m.source) === source.table).map((m) => ({ key: m.id, body: changeBody(m) })));
      }
      if (source === null || source.kind === 'rabbitmq') {
        // NATS mappings have no Lambda shape: GraphQL and the CLI list them
        const brokers = (await listBrokerMappings(db, { functionName })).filter((m) => m.broker === 'rabbitmq');
        const wanted = source?.kind === 'rabbitmq' ? mqArn(`amqp://${source.host}:${source.port}`) : null;
        all.push(...brokers.filter((m) => wanted === null || mqArn(m.endpoint) === wanted).map((m) => ({ key: m.id, body: rabbitBody(m) })));
      }
      const page = paginate(all, (m) => m.key, c.req.query('Marker') || undefined, c.req.query('MaxItems') ?? '100');
      return { status: 200, body: { EventSourceMappings: page.items.map((m) => m.body), ...(page.next ? { NextMarker: page.next } : {}) } };
    });
  app.get('/2015-03-31/event-source-mappings', listRoute);
  app.get('/2015-03-31/event-source-mappings/', listRoute);

  app.get('/2015-03-31/event-source-mappings/:UUID', (c) =>
    answer(c, o.logger, async () => {
      const found = await find(c.req.param('UUID'));
      switch (found.kind) {
        case 'queue':
          return { status: 200, body: queueBody(found.mapping) };
        case 'stream':
          return { status: 200, body: streamBody(found.mapping) };
        case 'change':
          return { status: 200, body: changeBody(found.mapping) };
        case 'rabbitmq':
          return { status: 200, body: rabbitBody(found.mapping) };
      }
    }),
  );

  app.put('/2015-03-31/event-source-mappings/:UUID', (c) =>
    answer(c, o.logger, async (ctx) => {
      const body = await jsonBody(c, 1024 * 1024);
      const found = await find(c.req.param('UUID'));
      refuseUnknown(body, FIELDS[found.kind].update, FIELDS[found.kind].label);
      const functionName = body['FunctionName'] == null ? undefined : unqualifiedName(requiredString(body, 'FunctionName'));
      switch (found.kind) {
        case 'rabbitmq': {
          const before = found.mapping;
          const patch: Record<string, unknown> = brokerSettingsOf(body);
          if (functionName !== undefined) patch['functionName'] = functionName;
          if (body['SourceAccessConfigurations'] != null) {
            const access = accessOf(body['SourceAccessConfigurations']);
            if (access.virtualHost !== undefined && access.virtualHost !== (before.virtualHost ?? '/')) {
              throw invalid('The VIRTUAL_HOST of a mapping cannot be changed here: delete the mapping and create another');
            }
            if (access.url !== undefined) {
              // new credentials for the same broker: the EventSourceArn stays what it was
              if (mqArn(endpointOf(access.url)) !== mqArn(before.endpoint)) throw invalid('The BASIC_AUTH broker URL must name the host and port of the mapping');
              patch['url'] = access.url;
            }
          }
          const m = await updateBrokerMapping(db, ctx, before.id, patch, { secretKey: o.secretKey ?? null });
          return { status: 202, body: rabbitBody(m, stateOfUpdate(before.enabled, m.enabled)) };
        }
        case 'change': {
          const before = found.mapping;
          if (functionName !== undefined && functionName !== before.functionName) {
            throw invalid('The function of a DynamoDB (change stream) event source mapping cannot be changed here: delete the mapping and create another');
          }
          if (body['ParallelizationFactor'] != null && intIn(body['ParallelizationFactor'], 'ParallelizationFactor', 1, 10) !== before.parallelizationFactor) {
            throw invalid('ParallelizationFactor is set when an event source mapping is created here: delete the mapping and create another');
          }
          const m = await updateStreamMapping(db, before.id, streamSettingsOf(body), ctx);
          return { status: 202, body: changeBody({ ...m, source: before.source }, stateOfUpdate(before.enabled, m.enabled)) };
        }
        case 'stream': {
          const before = found.mapping;
          // each lane keeps its own checkpoint, and the function its shards' order: both fixed at creation here
          if (functionName !== undefined && functionName !== before.functionName) {
            throw invalid('The function of a Kinesis event source mapping cannot be changed here: delete the mapping and create another');
          }
          if (body['ParallelizationFactor'] != null && intIn(body['ParallelizationFactor'], 'ParallelizationFactor', 1, 10) !== before.parallelizationFactor) {
            throw invalid('ParallelizationFactor is set when a Kinesis event source mapping is created here: delete the mapping and create another');
          }
          const m = await updateStreamMapping(db, before.id, streamSettingsOf(body), ctx);
          return { status: 202, body: streamBody(m, stateOfUpdate(before.enabled, m.enabled)) };
        }
        case 'queue': {
          const patch: EventSourceMappingUpdate = settingsOf(body);
          if (functionName !== undefined) patch.functionName = functionName;
          const before = found.mapping;
          assertWindowForBatch(patch.batchSize ?? before.batchSize, patch.maxBatchingWindowMs ?? before.maxBatchingWindowMs);
          const m = await updateEventSourceMapping(db, before.id, patch, ctx);
          return { status: 202, body: queueBody(m, stateOfUpdate(before.enabled, m.enabled)) };
        }
      }
    }),
  );

  app.delete('/2015-03-31/event-source-mappings/:UUID', (c) =>
    answer(c, o.logger, async (ctx) => {
      const found = await find(c.req.param('UUID'));
      switch (found.kind) {
        case 'queue': {
          const m = await deleteEventSourceMapping(db, found.mapping.id, ctx);
          return { status: 202, body: queueBody(m, 'Deleting') };
        }
        case 'stream': {
          const m = await deleteStreamMapping(db, found.mapping.id, ctx);
          return { status: 202, body: streamBody(m, 'Deleting') };
        }
        case 'change': {
          // with its replication slot and publication: a forgotten slot holds WAL forever
          const m = await deleteChangeStreamMapping(db, found.mapping.id, ctx, { secretKey: o.secretKey ?? null });
          return { status: 202, body: changeBody(m, 'Deleting') };
        }
        case 'rabbitmq': {
          const m = await deleteBrokerMapping(db, ctx, found.mapping.id);
          return { status: 202, body: rabbitBody(m, 'Deleting') };
        }
      }
    }),
  );

  return app;
}

/**
 * Lambda's ResourceConflictException for a second mapping of one source to one function, in
 * its words for that kind of source (SQS has its own sentence; Kinesis and DynamoDB streams share one).
 */
async function conflictInLambdaWords<T>(message: (uuid: string) => string, create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (e) {
    if (e instanceof LedgerError && e.code === 'EventSourceMappingExists' && typeof e.details['uuid'] === 'string') {
      throw new LedgerError('EventSourceMappingExists', message(e.details['uuid']), e.details);
    }
    throw e;
  }
}

function refuseUnknown(body: Record<string, unknown>, known: ReadonlySet<string>, label: string): void {
  for (const k of Object.keys(body)) {
    if (!known.has(k) && body[k] !== undefined && body[k] !== null) {
      throw invalid(`${k} is not supported for ${label} event source mappings here (docs/control-plane.md#event-source-mappings)`);
    }
  }
}

/** What Lambda answers an update with: Enabling/Disabling when Enabled flipped, else Updating. */
function stateOfUpdate(before: boolean, after: boolean): string {
  return after === before ? 'Updating' : after ? 'Enabling' : 'Disabling';
}

/**
 * SourceAccessConfigurations of an Amazon MQ for RabbitMQ mapping: BASIC_AUTH's URI is the
 * broker URL with its credentials (where Lambda names a Secrets Manager secret), VIRTUAL_HOST's the vhost.
 */
function accessOf(v: unknown): { url?: string; virtualHost?: string } {
  if (!Array.isArray(v)) throw invalid('SourceAccessConfigurations must be a list of {Type, URI}');
  const out: { url?: string; virtualHost?: string } = {};
  for (const entry of v as unknown[]) {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const uri = e['URI'];
    if (typeof uri !== 'string' || uri === '') throw invalid('Each SourceAccessConfiguration needs a URI');
    if (e['Type'] === 'BASIC_AUTH' && out.url === undefined) {
      if (!/^amqps?:\/\//.test(uri)) throw invalid('The BASIC_AUTH URI is the broker URL here: amqp://user:password@host:port or amqps://…');
      out.url = uri;
    } else if (e['Type'] === 'VIRTUAL_HOST' && out.virtualHost === undefined) out.virtualHost = uri;
    else throw invalid('SourceAccessConfigurations takes one BASIC_AUTH and at most one VIRTUAL_HOST here');
  }
  return out;
}

/** Enabled, BatchSize, MaximumBatchingWindowInSeconds, FunctionResponseTypes of a broker mapping, in db/brokers.ts's terms. */
function brokerSettingsOf(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const enabled = optionalBoolean(body, 'Enabled');
  if (enabled !== undefined) out['enabled'] = enabled;
  if (body['BatchSize'] != null) out['batchSize'] = intIn(body['BatchSize'], 'BatchSize', 1, 10_000);
  if (body['MaximumBatchingWindowInSeconds'] != null) out['maxBatchingWindowMs'] = intIn(body['MaximumBatchingWindowInSeconds'], 'MaximumBatchingWindowInSeconds', 0, 300) * 1000;
  if (body['FunctionResponseTypes'] != null) out['reportBatchItemFailures'] = responseTypesOf(body['FunctionResponseTypes']);
  return out;
}

/** restJson timestamps arrive as epoch seconds; an ISO string is taken too. */
function timestampOf(v: unknown): Date | undefined {
  if (v === undefined || v === null) return undefined;
  const d = typeof v === 'number' ? new Date(v * 1000) : typeof v === 'string' ? new Date(v) : new Date(Number.NaN);
  if (Number.isNaN(d.getTime())) throw invalid('StartingPositionTimestamp must be a timestamp');
  return d;
}

function responseTypesOf(types: unknown): boolean {
  if (!Array.isArray(types) || types.some((t) => t !== 'ReportBatchItemFailures') || types.length > 1) {
    throw invalid("FunctionResponseTypes must be [] or ['ReportBatchItemFailures']");
  }
  return types.length === 1;
}

/**
 * The Kinesis settings present in a request, in db/streams.ts's terms. The ranges are
 * Lambda's; db/streams.ts checks them again (and MaximumRecordAgeInSeconds' -1 or 60…604800).
 */
function streamSettingsOf(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const enabled = optionalBoolean(body, 'Enabled');
  if (enabled !== undefined) out['enabled'] = enabled;
  const int = (key: string, field: string, min: number, max: number) => {
    if (body[key] !== undefined && body[key] !== null) out[field] = intIn(body[key], key, min, max);
  };
  int('BatchSize', 'batchSize', 1, 10_000);
  int('MaximumBatchingWindowInSeconds', 'maximumBatchingWindowInSeconds', 0, 300);
  int('MaximumRetryAttempts', 'maximumRetryAttempts', -1, 10_000);
  int('MaximumRecordAgeInSeconds', 'maximumRecordAgeInSeconds', -1, 604_800);
  int('TumblingWindowInSeconds', 'tumblingWindowInSeconds', 0, 900);
  const bisect = optionalBoolean(body, 'BisectBatchOnFunctionError');
  if (bisect !== undefined) out['bisectBatchOnFunctionError'] = bisect;
  if (body['FunctionResponseTypes'] != null) out['reportBatchItemFailures'] = responseTypesOf(body['FunctionResponseTypes']);
  const dc = objectField(body, 'DestinationConfig');
  if (dc) {
    const onSuccess = dc['OnSuccess'] as Record<string, unknown> | undefined;
    if (onSuccess && typeof onSuccess === 'object' && onSuccess['Destination'] != null) {
      throw invalid('DestinationConfig.OnSuccess is not supported for Kinesis event source mappings: only OnFailure');
    }
    const onFailure = dc['OnFailure'];
    const dest = typeof onFailure === 'object' && onFailure !== null ? (onFailure as Record<string, unknown>)['Destination'] : undefined;
    // OnFailure without a Destination removes it, as in Lambda
    out['onFailure'] = dest === undefined || dest === null || dest === '' ? null : destinationOf(dest, '');
  }
  return out;
}

/** A mapping invokes the function itself (its latest version): a qualifier is refused rather than ignored. */
function unqualifiedName(raw: string): string {
  const ref = parseFunctionRef(raw);
  if (ref.qualifier !== null && ref.qualifier !== '$LATEST') throw invalid(`An event source mapping here invokes the function's latest version; the qualifier ${ref.qualifier} is not supported`);
  return ref.name;
}

/** Lambda for SQS: a batch of more than 10 messages needs a batching window of at least 1 second. */
function assertWindowForBatch(batchSize: number, windowMs: number): void {
  if (batchSize > 10 && windowMs < 1000) {
    throw invalid('Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10');
  }
}

/** Enabled, BatchSize, MaximumBatchingWindowInSeconds, FunctionResponseTypes, ScalingConfig: present fields only. */
function settingsOf(body: Record<string, unknown>): Omit<EventSourceMappingUpdate, 'functionName'> {
  const out: Omit<EventSourceMappingUpdate, 'functionName'> = {};
  const enabled = optionalBoolean(body, 'Enabled');
  if (enabled !== undefined) out.enabled = enabled;
  if (body['BatchSize'] !== undefined && body['BatchSize'] !== null) out.batchSize = intIn(body['BatchSize'], 'BatchSize', 1, 10_000);
  const w = body['MaximumBatchingWindowInSeconds'];
  if (w !== undefined && w !== null) out.maxBatchingWindowMs = intIn(w, 'MaximumBatchingWindowInSeconds', 0, 300) * 1000;
  const types = body['FunctionResponseTypes'];
  if (types !== undefined && types !== null) out.reportBatchItemFailures = responseTypesOf(types);
  const scaling = objectField(body, 'ScalingConfig');
  if (scaling) {
    const max = scaling['MaximumConcurrency'];
    // ScalingConfig without MaximumConcurrency removes the limit, as in Lambda
    out.maximumConcurrency = max === undefined || max === null ? null : intIn(max, 'ScalingConfig.MaximumConcurrency', 2, 1000);
  }
  return out;
}
