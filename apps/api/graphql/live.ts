// How ledger-feed subscriptions travel over SSE: a yoga plugin for `invocationEvents`.
//
// - Once per event, not once per subscriber: subscribers with the same operation,
//   variables and scopes share one GraphQL execution of each event and one encoded SSE
//   frame. The SSE stream takes every event its subscription has ready and writes them in
//   one chunk, so a few hundred subscribers cost a few hundred writes per batch of
//   events, not one promise chain and one write per event per subscriber.
// - Every frame carries the event's cursor as its SSE `id:`, so a client (EventSource
//   does it by itself) resumes with `Last-Event-ID` after a disconnect or a restart.
// - A typed error from the feed (SubscriberTooSlow) is the stream's last message, a
//   GraphQL error with its code, then the stream completes, instead of a torn
//   connection. A dropped subscriber that does not even read that message is
//   disconnected after a grace period, so it holds no more than its socket buffers.
import type { ServerResponse } from 'node:http';
import type { DocumentNode, ExecutionArgs, ExecutionResult } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { FeedEvent } from '../../../db/subscriptions.ts';
import { toGraphQLError } from './errors.ts';
import { formatCursor, type Subscription } from './feed.ts';
import { GraphQLError, execute } from './graphql-js.ts';

export interface LiveTransportOptions {
  /** how long a subscriber ended for falling behind may take to read that message (default 10 s) */
  slowConsumerGraceMs?: number;
  /** SSE comment pings keep proxies from closing an idle stream (default 12 s) */
  pingIntervalMs?: number;
}

interface FeedRequestState {
  /** called by the feed when this request's subscriber was dropped */
  dropped(): void;
  stream: SseStream | null;
  droppedAt: number | null;
  /** the subscription and how one of its events becomes a frame */
  source: Subscription | null;
  frame: ((e: FeedEvent) => Promise<Uint8Array>) | null;
}

/** Requests carrying a feed subscription, keyed by the Request object yoga hands around. */
const feedRequests = new WeakMap<Request, FeedRequestState>();
/** event → operation key → its frame (shared by subscribers with the same key) */
const framesByEvent = new WeakMap<FeedEvent, Map<string, Promise<Uint8Array>>>();
const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 1;
const encoder = new TextEncoder();

/** for tests: GraphQL executions of feed events, streams cut for not reading */
export const liveStats = { executions: 0, disconnected: 0 };

/** Call from the subscribe resolver: it wires the feed's drop signal to the stream. */
export function onFeedDropped(request: Request): () => void {
  return stateOf(request).dropped;
}

function stateOf(request: Request): FeedRequestState {
  let state = feedRequests.get(request);
  if (!state) {
    const s: FeedRequestState = {
      stream: null,
      droppedAt: null,
      source: null,
      frame: null,
      dropped: () => {
        s.droppedAt = Date.now();
        s.stream?.dropped();
      },
    };
    feedRequests.set(request, (state = s));
  }
  return state;
}

function operationKey(args: ExecutionArgs): string {
  let id = documentIds.get(args.document);
  if (id === undefined) documentIds.set(args.document, (id = nextDocumentId++));
  const principal = (args.contextValue as { principal?: { scopes?: Iterable<string> } } | undefined)?.principal;
  const scopes = principal?.scopes ? [...principal.scopes].sort().join(',') : '';
  return `${id}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? {})}\u0000${scopes}`;
}

const sse = (result: ExecutionResult, id: string | null) => encoder.encode(`${id ? `id: ${id}\n` : ''}event: next\ndata: ${JSON.stringify(result)}\n\n`);

/** Unexpected errors are logged and masked, as yoga masks them for every other operation. */
function masked(result: ExecutionResult, logger: Logger): ExecutionResult {
  if (!result.errors?.length) return result;
  return {
    ...result,
    errors: result.errors.map((e) => {
      const typed = toGraphQLError(e.originalError ?? e);
      if (typed) return typed;
      if (!e.originalError) return e; // a GraphQL error proper (no internals)
      logger.error({ err: e.originalError }, 'GraphQL subscription event failed');
      return new GraphQLError('Unexpected error.', { path: e.path });
    }),
  };
}

function frameShared(args: ExecutionArgs, key: string, event: FeedEvent, logger: Logger): Promise<Uint8Array> {
  let byKey = framesByEvent.get(event);
  if (!byKey) framesByEvent.set(event, (byKey = new Map()));
  let frame = byKey.get(key);
  if (!frame) {
    liveStats.executions++;
    frame = Promise.resolve(execute({ ...args, rootValue: event }) as ExecutionResult | Promise<ExecutionResult>).then((r) =>
      sse(masked(r, logger), formatCursor({ txId: event.txId, position: event.position })),
    );
    byKey.set(key, frame);
  }
  return frame;
}

/** one write carries up to this many ready events, about this many bytes (as stored) */
const MAX_EVENTS_PER_WRITE = 256;
const MAX_BYTES_PER_WRITE = 64 << 10;

/**
 * Streams take turns: at most STREAMS_PER_TURN of them write a chunk per turn of the
 * event loop, so a burst fanned out to a few hundred subscribers is interleaved with
 * everything else the process does (an invoke's I/O waits one turn, not the whole burst).
 */
const STREAMS_PER_TURN = 8;
const turnQueue: (() => void)[] = [];
let turnScheduled = false;
function nextTurn(): void {
  turnScheduled = false;
  for (const go of turnQueue.splice(0, STREAMS_PER_TURN)) go();
  if (turnQueue.length > 0 && !turnScheduled) {
    turnScheduled = true;
    setImmediate(nextTurn);
  }
}
const yieldToEventLoop = () =>
  new Promise<void>((r) => {
    turnQueue.push(r);
    if (!turnScheduled) {
      turnScheduled = true;
      setImmediate(nextTurn);
    }
  });

