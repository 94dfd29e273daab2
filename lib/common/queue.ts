/**
 * A FIFO between a producer that can stop (a socket, a timer) and a consumer that takes
 * items at its own pace. Memory stays bounded: the producer is paused once `high` items
 * wait, and resumed when the consumer has taken them down to half of that.
 */
export class BoundedQueue<T> {
  private items: T[] = [];
  private head = 0;
  private paused = false;
  private readonly low: number;

  /** `setPaused(true)` stops the producer, `setPaused(false)` lets it go on. */
  constructor(private readonly high: number, private readonly setPaused: (paused: boolean) => void) {
    this.low = Math.floor(high / 2);
  }

  /** Items waiting. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** True while the queue holds the producer back. */
  get isPaused(): boolean {
    return this.paused;
  }

  push(item: T): void {
    this.items.push(item);
    if (!this.paused && this.items.length - this.head >= this.high) {
      this.paused = true;
      this.setPaused(true);
    }
  }

  /** The oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.items.length - this.head <= this.low) this.resume();
    return item;
  }

  /** Appends every waiting item to `out` at once (cheaper than shift() per item). */
  drainInto(out: T[]): void {
    const { items } = this;
    for (let i = this.head; i < items.length; i++) out.push(items[i]);
    this.items = [];
    this.head = 0;
    this.resume();
  }

  /** The first waiting item that satisfies `predicate` (left in the queue). */
  find(predicate: (item: T) => boolean): T | undefined {
    for (let i = this.head; i < this.items.length; i++) if (predicate(this.items[i])) return this.items[i];
    return undefined;
  }

  /** Lets the producer go on (the consumer waits with nothing queued, or stops caring). */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.setPaused(false);
  }

  /** Drops every waiting item (the producer's pause state is left as it is). */
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
