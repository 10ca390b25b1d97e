// Request bodies read under a byte limit while they stream in: a 100 MB upload is
// refused after `limit` bytes instead of being buffered first. Content-Length, when
// present, refuses it before a single byte is read.
//
// A request followed on its connection by bytes that are not HTTP (a Content-Length
// shorter than the body sent, say) is refused with nothing written when the parser has
// seen those bytes by the time the body is read, which is the case when they come in
// the same packets; otherwise the request gets its true answer first, and only then the
// connection its 400 and its end. Node's own handling answers 400 and closes at once,
// while the request it already handed over goes on to run (answerMalformedRequests).
//
// Under @hono/node-server the bytes come straight from Node's IncomingMessage
// (`c.env.incoming`): asking the lightweight Request for its body would build a WHATWG
// Request, an AbortController and two transferable streams per request, which profiling
// showed to be the largest CPU cost of an accept (docs/benchmarks.md). Elsewhere (tests
// calling app.request(), other runtimes) the Request's stream is read.
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Context } from 'hono';
import { LedgerError } from '../../db/errors.ts';
import { whyNotStorableJson } from '../../db/storable.ts';

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
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  let bytes = bodies.get(req);
  if (bytes === undefined) {
    const declared = req.headers.get('content-length');
    if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limit) throw payloadTooLarge(limit);
    bytes = incoming ? await readIncoming(incoming, limit) : await readStream(req, limit);
    bodies.set(req, bytes);
  }
  if (incoming && malformed.has(incoming.socket)) {
    throw new LedgerError('InvalidRequestContent', 'The request body does not match its Content-Length: bytes that are not HTTP follow it');
  }
  if (bytes.byteLength > limit) throw payloadTooLarge(limit);
  return bytes;
}

/** Connections on which the HTTP parser found bytes that are not a request. */
const malformed = new WeakSet<Duplex>();
/** Responses being written, by connection. */
const responding = new WeakMap<Duplex, Set<ServerResponse>>();

/**
 * Answers bytes that are not HTTP without contradicting the ledger: a request already
 * handed to the app on that connection is answered first (or refused by
 * readBodyLimited, if its body is read after), then the connection gets 400 (431 for
 * oversized headers, as Node answers) and is closed.
 */
export function answerMalformedRequests(server: Server): void {
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    let open = responding.get(socket);
    if (!open) responding.set(socket, (open = new Set()));
    open.add(res);
    res.once('close', () => open.delete(res));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (malformed.has(socket)) return; // the parser reports each further chunk again
    malformed.add(socket);
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const open = [...(responding.get(socket) ?? [])];
    const close = () => {
      if (err.code === 'ECONNRESET' || !socket.writable) socket.destroy();
      else socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    // a request whose body is still incomplete will never complete: end it now, as Node does
    const complete = open.every((res) => res.req.complete);
    if (open.length === 0 || !complete) {
      if (open.some((res) => res.headersSent)) socket.destroy();
      else close();
      return;
    }
    let waiting = open.length;
    for (const res of open) res.once('close', () => --waiting === 0 && close());
  });
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

/**
 * Lambda's rule: an empty body is `{}`; anything else must be JSON. And what the ledger
 * cannot store (a NUL, a lone surrogate, nesting past MAX_JSON_DEPTH) is refused here,
 * alone, before it could join a group commit.
 */
export function parseJsonPayload(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LedgerError('InvalidRequestContent', 'Could not parse request body into json: the body is not valid UTF-8');
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LedgerError('InvalidRequestContent', `Could not parse request body into json: ${(e as Error).message}`);
  }
  const why = whyNotStorableJson(value);
  if (why !== null) throw new LedgerError('InvalidRequestContent', `The request body cannot be stored: ${why}`);
  return value;
}
