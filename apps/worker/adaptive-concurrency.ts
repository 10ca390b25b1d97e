// How many attempts a worker holds at once when WORKER_CONCURRENCY is not set
// (docs/worker.md, "Concurrency"). Attempts in flight are what make claim and completion
// batches big (fewer statements and commits per job), but every attempt held is a lease
// running: held attempts that wait too long for a runtime would lose their leases. So the
// limit doubles only while the queue keeps more due work than the slots let us claim AND
// the attempts finish in a small part of their lease, and halves back once the queue has
// run dry.

export interface AdaptiveLimits {
  /** where it starts and the least it shrinks to */
  min: number;
  /** the most it grows to */
  max: number;
}

/** an attempt that waited and ran for more than this share of its lease stops growth */
const SLOW_SHARE = 1 / 8;

export class AdaptiveConcurrency {
  private current: number;
  /** the largest (time held ÷ lease) since the last decision */
  private slowest = 0;
  /** attempts finished since the last decision: no growth without evidence */
  private finishedSince = 0;

  constructor(private readonly limits: AdaptiveLimits) {
    this.current = limits.min;
  }

  get limit(): number {
    return this.current;
  }

  /** an attempt held for `heldMs` (claim to outcome) under a lease of `leaseMs` */
  finished(heldMs: number, leaseMs: number): void {
    const share = heldMs / Math.max(1, leaseMs);
    if (share > this.slowest) this.slowest = share;
    this.finishedSince++;
  }

  /**
   * After every claim: `picked` rows of the `asked`; `slotBound` when the claim asked for
   * fewer than a claim batch because the slots ran out; `oldestHeldShare` how much of its
   * lease the longest-held running attempt has used; `memoryShare` the heap in use over
   * its limit. Returns the new limit.
   */
  claimed(o: { picked: number; asked: number; slotBound: boolean; running: number; oldestHeldShare: number; memoryShare: number }): number {
    if (o.picked >= o.asked && o.slotBound) {
      const quick = this.finishedSince > 0 && Math.max(this.slowest, o.oldestHeldShare) < SLOW_SHARE;
      if (quick && o.memoryShare < 0.5) this.current = Math.min(this.limits.max, this.current * 2);
      this.reset();
    } else if (o.picked === 0 && o.running === 0) {
      this.current = Math.max(this.limits.min, Math.floor(this.current / 2));
      this.reset();
    }
    if (o.memoryShare >= 0.75) this.current = Math.max(this.limits.min, Math.floor(this.current / 2));
    return this.current;
  }

  private reset(): void {
    this.slowest = 0;
    this.finishedSince = 0;
  }
}
