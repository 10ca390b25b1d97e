// What every scenario reports: rows of the results table (a null value = not measured,
// with the reason in `note`).
export interface Measurement {
  scenario: string;
  subject: string;
  metric: string;
  value: number | null;
  unit: string;
  note?: string;
}

export interface BenchScale {
  quick: boolean;
  drainJobs: number;
  acceptSeconds: number;
  /** HTTP accepts are a fixed count, so that every request has its answer when the run ends */
  acceptRequests: number;
  syncSeconds: number;
  pickupSamples: number;
  historyInvocations: number;
  pgbenchSeconds: number;
}

export const FULL: BenchScale = {
  quick: false,
  drainJobs: 50_000,
  acceptSeconds: 10,
  acceptRequests: 80_000,
  syncSeconds: 10,
  pickupSamples: 200,
  historyInvocations: 1_700_000,
  pgbenchSeconds: 10,
};

export const QUICK: BenchScale = {
  quick: true,
  drainJobs: 5_000,
  acceptSeconds: 3,
  acceptRequests: 5_000,
  syncSeconds: 3,
  pickupSamples: 40,
  historyInvocations: 100_000,
  pgbenchSeconds: 3,
};

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
