import type { BenchScale, Measurement } from '../lib/types.ts';
export async function syncScenario(_scale: BenchScale, _soFar: Measurement[]): Promise<Measurement[]> {
  return [];
}
