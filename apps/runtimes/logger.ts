import { destination, pino, type Logger } from 'pino';

let fallback: Logger | undefined;

/** Used when the caller passes no logger: warnings still reach stderr. */
export function defaultLogger(): Logger {
  return (fallback ??= pino({ name: 'runtimes', level: 'warn' }, destination({ dest: 2, sync: true })));
}
