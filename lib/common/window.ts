/**
 * A window of requests in flight: bulk operations that issue one request per dumped entry
 * (deleteMatching, updateMatching, zeroing counters entry by entry) keep at most `max`
 * unanswered, and pause their producer while the window is full.
 */
export class RequestWindow<T = void> {
  private inFlight = 0;
  private wake: (() => void) | undefined;
  private readonly ok: (v: T) => void;
  private readonly err: (e: unknown) => void;

  /**
   * `onOk` and `onErr` run once per request as it settles (one pair of closures for the
   * whole operation, not two per request).
   */
  constructor(onOk: (v: T) => void, onErr: (e: unknown) => void, private readonly max = 8192) {
    this.ok = (v) => {
      onOk(v);
      this.settle();
    };
    this.err = (e) => {
      onErr(e);
      this.settle();
    };
  }

  private settle(weight = 1): void {
    this.inFlight -= weight;
    if (this.wake && (this.inFlight <= this.max / 2 || this.inFlight === 0)) {
      const w = this.wake;
      this.wake = undefined;
      w();
    }
  }

  /** Requests sent and not yet answered. */
  get size(): number {
    return this.inFlight;
  }

  /**
   * Tracks one request. Returns a promise to await before sending more when the window is
   * full (it resolves once half of it has drained), else undefined.
   */
  add(request: Promise<T>): Promise<void> | undefined {
    this.inFlight++;
    request.then(this.ok, this.err);
    return this.room();
  }

  /**
   * Tracks a batch of `count` requests sent together (requestMany()) whose outcomes the
   * caller handles itself: `done` settles once every one of them has. Same return as add().
   */
  addBatch(count: number, done: Promise<void>): Promise<void> | undefined {
    this.inFlight += count;
    const settle = (): void => this.settle(count);
    done.then(settle, settle);
    return this.room();
  }

  private room(): Promise<void> | undefined {
    if (this.inFlight < this.max) return undefined;
    return new Promise<void>((r) => (this.wake = r));
  }

  /** Resolves once every tracked request has settled. */
  async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => (this.wake = r));
  }
}
