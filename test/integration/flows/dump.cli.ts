/**
 * Parses `conntrack -L -o extended,id,ktimestamp` lines (conntrack-tools 1.4.x) into the
 * fields a Flow has, for field-by-field comparison with list(). Used by the dump.* tests.
 */
export interface CliTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmp?: { type: number; code: number; id: number };
  packets?: bigint;
  bytes?: bigint;
}

export interface CliFlow {
  family: 'ipv4' | 'ipv6';
  proto: string;
  timeout: number;
  state?: string;
  orig: CliTuple;
  reply: CliTuple;
  unreplied: boolean;
  assured: boolean;
  mark: number;
  zone: number;
  use: number;
  id: number;
  /** Seconds since the epoch, from [start=...] (second precision). */
  start?: number;
}

export function parseCli(text: string): CliFlow[] {
  const out: CliFlow[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!/^ipv[46]\s/.test(line)) continue;
    const startMatch = /\[start=([^\]]+)\]/.exec(line);
    const rest = line.replace(/\[start=[^\]]+\]/, '').replace(/\[stop=[^\]]+\]/, '');
    const tok = rest.split(/\s+/);
    const flow: CliFlow = {
      family: tok[0] as 'ipv4' | 'ipv6',
      proto: tok[2],
      timeout: Number(tok[4]),
      orig: { src: '', dst: '' },
      reply: { src: '', dst: '' },
      unreplied: false,
      assured: false,
      mark: 0,
      zone: 0,
      use: 0,
      id: 0,
      start: startMatch ? Math.floor(Date.parse(startMatch[1] + ' UTC') / 1000) : undefined,
    };
    let i = 5;
    if (!tok[i].includes('=') && !tok[i].startsWith('[')) flow.state = tok[i++];
    let dir: CliTuple | undefined;
    let seenSrc = 0;
    let inMeta = false; // past the tuples: `id=` is the flow id, not an ICMP id
    for (; i < tok.length; i++) {
      const t = tok[i];
      if (t === '[UNREPLIED]') flow.unreplied = true;
      else if (t === '[ASSURED]') flow.assured = true;
      else if (t.startsWith('[')) continue;
      const eq = t.indexOf('=');
      if (eq < 0) continue;
      const k = t.slice(0, eq);
      const v = t.slice(eq + 1);
      if (k === 'src') {
        dir = seenSrc++ === 0 ? flow.orig : flow.reply;
        dir.src = v;
      } else if (k === 'dst' && dir) dir.dst = v;
      else if (k === 'sport' && dir) dir.sport = Number(v);
      else if (k === 'dport' && dir) dir.dport = Number(v);
      else if ((k === 'type' || k === 'code' || (k === 'id' && !inMeta)) && dir) {
        dir.icmp ??= { type: 0, code: 0, id: 0 };
        dir.icmp[k] = Number(v);
      } else if (k === 'packets' && dir) dir.packets = BigInt(v);
      else if (k === 'bytes' && dir) dir.bytes = BigInt(v);
      else if (k === 'mark') {
        flow.mark = Number(v);
        inMeta = true;
      }
      else if (k === 'zone' || k === 'use' || k === 'delta-time') {
        inMeta = true;
        if (k === 'zone') flow.zone = Number(v);
        if (k === 'use') flow.use = Number(v);
      }
      else if (k === 'id') flow.id = Number(v);
    }
    out.push(flow);
  }
  return out;
}
