// `invoke-ledger brokers …`: broker event source mappings (docs/brokers.md), over
// db/brokers.ts. Changes are recorded in ledger.changes with the actor `cli:<os user>`;
// the connection URL is read from --url or an environment variable and never printed.
import { userInfo } from 'node:os';
import { createBrokerMapping, deleteBrokerMapping, getBrokerMapping, listBrokerMappings, updateBrokerMapping, type BrokerMapping } from '../../db/brokers.ts';
import type { ChangeContext } from '../../db/control-plane.ts';
import { CliError, type Io } from './cli.ts';
import { integer, withCommandDb } from './db-command.ts';

/** The options of `invoke-ledger brokers …` as commander parses them (apps/cli/commands/brokers.ts). */
export interface TuningOptions {
  url?: string;
  urlEnv?: string;
  function?: string;
  batchSize?: string;
  windowMs?: string;
  reportBatchItemFailures?: boolean;
  json?: boolean;
}

export interface CreateOptions extends TuningOptions {
  function: string;
  queue?: string;
  vhost?: string;
  maxDeliveryCount?: string;
  stream?: string;
  subjectFilter?: string;
  startingPosition?: string;
  startingPositionTimestamp?: string;
  maxRetryAttempts?: string;
  onFailureQueue?: string;
  disabled?: boolean;
}

export interface UpdateOptions extends TuningOptions {
  enable?: boolean;
  disable?: boolean;
}

const actor = (): ChangeContext => {
  try {
    return { actor: `cli:${userInfo().username || 'unknown'}` };
  } catch {
    return { actor: 'cli:unknown' };
  }
};


function connectionUrl(o: TuningOptions, io: Io): string | undefined {
  if (o.url !== undefined && o.urlEnv !== undefined) throw new CliError('give --url or --url-env, not both');
  if (o.urlEnv === undefined) return o.url;
  const v = io.env[o.urlEnv];
  if (!v) throw new CliError(`--url-env ${o.urlEnv}: that environment variable is not set`);
  return v;
}

/** Only what was given: the rest takes its default (create) or keeps its value (update). */
const given = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const tuning = (o: TuningOptions) => ({
  batchSize: integer(o.batchSize, '--batch-size'),
  maxBatchingWindowMs: integer(o.windowMs, '--window-ms'),
  reportBatchItemFailures: o.reportBatchItemFailures,
});

const sourceOf = (m: BrokerMapping) => (m.broker === 'rabbitmq' ? `${m.virtualHost ?? '/'} ${m.queue}` : `${m.stream}${m.subjectFilter ? ` ${m.subjectFilter}` : ''}`);

function print(io: Io, m: BrokerMapping, verb: string, json: boolean | undefined): void {
  io.out.write(json ? `${JSON.stringify(m, null, 2)}\n` : `${verb} ${m.broker} mapping ${m.id}: ${m.endpoint} ${sourceOf(m)} → ${m.functionName} (${m.enabled ? 'enabled' : 'disabled'}, ${m.state})\n`);
}

export async function createBrokerMappingCommand(dbUrl: string, secretKey: string | null, broker: string, o: CreateOptions, io: Io): Promise<number> {
  if (broker !== 'rabbitmq' && broker !== 'nats') throw new CliError(`<broker> must be rabbitmq or nats, not ${broker}`);
  const url = connectionUrl(o, io);
  if (url === undefined) throw new CliError('--url or --url-env is required');
  const input = given({
    broker,
    url,
    functionName: o.function,
    ...tuning(o),
    enabled: o.disabled ? false : undefined,
    queue: o.queue,
    virtualHost: o.vhost,
    maxDeliveryCount: integer(o.maxDeliveryCount, '--max-delivery-count'),
    stream: o.stream,
    subjectFilter: o.subjectFilter,
    startingPosition: o.startingPosition,
    startingPositionTimestamp: o.startingPositionTimestamp,
    maxRetryAttempts: integer(o.maxRetryAttempts, '--max-retry-attempts'),
    onFailureQueue: o.onFailureQueue,
  });
  return withCommandDb(dbUrl, 'brokers', async (db) => {
    print(io, await createBrokerMapping(db, actor(), input, { secretKey }), 'created', o.json);
    return 0;
  });
}

export async function listBrokerMappingsCommand(dbUrl: string, o: { function?: string; json?: boolean }, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'brokers', async (db) => {
    const all = await listBrokerMappings(db, { functionName: o.function ?? null });
    if (o.json) {
      io.out.write(`${JSON.stringify(all, null, 2)}\n`);
      return 0;
    }
    io.out.write(`${['ID', 'BROKER', 'FUNCTION', 'ENDPOINT', 'SOURCE', 'ENABLED', 'STATE', 'LAG'].join('\t')}\n`);
    for (const m of all) io.out.write(`${[m.id, m.broker, m.functionName, m.endpoint, sourceOf(m), m.enabled, m.stateReason ? `${m.state}: ${m.stateReason}` : m.state, m.lag ?? '-'].join('\t')}\n`);
    return 0;
  });
}

export async function getBrokerMappingCommand(dbUrl: string, id: string, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'brokers', async (db) => {
    const m = await getBrokerMapping(db, id);
    if (!m) throw new CliError(`EventSourceMappingNotFound: Event source mapping not found: ${id}`);
    io.out.write(`${JSON.stringify(m, null, 2)}\n`);
    return 0;
  });
}

export async function updateBrokerMappingCommand(dbUrl: string, secretKey: string | null, id: string, o: UpdateOptions, io: Io): Promise<number> {
  if (o.enable && o.disable) throw new CliError('give --enable or --disable, not both');
  const patch = given({ url: connectionUrl(o, io), functionName: o.function, ...tuning(o), enabled: o.enable ? true : o.disable ? false : undefined });
  if (Object.keys(patch).length === 0) throw new CliError('nothing to change: give at least one option (invoke-ledger brokers update --help)');
  return withCommandDb(dbUrl, 'brokers', async (db) => {
    print(io, await updateBrokerMapping(db, actor(), id, patch, { secretKey }), 'updated', o.json);
    return 0;
  });
}

export async function deleteBrokerMappingCommand(dbUrl: string, id: string, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'brokers', async (db) => {
    print(io, await deleteBrokerMapping(db, actor(), id), 'deleted', false);
    return 0;
  });
}
