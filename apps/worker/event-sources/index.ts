// Poll-based invocation: event source mappings deliver queue messages in batches.
export { createEventSourcePoller, type EventSourcePoller, type EventSourcePollerOptions } from './poller.ts';
export { completeBatch, receiveBatch, EVENT_SOURCE, type QueueRecord, type ReceivedBatch, type ReceiveResult } from './batches.ts';
export { decideBatch, parseBatchItemFailures, INVALID_BATCH_RESPONSE } from './batch-response.ts';
