// Which environments turn tracing on, and what `logs --since` accepts.
import { describe, expect, it } from 'vitest';
import { parseSince } from '../../apps/cli/commands/logs.ts';
import { tracingDisabledReason } from '../../apps/telemetry/sdk.ts';

describe('tracingDisabledReason', () => {
  it('is off without an endpoint, and says why', () => {
    expect(tracingDisabledReason({})).toBe('no OTEL_EXPORTER_OTLP_ENDPOINT');
    expect(tracingDisabledReason({ OTEL_EXPORTER_OTLP_ENDPOINT: '' })).toBe('no OTEL_EXPORTER_OTLP_ENDPOINT');
  });
  it('is on with either endpoint variable', () => {
    expect(tracingDisabledReason({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(null);
    expect(tracingDisabledReason({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(null);
    expect(tracingDisabledReason({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })).toBe(null);
  });
  it('honours OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none, and refuses grpc', () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    expect(tracingDisabledReason({ ...on, OTEL_SDK_DISABLED: 'true' })).toBe('OTEL_SDK_DISABLED=true');
    expect(tracingDisabledReason({ ...on, OTEL_TRACES_EXPORTER: 'none' })).toMatch(/^OTEL_TRACES_EXPORTER=none/);
    expect(tracingDisabledReason({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatch(/http\/json/);
  });
});

describe('parseSince', () => {
  const now = Date.parse('2026-01-31T12:00:00Z');
  it('reads durations and timestamps', () => {
    expect(parseSince('10m', now).toISOString()).toBe('2026-01-31T11:50:00.000Z');
    expect(parseSince('90s', now).toISOString()).toBe('2026-01-31T11:58:30.000Z');
    expect(parseSince('2h', now).toISOString()).toBe('2026-01-31T10:00:00.000Z');
    expect(parseSince('1d', now).toISOString()).toBe('2026-01-30T12:00:00.000Z');
    expect(parseSince('2026-01-31T11:00:00Z', now).toISOString()).toBe('2026-01-31T11:00:00.000Z');
  });
  it('refuses anything else with a usable message', () => {
    expect(() => parseSince('yesterday', now)).toThrow(/30s, 10m, 2h, 1d/);
  });
});
