/** Turns a Snapshot into the lines of one screen (pure: no terminal access). */
import type { Flow } from '../../../lib';
import { NO_COLOR_PALETTE, Palette } from '../common/output';
import type { Snapshot, SortKey } from './model';

export interface View {
  width: number;
  height: number;
  sort: SortKey;
  netns?: string;
  interval: number;
  /** The text filter in effect, and the one being typed after `/` (undefined when not typing). */
  text?: string;
  editing?: string;
  filterDesc?: string;
  palette?: Palette;
}

const SORT_LABEL: Record<SortKey, string> = { bytes: 'bytes/s', packets: 'packets/s', total: 'total bytes', timeout: 'timeout' };

export function human(n: number): string {
  if (n < 1000) return n % 1 === 0 ? String(n) : n.toFixed(1);
  const units = ['k', 'M', 'G', 'T'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[u]}`;
}

function endpoint(addr: string, port: number | undefined): string {
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === undefined ? a : `${a}:${port}`;
}

function tuple(t: Flow['orig']): string {
  if (t.icmp) return `${t.src} -> ${t.dst} id=${t.icmp.id}`;
  return `${endpoint(t.src, t.sport)} -> ${endpoint(t.dst, t.dport)}`;
}

function fit(s: string, w: number): string {
  return s.length > w ? s.slice(0, Math.max(0, w - 1)) + '…' : s.padEnd(w);
}

export function render(s: Snapshot | undefined, v: View): string[] {
  const pal = v.palette ?? NO_COLOR_PALETTE;
  const lines: string[] = [];
  // Cut to the width before colouring, so escape sequences are never cut.
  const push = (text: string, color?: (t: string) => string): void => {
    const t = text.length > v.width ? text.slice(0, v.width) : text;
    lines.push(color ? color(t) : t);
  };
  const clock = new Date(s?.time ?? Date.now()).toTimeString().slice(0, 8);
  push(`nfct top${v.netns ? ` (netns ${v.netns})` : ''}  ${clock}  every ${(v.interval / 1000).toFixed(1)} s` + (s ? `  dump ${s.dumpMs} ms, ${s.flows} flows` : '  first dump...'), pal.bold);
  if (!s) {
    push('');
    push('keys: q quit · b/p/t/o sort · / filter');
    return lines;
  }
  const fill = s.max > 0 ? s.count / s.max : 0;
  const barW = 20;
  const bar = '#'.repeat(Math.round(fill * barW)).padEnd(barW, '.');
  const fillText = `table ${s.count}/${s.max || '∞'} ${s.max ? (fill * 100).toFixed(1) + '%' : ''} [${bar}]`;
  const dropText = `drop ${s.drop} (${human(s.dropRate)}/s)  early_drop ${s.earlyDrop} (${human(s.earlyDropRate)}/s)  insert_failed ${s.insertFailed}`;
  push(`${fillText}   ${dropText}`, fill >= 0.9 || s.dropRate > 0 ? pal.red : undefined);
  push(`events/s new ${human(s.eventRates.new)}  update ${human(s.eventRates.update)}  destroy ${human(s.eventRates.destroy)}   lost ${s.lost}`);
  const protos = [...s.byProto.entries()].sort((a, b) => b[1].count - a[1].count);
  push(
    'flows ' +
      (protos.length
        ? protos
            .map(([p, x]) => {
              const st = [...x.states.entries()].sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} ${c}`);
              return `${p} ${x.count}${st.length ? ` (${st.join(', ')})` : ''}`;
            })
            .join('  ')
        : 'none'),
  );
  if (s.flows > 0 && s.withCounters === 0) {
    push('accounting is off: no byte/packet counters. Turn it on: sysctl -w net.netfilter.nf_conntrack_acct=1 (flows made after that carry counters)', pal.yellow);
  }
  if (s.error) push(`error: ${s.error}`, pal.red);
  const filterLine =
    v.editing !== undefined ? `filter: ${v.editing}_   (Enter applies, Esc cancels)` : `sort ${SORT_LABEL[v.sort]}${v.filterDesc ? `  filter ${v.filterDesc}` : ''}${v.text ? `  text "${v.text}"` : ''}   keys: q quit · b/p/t/o sort · / filter`;
  push(filterLine, pal.dim);
  push('');
  const cols = { rate: 10, pps: 9, proto: 6, state: 12, total: 9 };
  const fixed = cols.rate + cols.pps + cols.proto + cols.state + cols.total + 6 * 2;
  const tupleW = Math.max(10, Math.floor((v.width - fixed) / 2));
  const header = ['BYTES/S'.padStart(cols.rate), 'PKTS/S'.padStart(cols.pps), fit('PROTO', cols.proto), fit('ORIGINAL', tupleW), fit('REPLY', tupleW), fit('STATE', cols.state), 'BYTES'.padStart(cols.total)];
  push(header.join('  '), pal.bold);
  const room = Math.max(0, v.height - lines.length);
  for (const r of s.rows.slice(0, room)) {
    const f = r.flow;
    push(
      [
        (r.bytesPerSec === undefined ? '-' : human(r.bytesPerSec)).padStart(cols.rate),
        (r.packetsPerSec === undefined ? '-' : human(r.packetsPerSec)).padStart(cols.pps),
        fit(String(f.proto), cols.proto),
        fit(tuple(f.orig), tupleW),
        fit(tuple(f.reply), tupleW),
        fit(f.state ?? '', cols.state),
        (f.counters ? human(r.totalBytes) : '-').padStart(cols.total),
      ].join('  '),
    );
  }
  return lines.slice(0, v.height);
}
