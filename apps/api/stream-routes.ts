// POST /streams/:name/records (docs/streams.md): the HTTP way to put records on a stream.
// The body is Kinesis's PutRecord ({"partitionKey", "data": base64}) or PutRecords
// ({"records": [...]}, 1–500 records, 5 MB); 201 with where each record went.
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import type { Db } from '../../db/schema.ts';
import { MAX_PUT_RECORDS_BODY_BYTES, MAX_PUT_RECORDS_BYTES, putRecords } from '../../db/streams.ts';
import { parseJsonPayload, readBodyLimited } from './body.ts';
import { nativeAnswer } from './native-routes.ts';

export function streamRoutes(db: Db, logger: Logger): Hono {
  const app = new Hono();

  app.post('/streams/:name/records', (c) =>
    nativeAnswer(c, logger, async () => {
      const bytes = await readBodyLimited(c, MAX_PUT_RECORDS_BODY_BYTES).catch((e: unknown) => {
        if (e instanceof LedgerError && e.code === 'PayloadTooLarge') {
          throw new LedgerError('PayloadTooLarge', `A PutRecords request is at most ${MAX_PUT_RECORDS_BYTES} bytes of records`);
        }
        throw e;
      });
      if (bytes.byteLength === 0) throw new LedgerError('InvalidRequestContent', 'Send {"partitionKey", "data"} or {"records": [...]} as JSON');
      const body = parseJsonPayload(bytes);
      const streamName = c.req.param('name');
      if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'records' in body) {
        const { records, ...rest } = body as { records: unknown };
        if (Object.keys(rest).length > 0) throw new LedgerError('InvalidParameter', `unknown field ${Object.keys(rest)[0]}`);
        if (!Array.isArray(records)) throw new LedgerError('InvalidParameter', 'records must be a list');
        return c.json({ streamName, records: await putRecords(db, streamName, records) }, 201);
      }
      const [one] = await putRecords(db, streamName, [body]);
      return c.json({ streamName, ...one }, 201);
    }),
  );

  return app;
}
