// Plain-text formatting shared by the pages (no markup here).

/** `2025-01-31 12:00:00.123` (UTC; the pages say so once in their footer). */
export function utc(at: string | Date | null | undefined): string {
  if (!at) return '—';
  const d = typeof at === 'string' ? new Date(at) : at;
  return Number.isNaN(d.getTime()) ? String(at) : d.toISOString().replace('T', ' ').replace('Z', '');
}

const trim = (n: number, digits: number) => String(Number(n.toFixed(digits)));

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v === 0) return '0 ms';
  if (v < 1) return `${trim(v, 2)} ms`;
  if (v < 1000) return `${v < 10 ? trim(v, 1) : Math.round(v)} ms`;
  if (v < 60_000) return `${trim(v / 1000, v < 10_000 ? 2 : 1)} s`;
  if (v < 3_600_000) return `${trim(v / 60_000, 1)} min`;
  return `${trim(v / 3_600_000, 1)} h`;
}

export function seconds(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : ms(v * 1000);
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function percent(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  const p = v * 100;
  return `${p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)} %`;
}

export const count = (n: number): string => n.toLocaleString('en-US');

/**
 * The last 12 characters of an id: invocation ids are UUIDv7, whose first characters are
 * the time, so ids accepted together share them; the end is random.
 */
export const shortId = (id: string): string => `…${id.slice(-12)}`;

export const STATUS_LABEL: Record<string, string> = {
  QUEUED: 'queued',
  RUNNING: 'running',
  RETRY_SCHEDULED: 'retry scheduled',
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  DEAD_LETTERED: 'dead-lettered',
  CANCELLED: 'cancelled',
};
