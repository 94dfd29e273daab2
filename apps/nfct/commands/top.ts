/**
 * `nfct top`: a live full-screen view of one table. Pieces in ../top: model (dumps, deltas,
 * counts, stats, events), render (a frame as lines), screen (the terminal).
 */
import type { Conntrack, FlowFilter } from '../../../lib';
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { UsageError, reportError } from '../common/errors';
import { openHandle } from '../common/handle';
import { palette } from '../common/output';
import { Sampler, SORT_KEYS, Snapshot, SortKey, compareRows } from '../top/model';
import { render, View } from '../top/render';
import { Screen } from '../top/screen';

const HELP = helpText('nfct top [filters] [--sort bytes|packets|total|timeout] [--interval MS] [--once]', `A live view of the table: the top flows by bytes/s or packets/s (counter deltas
between two dumps, so it needs net.netfilter.nf_conntrack_acct=1), counts by protocol and
state, event rates by type and lost events, the fill ratio against nf_conntrack_max,
drops and early drops.

Keys: q quit · b bytes/s · p packets/s · t total bytes · o timeout · / text filter
(a substring of the tuples, protocol or state; Enter applies, Esc cancels, empty clears)

Options:
  --sort KEY        initial sort key (default bytes)
  --interval MS     time between dumps (default 1000, at least 100)
  --once            print one frame (two dumps an interval apart) to stdout and exit

${FILTER_HELP}`, 'netns');

const KEYS: Record<string, SortKey> = { b: 'bytes', p: 'packets', t: 'total', o: 'timeout' };

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, sort: { type: 'string' }, interval: { type: 'string' }, once: { type: 'boolean' } });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (values.output !== undefined) throw new UsageError('--output: top draws a screen; use nfct list or nfct watch for formatted output', 'output');
    const sort = (values.sort as string | undefined) ?? 'bytes';
    if (!(SORT_KEYS as readonly string[]).includes(sort)) throw new UsageError(`--sort: use one of ${SORT_KEYS.join(', ')}, got ${JSON.stringify(sort)}`, 'sort');
    const interval = values.interval === undefined ? 1000 : Number(values.interval);
    if (!Number.isInteger(interval) || interval < 100) throw new UsageError(`--interval: milliseconds, an integer of at least 100, got ${JSON.stringify(values.interval)}`, 'interval');
    const filter = filterFromValues(values);
    const netns = values.netns as string | undefined;
    const filterDesc = argv.filter((a, i) => a.startsWith('--') && !['--sort', '--interval', '--netns', '--once'].includes(a) && !(argv[i - 1] === '--sort' || argv[i - 1] === '--interval')).join(' ');
    if (!values.once && !(process.stdout.isTTY && process.stdin.isTTY)) {
      throw new UsageError('top needs a terminal (stdin and stdout); use --once for a single frame on a pipe');
    }
    const ct = await openHandle(netns);
    try {
      const view: View = { width: 0, height: 0, sort: sort as SortKey, netns, interval, filterDesc: filterDesc || undefined };
      return values.once ? await once(ct, view, filter) : await live(ct, view, filter);
    } finally {
      await ct.close();
    }
  } catch (err) {
    return reportError(err);
  }
}

async function once(ct: Conntrack, view: View, filter: FlowFilter): Promise<number> {
  view.width = process.stdout.columns || 160;
  view.height = process.stdout.rows || 50;
  const sampler = new Sampler(ct, { filter, sort: view.sort, keep: view.height });
  sampler.startEvents();
  try {
    await sampler.sample();
    await new Promise((r) => setTimeout(r, view.interval));
    const snap = await sampler.sample();
    process.stdout.write(render(snap, view).join('\n') + '\n');
    return 0;
  } finally {
    sampler.close();
  }
}

function live(ct: Conntrack, view: View, filter: FlowFilter): Promise<number> {
  const screen = new Screen();
  const sampler = new Sampler(ct, { filter, sort: view.sort, keep: 200 });
  let snap: Snapshot | undefined;
  let timer: NodeJS.Timeout | undefined;
  let sampling = false;
  let again = false;
  let done = false;
  view.palette = palette(process.stdout);

  const draw = (): void => {
    view.width = screen.width;
    view.height = screen.height;
    screen.draw(render(snap, view));
  };

  return new Promise<number>((resolve) => {
    const quit = (): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      sampler.close();
      screen.restore();
      resolve(0);
    };
    const tick = async (): Promise<void> => {
      if (done) return;
      if (sampling) {
        again = true;
        return;
      }
      sampling = true;
      if (timer) clearTimeout(timer);
      try {
        sampler.options = { ...sampler.options, sort: view.sort, text: view.text, keep: Math.max(50, screen.height) };
        snap = await sampler.sample();
      } catch (err) {
        if (snap) snap = { ...snap, error: (err as Error).message };
      } finally {
        sampling = false;
      }
      if (done) return;
      draw();
      if (again) {
        again = false;
        void tick();
      } else timer = setTimeout(() => void tick(), view.interval);
    };
    const onKey = (k: string): void => {
      if (view.editing !== undefined) {
        if (k === '\r' || k === '\n') {
          view.text = view.editing || undefined;
          view.editing = undefined;
          void tick();
        } else if (k === '\x1b') view.editing = undefined;
        else if (k === '\x7f' || k === '\b') view.editing = view.editing.slice(0, -1);
        else if (k >= ' ' && k.length === 1) view.editing += k;
        draw();
        return;
      }
      if (k === 'q' || k === 'Q' || k === '\x03') return quit();
      if (k === '/') {
        view.editing = view.text ?? '';
        return draw();
      }
      const key = KEYS[k];
      if (key) {
        view.sort = key;
        // Re-sort what is on screen now; the next dump picks the best flows by the new key.
        if (snap) snap = { ...snap, rows: [...snap.rows].sort((a, b) => compareRows(a, b, key)) };
        draw();
        void tick();
      }
    };
    screen.enter(onKey, draw);
    sampler.startEvents();
    draw();
    void tick();
  });
}
