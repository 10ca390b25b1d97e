// Request bodies read under a byte limit while they stream in: a 100 MB upload is
// refused after `limit` bytes instead of being buffered first. Content-Length, when
// present, refuses it before a single byte is read.
//
// Under @hono/node-server the bytes come straight from Node's IncomingMessage
// (`c.env.incoming`): asking the lightweight Request for its body would build a WHATWG
// Request, an AbortController and two transferable streams per request, which profiling
// showed to be the largest CPU cost of an accept (docs/benchmarks.md). Elsewhere (tests
// calling app.request(), other runtimes) the Request's stream is read.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { LedgerError } from '../../db/errors.ts';

/** AWS's wording, which scripts match on */
export function payloadTooLarge(limit: number): LedgerError {
  return new LedgerError('PayloadTooLarge', `Request must be smaller than ${limit} bytes for the Invoke operation`, { limit });
}

/** Bodies already read (by the SigV4 check, then again by the route), by request. */
const bodies = new WeakMap<Request, Uint8Array>();

/**
 * The body as bytes, or PayloadTooLarge as soon as more than `limit` bytes arrived.
 * It may be called more than once per request (auth, then the route): the bytes are
 * read once and the limit applied on every call.
 */
export async function readBodyLimited(c: Context, limit: number): Promise<Uint8Array> {
  const req = c.req.raw;
  let bytes = bodies.get(req);
  if (bytes === undefined) {
    const declared = req.headers.get('content-length');
    if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limit) throw payloadTooLarge(limit);
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    bytes = incoming ? await readIncoming(incoming, limit) : await readStream(req, limit);
    bodies.set(req, bytes);
  }
  if (bytes.byteLength > limit) throw payloadTooLarge(limit);
  return bytes;
}

function readIncoming(incoming: IncomingMessage, limit: number): Promise<Uint8Array> {
  if (incoming.readableEnded) return Promise.reject(new Error('the request body was consumed before it was read'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) {
        // stop reading; @hono/node-server drains or closes the rest after the answer
        stop();
        incoming.pause();
        reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      stop();
      reject(e);
    };
    const onClose = () => {
      stop();
      reject(new Error('the client closed the connection before its request body was complete'));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}

async function readStream(req: Request, limit: number): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        // stop reading; the server drains or closes the rest after answering
        void reader.cancel().catch(() => {});
        throw payloadTooLarge(limit);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Lambda's rule: an empty body is `{}`; anything else must be JSON. */
export function parseJsonPayload(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LedgerError('InvalidRequestContent', 'Could not parse request body into json: the body is not valid UTF-8');
  }
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LedgerError('InvalidRequestContent', `Could not parse request body into json: ${(e as Error).message}`);
  }
}
