// Installs the OpenTelemetry SDK when the standard OTEL_* variables ask for traces, and
// nothing otherwise: the SDK is not even loaded (docs/observability.md). Spans go through a
// batch processor to an OTLP/HTTP exporter, which reads its endpoint, headers and timeout
// from OTEL_EXPORTER_OTLP_*; the sampler reads OTEL_TRACES_SAMPLER(_ARG); OTEL_SERVICE_NAME
// and OTEL_RESOURCE_ATTRIBUTES name the process.
import { setTracingOn } from './tracing.ts';

export interface Tracing {
  /** flushes spans still buffered, then stops exporting */
  shutdown(): Promise<void>;
}

/** Why tracing is off, or null when the environment turns it on. */
export function tracingDisabledReason(env: NodeJS.ProcessEnv): string | null {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return 'OTEL_SDK_DISABLED=true';
  const exporters = (env.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').map((s) => s.trim().toLowerCase());
  if (!exporters.includes('otlp')) return `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER} (only otlp is supported)`;
  if (!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT && !env.OTEL_EXPORTER_OTLP_ENDPOINT) return 'no OTEL_EXPORTER_OTLP_ENDPOINT';
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol && protocol !== 'http/json' && protocol !== 'http/protobuf') return `OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} (http/json is what this server sends)`;
  return null;
}

/** Starts tracing when the environment asks for it; null (and nothing loaded) otherwise. */
export async function startTracing(env: NodeJS.ProcessEnv, resource: { instanceId: string; role: string }): Promise<Tracing | null> {
  if (tracingDisabledReason(env) !== null) return null;
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes, detectResources, envDetector }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'invoke-ledger',
      'service.instance.id': resource.instanceId,
      'invoke_ledger.role': resource.role,
    }).merge(detectResources({ detectors: [envDetector] })),
    // OTEL_BSP_* tune the batching
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // the AsyncLocalStorage context manager and the W3C traceparent/tracestate propagator
  provider.register();
  setTracingOn(true);
  return {
    async shutdown() {
      setTracingOn(false);
      await provider.shutdown();
    },
  };
}
