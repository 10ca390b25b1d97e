// Group commit: callers hand in one item each; while a flush is in flight, new items
// wait and then go together in the next one. No timer, so an idle server adds no
// latency, and a busy one commits many accepts per transaction.

export class Batcher<I, O> {
  private pending: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  private inFlight = 0;

  constructor(
    /** must return one output per input, in order; a throw fails the whole batch */
    private readonly flush: (items: I[]) => Promise<O[]>,
    private readonly options: { maxBatch?: number; maxConcurrentFlushes?: number } = {},
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    const maxFlushes = this.options.maxConcurrentFlushes ?? 2;
    while (this.pending.length > 0 && this.inFlight < maxFlushes) {
      const batch = this.pending.splice(0, this.options.maxBatch ?? 500);
      this.inFlight++;
      this.flush(batch.map((b) => b.item))
        .then(
          (outs) => batch.forEach((b, i) => b.resolve(outs[i] as O)),
          (e) => batch.forEach((b) => b.reject(e)),
        )
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }
}
