// How a handler runs: MODULE handlers in worker threads (timeout kill, memory limit) or
// inline, HTTP handlers over fetch. Used by the worker (async) and the API (sync invokes).
export type {
  AttemptOutcome,
  AttemptRequest,
  DiscoveredFunction,
  FunctionError,
  Handler,
  HandlerContext,
  HandlerLog,
  ReplayInfo,
  RunnableFunction,
  ReserveOptions,
  RuntimeKind,
  RuntimeSlot,
  Runtimes,
  RuntimesOptions,
} from './types.ts';
export { createRuntimes } from './runtimes.ts';
export { resolveHandlerPath, type ResolvedHandler } from './handler-path.ts';
export { discoverFunctions } from './discover.ts';
export { ErrorType, HandlerPathError, MAX_RESULT_BYTES, redactUrlSecrets, timeoutError, toFunctionError } from './errors.ts';
export { MAX_LOG_BYTES, tailBytes } from './attempt-log.ts';
export { signBody } from './http-runtime.ts';
export { CHAIN_DEPTH_HEADER } from './context.ts';
