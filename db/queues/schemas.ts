// What a queue, a mapping and a sent message may look like, and the limits they share
// (like SQS's). Pure: zod schemas and constants, no SQL.
import { z } from 'zod';
import { LedgerError } from '../errors.ts';
import { FUNCTION_NAME } from '../functions.ts';

export const QUEUE_NAME = FUNCTION_NAME;
/** like SQS */
export const MAX_MESSAGE_BYTES = 262_144;
export const MAX_SEND_BATCH_ENTRIES = 1_000;
/** a send batch and a delivered batch stay within a sync invoke's payload */
export const MAX_BATCH_BYTES = 6_291_456;
export const MESSAGES_CHANNEL = 'ledger_queue_messages';
export const MAX_RECEIVE_COUNT_EXCEEDED = 'MaxReceiveCountExceeded';

const name = (what: string) => z.string().regex(QUEUE_NAME, `${what} must match ${QUEUE_NAME.source}`);

export const queueInputSchema = z
  .object({
    name: name('queue name'),
    // 0 would hand a message to the next receive while its batch runs (messages are only
    // consumed by mappings here); a mapping also needs at least its function's timeout
    visibilityTimeoutSeconds: z
      .number()
      .int()
      .min(1, 'visibilityTimeoutSeconds must be at least 1: a received message stays invisible while its batch runs')
      .max(43_200)
      .default(30),
    maxReceiveCount: z.number().int().min(1).max(1_000).default(5),
  })
  .strict();
export type QueueInput = z.input<typeof queueInputSchema>;

const mappingFields = {
  batchSize: z.number().int().min(1).max(10_000),
  maxBatchingWindowMs: z.number().int().min(0).max(300_000),
  reportBatchItemFailures: z.boolean(),
  maximumConcurrency: z.number().int().min(2).max(1_000).nullable(),
  enabled: z.boolean(),
};

export const mappingInputSchema = z
  .object({
    queueName: name('queueName'),
    functionName: name('functionName'),
    batchSize: mappingFields.batchSize.default(10),
    maxBatchingWindowMs: mappingFields.maxBatchingWindowMs.default(0),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.default(false),
    maximumConcurrency: mappingFields.maximumConcurrency.default(null),
    enabled: mappingFields.enabled.default(true),
  })
  .strict();
export type EventSourceMappingInput = z.input<typeof mappingInputSchema>;

export const mappingUpdateSchema = z
  .object({
    functionName: name('functionName').optional(),
    batchSize: mappingFields.batchSize.optional(),
    maxBatchingWindowMs: mappingFields.maxBatchingWindowMs.optional(),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.optional(),
    maximumConcurrency: mappingFields.maximumConcurrency.optional(),
    enabled: mappingFields.enabled.optional(),
  })
  .strict();
export type EventSourceMappingUpdate = z.input<typeof mappingUpdateSchema>;

export const sendEntrySchema = z
  .object({
    body: z.unknown().refine((b) => b !== undefined, 'body is required'),
    delaySeconds: z.number().int().min(0).max(900).nullish(),
  })
  .strict();
export type SendEntry = z.input<typeof sendEntrySchema>;

/** Validates input against a schema; the issues become one InvalidParameter (also db/brokers.ts). */
export function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
    throw new LedgerError('InvalidParameter', msg, { issues: parsed.error.issues });
  }
  return parsed.data;
}
