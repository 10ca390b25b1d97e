// Log lines of one attempt. Only the tail matters (the API returns the last 4 KB as
// X-Amz-Log-Result), so memory stays bounded however chatty a handler is.
import { format } from 'node:util';

export const MAX_LOG_BYTES = 64 * 1024;

export type LogLevel = 'INFO' | 'WARN' | 'ERROR';

/** Lambda-like line: timestamp, level, message. */
export function formatLogLine(level: LogLevel, args: unknown[]): string {
  return `${new Date().toISOString()}\t${level}\t${format(...args)}\n`;
}

export class AttemptLog {
  private chunks: string[] = [];
  /** Approximate size in UTF-16 units; exact bytes are only counted when rendering. */
  private size = 0;

  append(line: string): void {
    this.chunks.push(line);
    this.size += line.length;
    // Compact lazily: dropping old lines on every append would be quadratic.
    if (this.size > 4 * MAX_LOG_BYTES) this.compact();
  }

  toString(): string {
    if (this.chunks.length === 0) return '';
    return tailBytes(this.chunks.join(''), MAX_LOG_BYTES);
  }

  private compact(): void {
    const text = tailBytes(this.chunks.join(''), MAX_LOG_BYTES);
    this.chunks = [text];
    this.size = text.length;
  }
}

/** The last `max` bytes of `text` as UTF-8, cut at a character boundary. */
export function tailBytes(text: string, max: number): string {
  if (text.length * 3 <= max) return text;
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return text;
  let start = buf.length - max;
  // Skip UTF-8 continuation bytes so we never start mid-character.
  while (start < buf.length && ((buf[start] ?? 0) & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}

/**
 * A failed attempt's log ends with the error report, as Lambda's does (`Invoke Error` and
 * the error as JSON), unless the runtime already wrote the error there (timeouts, HTTP
 * failures). So the Tail header and `invoke-ledger logs` say why an attempt failed.
 */
export function withErrorReport<O extends { ok: boolean; log: string; error?: { errorType: string; errorMessage: string; trace: string[] } }>(outcome: O): O {
  if (outcome.ok || !outcome.error) return outcome;
  const { errorType, errorMessage, trace } = outcome.error;
  if (outcome.log.includes(`${errorType}: ${errorMessage}`)) return outcome;
  const report = formatLogLine('ERROR', ['Invoke Error \t%s', JSON.stringify({ errorType, errorMessage, stack: trace })]);
  return { ...outcome, log: tailBytes(outcome.log + report, MAX_LOG_BYTES) };
}
