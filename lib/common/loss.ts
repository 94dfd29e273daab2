/**
 * Loss accounting for event sockets: the kernel counts every message it could not queue
 * on a socket (its drop counter, SO_MEMINFO); the meter turns growth of that counter
 * into one 'lost' notice each time it is noticed.
 */

/** Payload of a 'lost' notice. */
export interface LostInfo {
  /** Events the kernel dropped for this stream since it opened (the new total). */
  lost: number;
  /** How many of them were noticed now. */
  delta: number;
  /** The receive buffer in effect after any growth (bytes, as the kernel reports it). */
  receiveBufferSize: number;
}

export class LossMeter {
  private readonly base: number;
  private total = 0;

  /**
   * `readDrops` reads the socket's drop counter; it is read once now, so create the meter
   * before the socket joins its groups. `report` receives each growth.
   */
  constructor(private readonly readDrops: () => number, private readonly report: (info: LostInfo) => void) {
    this.base = readDrops();
  }

  /** Drops counted so far (as of the last refresh()). */
  get lost(): number {
    return this.total;
  }

  /** Reads the drop counter and reports when it grew. */
  refresh(receiveBufferSize: number): void {
    let drops: number;
    try {
      drops = this.readDrops();
    } catch {
      return; // the socket is gone: the last reading stands
    }
    const total = (drops - this.base) >>> 0;
    if (total > this.total) {
      const delta = total - this.total;
      this.total = total;
      this.report({ lost: total, delta, receiveBufferSize });
    }
  }
}
