/**
 * The terminal side of `nfct top`: the alternate screen, a hidden cursor, raw keys, and
 * whole-frame redraws. restore() undoes all of it and is safe to call more than once (it
 * also runs on exit and on SIGINT/SIGTERM/SIGHUP).
 */
export class Screen {
  private restored = false;
  private readonly onExit = (): void => this.restore();
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.restore();
    process.kill(process.pid, sig);
  };

  constructor(
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly input: NodeJS.ReadStream = process.stdin,
  ) {}

  get width(): number {
    return this.out.columns || 80;
  }
  get height(): number {
    return this.out.rows || 24;
  }

  enter(onKey: (key: string) => void, onResize: () => void): void {
    // Alternate screen, hidden cursor, cleared.
    this.out.write('\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J');
    if (this.input.isTTY) this.input.setRawMode(true);
    this.input.setEncoding('utf8');
    this.input.on('data', (d: string) => {
      // Escape sequences (arrows...) arrive as one chunk; split plain typing into keys.
      if (d.startsWith('\x1b') && d.length > 1) onKey(d);
      else for (const ch of d) onKey(ch);
    });
    this.input.resume();
    this.out.on('resize', onResize);
    process.once('exit', this.onExit);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, this.onSignal);
  }

  draw(lines: string[]): void {
    if (this.restored) return;
    const body = lines.map((l) => l + '\x1b[K').join('\r\n');
    this.out.write('\x1b[H' + body + '\x1b[J');
  }

  restore(): void {
    if (this.restored) return;
    this.restored = true;
    if (this.input.isTTY) this.input.setRawMode(false);
    this.input.pause();
    // Cursor back, leave the alternate screen.
    this.out.write('\x1b[?25h\x1b[?1049l');
    process.off('exit', this.onExit);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, this.onSignal);
  }
}
