import { describe, expect, it } from 'vitest';
import { AdaptiveConcurrency } from './adaptive-concurrency.ts';

const full = { picked: 64, asked: 64, slotBound: true, running: 64, oldestHeldShare: 0, memoryShare: 0.1 };
const quick = (a: AdaptiveConcurrency) => a.finished(50, 33_000);

describe('AdaptiveConcurrency', () => {
  it('doubles while the queue has more than the slots let a claim take and attempts are quick, up to its max', () => {
    const a = new AdaptiveConcurrency({ min: 64, max: 300 });
    quick(a);
    expect(a.claimed(full)).toBe(128);
    quick(a);
    expect(a.claimed({ ...full, picked: 128, asked: 128 })).toBe(256);
    quick(a);
    expect(a.claimed({ ...full, picked: 256, asked: 256 })).toBe(300);
    quick(a);
    expect(a.claimed({ ...full, picked: 300, asked: 300 })).toBe(300);
  });

  it('does not grow when the claim batch, not the slots, bounded the claim, or the queue ran short', () => {
    const a = new AdaptiveConcurrency({ min: 64, max: 2048 });
    quick(a);
    expect(a.claimed({ ...full, slotBound: false })).toBe(64);
    expect(a.claimed({ ...full, picked: 10 })).toBe(64);
  });

  it('does not grow before any attempt has finished, nor while one still running has held a slot too long', () => {
    const a = new AdaptiveConcurrency({ min: 64, max: 2048 });
    expect(a.claimed(full)).toBe(64);
    quick(a);
    expect(a.claimed({ ...full, oldestHeldShare: 0.3 })).toBe(64);
    quick(a);
    expect(a.claimed(full)).toBe(128);
  });

  it('does not grow while an attempt held its slot for more than an eighth of its lease', () => {
    const a = new AdaptiveConcurrency({ min: 64, max: 2048 });
    a.finished(5_000, 33_000); // waited for a runtime thread: more attempts would wait longer
    expect(a.claimed(full)).toBe(64);
    // the next decision looks only at what finished since
    a.finished(100, 33_000);
    expect(a.claimed(full)).toBe(128);
  });

  it('halves back to its minimum once the queue has run dry, and under memory pressure', () => {
    const a = new AdaptiveConcurrency({ min: 64, max: 2048 });
    for (let n = 64; n < 1024; n *= 2) {
      quick(a);
      a.claimed({ ...full, picked: n, asked: n });
    }
    expect(a.limit).toBe(1024);
    const dry = { picked: 0, asked: 100, slotBound: false, running: 0, oldestHeldShare: 0, memoryShare: 0.1 };
    expect(a.claimed({ ...dry, running: 3 })).toBe(1024); // still running
    expect(a.claimed(dry)).toBe(512);
    quick(a);
    expect(a.claimed({ ...full, picked: 512, asked: 512, memoryShare: 0.6 })).toBe(512); // no growth past half the heap
    expect(a.claimed({ ...full, picked: 10, memoryShare: 0.8 })).toBe(256);
    for (let i = 0; i < 10; i++) a.claimed(dry);
    expect(a.limit).toBe(64);
  });
});
