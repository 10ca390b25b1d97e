// Kinesis's PutRecord and PutRecords on their own wire (docs/streams.md, "The Kinesis API"),
// so `@aws-sdk/client-kinesis` and `aws kinesis put-record(s)` can produce to a stream:
// `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>` and an
// `application/x-amz-json-1.1` body, signed with SigV4 like the Lambda routes. Only the two
// producer operations are served; streams are made and read through GraphQL, the CLI and
// the event source mappings. The records go through db/streams.ts `putRecords`, the same
// limits and the same all-or-nothing refusal as `POST /streams/:name/records`.
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import type { Db } from '../../db/schema.ts';
import { MAX_PUT_RECORDS_BODY_BYTES, MAX_PUT_RECORDS_BYTES, putRecords } from '../../db/streams.ts';
import { parseJsonPayload, readBodyLimited } from './body.ts';
import { httpErrorOf } from './errors.ts';

const TARGET_PREFIX = 'Kinesis_20131202.';
/** arn:aws:kinesis:<region>:<account>:stream/<name>, as the SDK sends StreamARN */
const STREAM_ARN = /^arn:aws[a-zA-Z-]*:kinesis:[a-z0-9-]+:\d{12}:stream\/([A-Za-z0-9_.-]{1,128})$/;
const STREAM_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Kinesis's names for our refusals: what its SDK turns into its exception classes. */
function kinesisType(awsType: string, status: number): string {
  if (status >= 500) return 'InternalFailureException';
  switch (awsType) {
    case 'InvalidParameterValueException':
      return 'InvalidArgumentException';
    case 'RequestEntityTooLargeException':
      return 'ValidationException';
    case 'InvalidRequestContentException':
      return 'SerializationException';
    case 'TooManyRequestsException':
      return 'ProvisionedThroughputExceededException';
    default:
      return awsType;
  }
}

function refusal(c: Context, logger: Logger, e: unknown): Response {
  const err = httpErrorOf(e);
  if (err.status >= 500) logger.error({ err: e }, 'kinesis route failed');
  const type = kinesisType(err.awsType, err.status);
  // Kinesis answers a too-large request as a 400 ValidationException, not a 413
  const status = err.status === 413 ? 400 : err.status;
  return answer(c, { __type: type, message: err.message }, status, { ...err.headers, 'x-amzn-ErrorType': type });
}

function answer(c: Context, body: unknown, status: 200 | 400 | 401 | 403 | 404 | 409 | 412 | 429 | 500 | 503 = 200, headers: Record<string, string> = {}): Response {
  return c.body(JSON.stringify(body), status, { ...headers, 'content-type': 'application/x-amz-json-1.1', 'x-amzn-RequestId': randomUUID() });
}

/** The stream a request names: StreamName, or the name inside StreamARN (both must agree when both are given). */
function streamOf(body: Record<string, unknown>): string {
  const name = body['StreamName'];
  const arn = body['StreamARN'];
  if (name !== undefined && (typeof name !== 'string' || !STREAM_NAME.test(name))) {
    throw new LedgerError('InvalidParameter', 'StreamName must be 1 to 128 characters of letters, digits, _ . -');
  }
  let fromArn: string | undefined;
  if (arn !== undefined) {
    const m = typeof arn === 'string' ? STREAM_ARN.exec(arn) : null;
    if (!m) throw new LedgerError('InvalidParameter', 'StreamARN must be arn:aws:kinesis:<region>:<account>:stream/<name>');
    fromArn = m[1] as string;
  }
  if (name === undefined && fromArn === undefined) throw new LedgerError('InvalidParameter', 'StreamName or StreamARN is required');
  if (name !== undefined && fromArn !== undefined && name !== fromArn) throw new LedgerError('InvalidParameter', `StreamName ${name} and StreamARN name different streams`);
  return (name as string | undefined) ?? (fromArn as string);
}

/** One record as db/streams.ts takes it; fields Kinesis knows that we do not serve are refused, not ignored. */
function recordOf(r: unknown, where: string): { partitionKey: unknown; data: unknown } {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new LedgerError('InvalidParameter', `${where} must be an object with Data and PartitionKey`);
  const { Data, PartitionKey, ExplicitHashKey, ...rest } = r as Record<string, unknown>;
  if (ExplicitHashKey !== undefined) {
    throw new LedgerError('InvalidParameter', `${where}: ExplicitHashKey is not supported here; the shard is chosen by the MD5 of PartitionKey`);
  }
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new LedgerError('InvalidParameter', `${where}: unknown field ${extra[0]}`);
  if (Data === undefined) throw new LedgerError('InvalidParameter', `${where}: Data is required`);
  if (PartitionKey === undefined) throw new LedgerError('InvalidParameter', `${where}: PartitionKey is required`);
  return { partitionKey: PartitionKey, data: Data };
}

function only(body: Record<string, unknown>, allowed: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new LedgerError('InvalidParameter', `unknown field ${extra[0]}`);
}

export function kinesisRoutes(db: Db, logger: Logger): Hono {
  const app = new Hono();

  app.post('/', async (c) => {
    try {
      const target = c.req.header('x-amz-target') ?? '';
      if (!target.startsWith(TARGET_PREFIX)) {
        throw new LedgerError('InvalidRequestContent', `POST / serves Kinesis's PutRecord and PutRecords: set X-Amz-Target to ${TARGET_PREFIX}PutRecord or ${TARGET_PREFIX}PutRecords`);
      }
      const operation = target.slice(TARGET_PREFIX.length);
      if (operation !== 'PutRecord' && operation !== 'PutRecords') {
        const type = 'UnknownOperationException';
        return answer(c, { __type: type, message: `${operation} is not served here: only PutRecord and PutRecords (docs/streams.md)` }, 400, { 'x-amzn-ErrorType': type });
      }
      const bytes = await readBodyLimited(c, MAX_PUT_RECORDS_BODY_BYTES).catch((e: unknown) => {
        if (e instanceof LedgerError && e.code === 'PayloadTooLarge') {
          throw new LedgerError('PayloadTooLarge', `A PutRecords request is at most ${MAX_PUT_RECORDS_BYTES} bytes of records`);
        }
        throw e;
      });
      const body = bytes.byteLength === 0 ? null : parseJsonPayload(bytes);
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LedgerError('InvalidRequestContent', `${operation} takes a JSON object`);
      const fields = body as Record<string, unknown>;
      if (operation === 'PutRecord') {
        // SequenceNumberForOrdering: our sequence numbers already increase per shard in commit order
        only(fields, ['StreamName', 'StreamARN', 'Data', 'PartitionKey', 'ExplicitHashKey', 'SequenceNumberForOrdering']);
        const { SequenceNumberForOrdering: _ordering, StreamName: _name, StreamARN: _arn, ...record } = fields;
        const [one] = await putRecords(db, streamOf(fields), [recordOf(record, 'the record')]);
        return answer(c, { ShardId: one?.shardId, SequenceNumber: one?.sequenceNumber, EncryptionType: 'NONE' });
      }
      only(fields, ['StreamName', 'StreamARN', 'Records']);
      const records = fields['Records'];
      if (!Array.isArray(records)) throw new LedgerError('InvalidParameter', 'Records must be a list of 1 to 500 records');
      const put = await putRecords(db, streamOf(fields), records.map((r, i) => recordOf(r, `Records[${i}]`)));
      return answer(c, { FailedRecordCount: 0, Records: put.map((p) => ({ ShardId: p.shardId, SequenceNumber: p.sequenceNumber })), EncryptionType: 'NONE' });
    } catch (e) {
      return refusal(c, logger, e);
    }
  });

  return app;
}