class SseStream {
  private controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  private ping: NodeJS.Timeout | null = null;
  private grace: NodeJS.Timeout | null = null;
  private finished = false;

  constructor(
    private readonly source: Subscription,
    private readonly frame: (e: FeedEvent) => Promise<Uint8Array>,
    /** the iterator yoga made of the subscription: returned (closed) with the stream */
    private readonly result: AsyncIterator<unknown>,
    private readonly outgoing: ServerResponse | undefined,
    private readonly o: Required<LiveTransportOptions>,
  ) {
    source.detach = () => this.disconnect();
  }

  response(fetchAPI: { Response: typeof Response; ReadableStream: typeof ReadableStream }): Response {
    const body = new fetchAPI.ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
          // a first byte at once: some clients wait for one before they report the stream open
          controller.enqueue(encoder.encode(':\n\n'));
          this.ping = setInterval(() => {
            if (controller.desiredSize !== null && controller.desiredSize > 0) controller.enqueue(encoder.encode(':\n\n'));
          }, this.o.pingIntervalMs);
          this.ping.unref?.();
        },
        pull: async (controller) => {
          try {
            // a few hundred streams woken by one burst would otherwise run as one long
            // chain of microtasks while requests wait: each chunk waits for its turn
            if (!this.source.hasReady()) await this.source.ready();
            await yieldToEventLoop();
            const events = this.source.takeReady(MAX_EVENTS_PER_WRITE, MAX_BYTES_PER_WRITE);
            if (events.length > 0) {
              const frames = await Promise.all(events.map(this.frame));
              controller.enqueue(frames.length === 1 ? (frames[0] as Uint8Array) : Buffer.concat(frames));
              return;
            }
            const end = this.source.ending();
            if (!end) return; // woken without news: the next pull waits again
            if (end.error) {
              const typed = toGraphQLError(end.error) ?? new GraphQLError('Unexpected error.');
              controller.enqueue(sse({ errors: [typed] }, null));
            }
            this.complete(controller);
          } catch (e) {
            this.cleanup();
            controller.error(e);
          }
        },
        cancel: async () => {
          this.cleanup();
          await this.source.return();
          await this.result.return?.();
        },
      },
      { highWaterMark: 1 },
    );
    return new fetchAPI.Response(body, {
      status: 200,
      headers: { 'Content-Type': 'text/event-stream', Connection: 'keep-alive', 'Cache-Control': 'no-cache', 'Content-Encoding': 'none' },
    });
  }

  /** The subscriber was ended for falling behind: it has a grace period to read why. */
  dropped(): void {
    if (this.finished || this.grace) return;
    this.grace = setTimeout(() => this.disconnect(), this.o.slowConsumerGraceMs);
    this.grace.unref?.();
  }

  private disconnect(): void {
    // a stream that ended may still sit unread in the response's buffers: a dropped client
    // that reads nothing is cut all the same, once its grace is over
    if (this.outgoing ? this.outgoing.writableFinished || this.outgoing.destroyed : this.finished) return;
    liveStats.disconnected++;
    this.cleanup();
    if (this.outgoing) this.outgoing.destroy();
    else this.controller?.error(new Error('subscriber too slow: disconnected'));
  }

  private complete(controller: ReadableStreamDefaultController<Uint8Array>): void {
    controller.enqueue(encoder.encode('event: complete\ndata:\n\n'));
    // a dropped subscriber's grace keeps running: completing the stream is not delivering it
    const grace = this.grace;
    this.grace = null;
    this.cleanup();
    this.grace = grace;
    controller.close();
    void this.result.return?.();
  }

  private cleanup(): void {
    this.finished = true;
    this.source.detach = null;
    if (this.ping) clearInterval(this.ping);
    if (this.grace) clearTimeout(this.grace);
    this.ping = null;
    this.grace = null;
  }
}

/** The yoga plugin; put it after the auth plugin (it keys shared executions by the caller's scopes). */
export function useLiveFeedTransport(logger: Logger, options: LiveTransportOptions = {}): Plugin {
  const o: Required<LiveTransportOptions> = { slowConsumerGraceMs: 10_000, pingIntervalMs: 12_000, ...options };
  return {
    onSubscribe({ args }) {
      // remember how this request's feed events become frames; execution itself stays yoga's
      const request = (args.contextValue as { request?: Request } | undefined)?.request;
      if (!request) return;
      const state = stateOf(request);
      const key = operationKey(args);
      state.frame = (e) => frameShared(args, key, e, logger);
    },
    onResultProcess({ request, result, setResultProcessor, serverContext }) {
      const state = feedRequests.get(request);
      if (!state?.source || !state.frame || !isAsyncIterable(result)) return;
      const accept = request.headers.get('accept') ?? '';
      if (!accept.includes('text/event-stream')) return;
      const outgoing = (serverContext as { outgoing?: ServerResponse } | undefined)?.outgoing;
      const { source, frame } = state;
      setResultProcessor((r, fetchAPI) => {
        const stream = new SseStream(source, frame, (r as AsyncIterable<unknown>)[Symbol.asyncIterator](), outgoing, o);
        state.stream = stream;
        if (state.droppedAt !== null) stream.dropped();
        return stream.response(fetchAPI as unknown as { Response: typeof Response; ReadableStream: typeof ReadableStream });
      }, 'text/event-stream');
    },
  };
}

/** The subscribe resolver hands its subscription over: the SSE stream reads it directly. */
export function attachFeed(request: Request, sub: Subscription): Subscription {
  stateOf(request).source = sub;
  return sub;
}
