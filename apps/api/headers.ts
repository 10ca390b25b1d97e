// Header values that carry what a function produced (its error type). A header holds
// Latin-1 without CR, LF or NUL, and a non-ASCII or CR/LF error name would make the
// response throw after the function ran: a 500 that SDKs retry, running it again. So such
// text is percent-encoded (UTF-8, as encodeURIComponent does) and bounded; the body
// carries it in full (docs/http-api.md).
import { storableText } from '../../db/storable.ts';

/** printable ASCII without '%': sent as it is */
const PLAIN = /^[\x21-\x24\x26-\x7e]*$/;
const UNSAFE = /[^\x21-\x24\x26-\x7e]/u;
export const MAX_HEADER_TEXT = 1024;

/** `text` as a header value: unchanged when it is printable ASCII without '%', percent-encoded otherwise, at most `max` characters. */
export function headerText(text: string, max: number = MAX_HEADER_TEXT): string {
  if (text.length <= max && PLAIN.test(text)) return text;
  let out = '';
  // by code point, so that a cut never splits the bytes of one character
  for (const ch of storableText(text)) {
    const piece = UNSAFE.test(ch) ? encodeURIComponent(ch) : ch;
    if (out.length + piece.length > max) break;
    out += piece;
  }
  return out;
}
