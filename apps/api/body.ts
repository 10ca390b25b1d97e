// Request bodies read under a byte limit while they stream in: a 100 MB upload is
// refused after `limit` bytes instead of being buffered first. Content-Length, when
// present, refuses it before a single byte is read.
import { LedgerError } from '../../db/errors.ts';

/** AWS's wording, which scripts match on */
export function payloadTooLarge(limit: number): LedgerError {
  return new LedgerError('PayloadTooLarge', `Request must be smaller than ${limit} bytes for the Invoke operation`, { limit });
}

/** The body as bytes, or PayloadTooLarge as soon as more than `limit` bytes arrived. */
export async function readBodyLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limit) throw payloadTooLarge(limit);
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
