/** Anything a handle closes when it closes: dumps, event streams, mirrors, monitors. */
export interface Child {
  close(): void;
}

/** The children of one handle. Each is adopted once and released when it closes by itself. */
export class ChildRegistry {
  private readonly children = new Set<Child>();

  /** Registers `child`; returns the function the child calls once it has closed. */
  adopt(child: Child): () => void {
    this.children.add(child);
    return () => {
      this.children.delete(child);
    };
  }

  /** Children open now. */
  get size(): number {
    return this.children.size;
  }

  has(child: Child): boolean {
    return this.children.has(child);
  }

  /** Closes every child still open (each one's release may run meanwhile). */
  closeAll(): void {
    const all = [...this.children];
    this.children.clear();
    for (const c of all) c.close();
  }
}
