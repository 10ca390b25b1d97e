// Queues and event source mappings: depth, in flight, delayed, dead letters, age of the
// oldest message (the lag a mapping has to catch up), and each mapping's state, which an
// admin key can switch (updateEventSourceMapping) and whose dead letters it can redrive.
// Native streams (docs/streams.md): shards, retention, each mapping's records behind its
// checkpoint per shard.
import type { FC } from 'hono/jsx';
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count, ms, seconds } from '../views/format.ts';
import { ErrorNote, Layout, NotAllowed, Time } from '../views/ui.tsx';

export interface MappingRow {
  id: string;
  functionName: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  reportBatchItemFailures: boolean;
  maximumConcurrency: number | null;
  enabled: boolean;
  updatedAt: string;
}

export interface QueueRow {
  name: string;
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  createdAt: string;
  approximateNumberOfMessages: number;
  approximateNumberOfMessagesNotVisible: number;
  approximateNumberOfMessagesDelayed: number;
  deadLetterCount: number;
  approximateAgeOfOldestMessageSeconds: number | null;
  eventSourceMappings: MappingRow[];
}

/** A RabbitMQ or NATS mapping (docs/brokers.md): state and lag as its worker reports them. */
export interface BrokerMappingRow {
  id: string;
  broker: string;
  functionName: string;
  endpoint: string;
  queue: string | null;
  virtualHost: string | null;
  stream: string | null;
  subjectFilter: string | null;
  batchSize: number;
  enabled: boolean;
  state: string;
  stateReason: string | null;
  stateChangedAt: string;
  lag: number | null;
  lagAt: string | null;
}

/** Where a broker mapping reads from, in words (the endpoint never carries credentials). */
export function brokerSource(m: Pick<BrokerMappingRow, 'broker' | 'endpoint' | 'virtualHost' | 'queue' | 'stream' | 'subjectFilter'>): string {
  return m.broker === 'RABBITMQ'
    ? `RabbitMQ ${m.endpoint} vhost ${m.virtualHost ?? '/'} queue ${m.queue}`
    : `NATS ${m.endpoint} stream ${m.stream}${m.subjectFilter ? ` (${m.subjectFilter})` : ''}`;
}

export const BROKER_MAPPING_FIELDS = 'id broker functionName endpoint queue virtualHost stream subjectFilter batchSize enabled state stateReason stateChangedAt lag lagAt';

/** A native stream (docs/streams.md) with its mappings and their checkpoints. */
export interface StreamRow {
  name: string;
  shardCount: number;
  retentionHours: number;
  shards: { shardId: string; lastSequenceNumber: string }[];
  eventSourceMappings: {
    id: string;
    functionName: string;
    enabled: boolean;
    batchSize: number;
    parallelizationFactor: number;
    checkpoints: { shardId: string; lane: number; sequenceNumber: string; retryAttempts: number }[];
  }[];
}

export const STREAM_FIELDS = `name shardCount retentionHours shards { shardId lastSequenceNumber }
  eventSourceMappings { id functionName enabled batchSize parallelizationFactor checkpoints { shardId lane sequenceNumber retryAttempts } }`;

export interface ShardLag {
  shardId: string;
  /** records after the checkpoint (the slowest lane's with a parallelization factor); null: no checkpoint yet */
  behind: number | null;
  retryAttempts: number;
}

/**
 * Records a mapping has not finished, per shard: sequence numbers are 1, 2, 3 … per shard
 * (docs/streams.md), so the shard's last one minus the checkpoint. With lanes, from the
 * slowest lane's checkpoint: records of the other lanes after it count too (an upper bound).
 */
export function streamLag(stream: Pick<StreamRow, 'shards'>, mapping: Pick<StreamRow['eventSourceMappings'][number], 'checkpoints'>): { shards: ShardLag[]; total: number | null } {
  const shards = stream.shards.map((s) => {
    const marks = mapping.checkpoints.filter((c) => c.shardId === s.shardId);
    if (marks.length === 0) return { shardId: s.shardId, behind: null, retryAttempts: 0 };
    const slowest = marks.reduce((a, b) => (BigInt(a.sequenceNumber) <= BigInt(b.sequenceNumber) ? a : b));
    const behind = BigInt(s.lastSequenceNumber) - BigInt(slowest.sequenceNumber);
    return { shardId: s.shardId, behind: Number(behind > 0n ? behind : 0n), retryAttempts: Math.max(...marks.map((m) => m.retryAttempts)) };
  });
  const known = shards.filter((s) => s.behind !== null);
  return { shards, total: known.length === 0 ? null : known.reduce((n, s) => n + (s.behind ?? 0), 0) };
}

