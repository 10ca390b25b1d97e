// POST /queues/:name/messages: the HTTP way to send one message (the body is the
// message, any JSON up to 256 KB like SQS; `?delaySeconds=` 0–900). 201 {"messageId"}.
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { MAX_MESSAGE_BYTES } from '../../db/queues/schemas.ts';
import type { Db } from '../../db/schema.ts';
import { parseJsonPayload, readBodyLimited } from './body.ts';
import { chainDepthOf } from './function-ref.ts';
import { nativeAnswer } from './native-routes.ts';

export function queueRoutes(db: Db, logger: Logger): Hono {
  const app = new Hono();

  app.post('/queues/:name/messages', (c) =>
    nativeAnswer(c, logger, async () => {
      const queueName = c.req.param('name');
      const delay = c.req.query('delaySeconds');
      if (delay !== undefined && !/^\d{1,3}$/.test(delay)) throw new LedgerError('InvalidParameter', 'delaySeconds must be an integer 0 … 900');
      const bytes = await readBodyLimited(c, MAX_MESSAGE_BYTES).catch((e: unknown) => {
        if (e instanceof LedgerError && e.code === 'PayloadTooLarge') {
          throw new LedgerError('PayloadTooLarge', `A message must be at most ${MAX_MESSAGE_BYTES} bytes`);
        }
        throw e;
      });
      if (bytes.byteLength === 0) throw new LedgerError('InvalidRequestContent', 'The message is the request body: send JSON');
      const body = parseJsonPayload(bytes);
      const [messageId] = await sendMessages(db, queueName, [{ body, ...(delay !== undefined ? { delaySeconds: Number(delay) } : {}) }], {
        chainDepth: chainDepthOf(c.req.raw.headers),
      });
      return c.json({ messageId, queueName }, 201);
    }),
  );

  return app;
}
