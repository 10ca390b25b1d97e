// Tracing at the call sites: only @opentelemetry/api. Until startTracing (sdk.ts) installs
// an SDK, `tracingOn()` is false and every helper here returns before touching the API, so
// an untraced server pays one boolean test per hop (docs/observability.md).
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type Tracer,
} from '@opentelemetry/api';

let on = false;
let cachedTracer: Tracer | null = null;

/** Whether an SDK is installed (set once, by startTracing or a test). */
export function tracingOn(): boolean {
  return on;
}

/** sdk.ts (and tests that install their own provider) turn the helpers on. */
export function setTracingOn(value: boolean): void {
  on = value;
  cachedTracer = null;
}

function tracer(): Tracer {
  return (cachedTracer ??= trace.getTracer('invoke-ledger'));
}

/**
 * W3C trace context as stored in an `accepted` event (`traceparent`, `tracestate`): the
 * context of the span that accepted the invocation, so attempts, retries and destinations
 * in other processes join its trace. Absent when tracing is off or nothing is recording.
 */
export interface TraceContext {
  traceparent?: string;
  tracestate?: string;
}

/** The active span's context for the ledger, or undefined (tracing off, nothing active). */
export function currentTraceContext(ctx?: Context): TraceContext | undefined {
  if (!on) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(ctx ?? context.active(), carrier);
  if (!carrier.traceparent) return undefined;
  return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
}

/** A stored (or received) trace context as a parent Context; ROOT_CONTEXT when there is none. */
export function contextFrom(stored: TraceContext | null | undefined): Context {
  if (!on || !stored?.traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, stored);
}

/** A link to a stored context (batches link to each record's producer, as the conventions say). */
export function linkTo(stored: TraceContext | null | undefined, attributes?: Attributes): Link | null {
  if (!on || !stored?.traceparent) return null;
  const sc = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, stored));
  return sc ? { context: sc, ...(attributes ? { attributes } : {}) } : null;
}

/** Headers that carry the active context to an outgoing HTTP call (empty when off). */
export function outgoingTraceHeaders(): Record<string, string> {
  if (!on) return {};
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** parent; the active context when absent */
  parent?: Context;
  links?: (Link | null)[];
}

/**
 * Runs `fn` inside a span (ended when it settles; a rejection marks it ERROR). With
 * tracing off it is `fn(undefined)`.
 */
export function inSpan<T>(name: string, o: SpanOptions, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  if (!on) return fn(undefined);
  const parent = o.parent ?? context.active();
  const links = o.links?.filter((l): l is Link => l !== null);
  const span = tracer().startSpan(
    name,
    { kind: o.kind ?? SpanKind.INTERNAL, ...(o.attributes ? { attributes: o.attributes } : {}), ...(links?.length ? { links } : {}) },
    parent,
  );
  return context.with(trace.setSpan(parent, span), () =>
    fn(span).then(
      (v) => {
        span.end();
        return v;
      },
      (e: unknown) => {
        span.recordException(e as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (e as Error)?.message ?? String(e) });
        span.end();
        throw e;
      },
    ),
  );
}

/** Marks a span failed with the function's error type (FaaS spans of failed attempts). */
export function failSpan(span: Span | undefined, errorType: string, message: string): void {
  if (!span) return;
  span.setAttribute('error.type', errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/** The trace id of the active span (for log lines), or undefined. */
export function activeTraceId(): string | undefined {
  if (!on) return undefined;
  const sc = trace.getSpanContext(context.active());
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}

/** The trace id inside a stored traceparent (`00-<trace id>-<span id>-<flags>`). */
export function traceIdOf(stored: TraceContext | null | undefined): string | undefined {
  return stored?.traceparent?.split('-')[1];
}

export { SpanKind };

/** FaaS semantic-convention attributes of one attempt (docs/observability.md). */
export function attemptAttributes(a: {
  invocationId: string;
  functionName: string;
  functionVersion: number;
  attempt: number;
  trigger: 'http' | 'pubsub' | 'datasource' | 'timer' | 'other';
  coldstart?: boolean;
}): Attributes {
  return {
    'faas.invocation_id': a.invocationId,
    'faas.trigger': a.trigger,
    'faas.name': a.functionName,
    'faas.version': String(a.functionVersion),
    'cloud.resource_id': `arn:aws:lambda:local:000000000000:function:${a.functionName}:${a.functionVersion}`,
    'invoke_ledger.attempt': a.attempt,
    ...(a.coldstart !== undefined ? { 'faas.coldstart': a.coldstart } : {}),
  };
}