export const QUEUE_FIELDS = `name visibilityTimeoutSeconds maxReceiveCount createdAt approximateNumberOfMessages
  approximateNumberOfMessagesNotVisible approximateNumberOfMessagesDelayed deadLetterCount approximateAgeOfOldestMessageSeconds
  eventSourceMappings { id functionName batchSize maxBatchingWindowMs reportBatchItemFailures maximumConcurrency enabled updatedAt }`;

export async function queuesPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Queues & mappings" nav="queues">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  let queues: QueueRow[] = [];
  let brokers: BrokerMappingRow[] = [];
  let streams: StreamRow[] = [];
  let failure: unknown = null;
  try {
    const data = await ctx.gql<{ queues: QueueRow[]; brokerEventSourceMappings: BrokerMappingRow[]; streams: StreamRow[] }>(
      `query ConsoleQueues { queues { ${QUEUE_FIELDS} } brokerEventSourceMappings { ${BROKER_MAPPING_FIELDS} } streams { ${STREAM_FIELDS} } }`,
    );
    streams = data.streams;
    queues = data.queues;
    brokers = data.brokerEventSourceMappings;
  } catch (e) {
    failure = e;
  }
  return (
    <Layout ctx={ctx} title="Queues & mappings" nav="queues">
      {failure ? <ErrorNote error={failure} what="queues" /> : null}
      <div id="queues" data-live-region hx-get="/console/queues" hx-trigger="every 5s" hx-select="#queues" hx-swap="outerHTML">
        {queues.length === 0 && streams.length === 0 && !failure ? (
          <p>
            No queues yet. Create one with the <code>createQueue</code> mutation (see docs/queues.md).
          </p>
        ) : null}
        {queues.map((q) => (
          <QueueView q={q} admin={can(ctx.session, 'admin')} />
        ))}
        {streams.map((s) => (
          <StreamView s={s} />
        ))}
        {brokers.length > 0 ? <BrokerMappingsView mappings={brokers} /> : null}
      </div>
    </Layout>
  );
}

