/** Anything a handle closes when it closes: dumps, event streams, mirrors, monitors. */
export interface Child {
  close(): void;
}

/**
 * The children of one handle. Each is adopted once and released when it closes by itself.
 * Children are held weakly: a dump or stream the program dropped (and whose socket is
 * paused, so nothing native holds it) is collected with its socket instead of living on
 * until the handle closes.
 */
export class ChildRegistry {
  private readonly children = new Set<WeakRef<Child>>();
  /** Size at which dead references are swept next. */
  private sweepAt = 64;

  /** Registers `child`; returns the function the child calls once it has closed. */
  adopt(child: Child): () => void {
    if (this.children.size >= this.sweepAt) {
      for (const ref of this.children) if (ref.deref() === undefined) this.children.delete(ref);
      this.sweepAt = Math.max(64, this.children.size * 2);
    }
    const ref = new WeakRef(child);
    this.children.add(ref);
    return () => {
      this.children.delete(ref);
    };
  }

  /** Children open now (and not collected). */
  get size(): number {
    let n = 0;
    for (const ref of this.children) if (ref.deref() !== undefined) n++;
    return n;
  }

  has(child: Child): boolean {
    for (const ref of this.children) if (ref.deref() === child) return true;
    return false;
  }

  /** Closes every child still open (each one's release may run meanwhile). */
  closeAll(): void {
    const all = [...this.children];
    this.children.clear();
    for (const ref of all) ref.deref()?.close();
  }
}