const QueueView: FC<{ q: QueueRow; admin: boolean }> = ({ q, admin }) => (
  <section aria-labelledby={`queue-${q.name}-heading`} id={`queue-${q.name}`} class="panel">
    <h2 id={`queue-${q.name}-heading`}>Queue {q.name}</h2>
    <dl class="facts">
      <div>
        <dt>Waiting (visible)</dt>
        <dd>{count(q.approximateNumberOfMessages)}</dd>
      </div>
      <div>
        <dt>In flight</dt>
        <dd>{count(q.approximateNumberOfMessagesNotVisible)}</dd>
      </div>
      <div>
        <dt>Delayed</dt>
        <dd>{count(q.approximateNumberOfMessagesDelayed)}</dd>
      </div>
      <div>
        <dt>Oldest message</dt>
        <dd>{q.approximateAgeOfOldestMessageSeconds === null ? 'none' : `${seconds(q.approximateAgeOfOldestMessageSeconds)} old`}</dd>
      </div>
      <div>
        <dt>Dead letters</dt>
        <dd>{count(q.deadLetterCount)}</dd>
      </div>
      <div>
        <dt>Visibility timeout</dt>
        <dd>{seconds(q.visibilityTimeoutSeconds)}</dd>
      </div>
      <div>
        <dt>Receives before dead letter</dt>
        <dd>{q.maxReceiveCount}</dd>
      </div>
    </dl>
    {admin && q.deadLetterCount > 0 ? (
      <form method="post" action={`/console/queues/${encodeURIComponent(q.name)}/redrive-dead-letters`} class="actions">
        <button type="submit" id={`redrive-queue-${q.name}`}>
          Redrive {count(q.deadLetterCount)} dead-lettered messages
        </button>
      </form>
    ) : null}
    <h3>Mappings</h3>
    {q.eventSourceMappings.length === 0 ? (
      <p>No mapping delivers this queue.</p>
    ) : (
      <div class="table-wrap" tabindex={0} role="region" aria-label={`Mappings of queue ${q.name}`}>
        <table class="list">
          <caption class="sr-only">Event source mappings of queue {q.name}</caption>
          <thead>
            <tr>
              <th scope="col">Function</th>
              <th scope="col">Batch</th>
              <th scope="col">Partial failures</th>
              <th scope="col">State</th>
              <th scope="col">Changed</th>
              {admin ? <th scope="col">Action</th> : null}
            </tr>
          </thead>
          <tbody>
            {q.eventSourceMappings.map((m) => (
              <tr>
                <td>
                  <a href={`/console/functions/${encodeURIComponent(m.functionName)}`}>{m.functionName}</a>
                </td>
                <td>
                  up to {m.batchSize}
                  {m.maxBatchingWindowMs ? `, window ${ms(m.maxBatchingWindowMs)}` : ''}
                  {m.maximumConcurrency ? `, ≤ ${m.maximumConcurrency} at once` : ''}
                </td>
                <td>{m.reportBatchItemFailures ? 'reported per item' : 'whole batch'}</td>
                <td>
                  <span class={`status status-${m.enabled ? 'enabled' : 'disabled'}`}>{m.enabled ? 'enabled' : 'disabled'}</span>
                </td>
                <td>
                  <Time at={m.updatedAt} />
                </td>
                {admin ? (
                  <td>
                    <form method="post" action={`/console/mappings/${m.id}/enabled`}>
                      <input type="hidden" name="enabled" value={m.enabled ? 'false' : 'true'} />
                      <button type="submit" id={`toggle-${m.id}`} aria-label={`${m.enabled ? 'Disable' : 'Enable'} the mapping from ${q.name} to ${m.functionName}`}>
                        {m.enabled ? 'Disable' : 'Enable'}
                      </button>
                    </form>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    )}
  </section>
);

const StreamView: FC<{ s: StreamRow }> = ({ s }) => (
  <section aria-labelledby={`stream-${s.name}-heading`} id={`stream-${s.name}`} class="panel">
    <h2 id={`stream-${s.name}-heading`}>Stream {s.name}</h2>
    <dl class="facts">
      <div>
        <dt>Shards</dt>
        <dd>{s.shardCount}</dd>
      </div>
      <div>
        <dt>Retention</dt>
        <dd>{s.retentionHours} hours</dd>
      </div>
      <div>
        <dt>Records written</dt>
        <dd>{count(s.shards.reduce((n, h) => n + Number(h.lastSequenceNumber), 0))}</dd>
      </div>
    </dl>
    {s.eventSourceMappings.length === 0 ? (
      <p class="muted">No mapping reads this stream.</p>
    ) : (
      <div class="table-wrap" tabindex={0} role="region" aria-label={`Mappings of stream ${s.name}`}>
        <table class="list">
          <caption class="sr-only">Mappings of stream {s.name}: state and records behind the checkpoint per shard</caption>
          <thead>
            <tr>
              <th scope="col">Function</th>
              <th scope="col">State</th>
              <th scope="col">Batch</th>
              <th scope="col">Behind the checkpoint, per shard</th>
            </tr>
          </thead>
          <tbody>
            {s.eventSourceMappings.map((m) => {
              const lag = streamLag(s, m);
              return (
                <tr data-stream-mapping={m.id}>
                  <td>
                    <a href={`/console/functions/${encodeURIComponent(m.functionName)}`}>{m.functionName}</a>
                  </td>
                  <td>{m.enabled ? 'enabled' : 'disabled'}</td>
                  <td>
                    up to {m.batchSize}
                    {m.parallelizationFactor > 1 ? <span class="muted">, {m.parallelizationFactor} lanes per shard</span> : null}
                  </td>
                  <td>
                    <ul class="plain">
                      {lag.shards.map((h) => (
                        <li data-shard={h.shardId}>
                          <span class="mono">{h.shardId}</span>: {h.behind === null ? 'no checkpoint yet' : `${count(h.behind)} behind`}
                          {h.retryAttempts > 0 ? <span class="muted"> (retrying, {h.retryAttempts} failed)</span> : null}
                        </li>
                      ))}
                    </ul>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    )}
  </section>
);

const BrokerMappingsView: FC<{ mappings: BrokerMappingRow[] }> = ({ mappings }) => (
  <section aria-labelledby="broker-mappings-heading" id="broker-mappings" class="panel">
    <h2 id="broker-mappings-heading">Broker mappings (RabbitMQ, NATS)</h2>
    <div class="table-wrap" tabindex={0} role="region" aria-label="Broker mappings">
      <table class="list">
        <caption class="sr-only">Mappings from RabbitMQ queues and NATS streams to functions</caption>
        <thead>
          <tr>
            <th scope="col">Source</th>
            <th scope="col">Function</th>
            <th scope="col">Batch</th>
            <th scope="col">State</th>
            <th scope="col">Lag</th>
          </tr>
        </thead>
        <tbody>
          {mappings.map((m) => (
            <tr>
              <td>
                {brokerSource(m)}
              </td>
              <td>
                <a href={`/console/functions/${encodeURIComponent(m.functionName)}`}>{m.functionName}</a>
              </td>
              <td>up to {m.batchSize}</td>
              <td>
                <span class={`status status-${m.enabled ? 'enabled' : 'disabled'}`}>{m.state}</span>
                {m.stateReason ? ` ${m.stateReason}` : ''} <Time at={m.stateChangedAt} />
              </td>
              <td>{m.lag === null ? 'unknown' : `${count(m.lag)} waiting`}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  </section>
);
