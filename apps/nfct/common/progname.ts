/**
 * The suffix `conntrack -E` (1.4.7) prints after an event a netlink client caused:
 * ` [USERSPACE] portid=N`, plus ` progname=NAME` when the process that owns the socket
 * with that port id can still be found. The lookup is conntrack's get_progname(): the
 * port id's socket inode from /proc/net/netlink (NETLINK_NETFILTER sockets of this network
 * namespace), then the process holding that socket among its /proc/PID/fd links (PID =
 * the port id first, then every process), named by /proc/PID/stat. Only the last answer is
 * kept, as conntrack keeps it.
 */
import { readFileSync, readdirSync, readlinkSync } from 'fs';

const NETLINK_NETFILTER = 12;

let last: { portId: number; inode: number; name: string | undefined } | undefined;

/** The socket inode of a NETLINK_NETFILTER port id in /proc/net/netlink. */
function inodeOf(portId: number): number | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/net/netlink', 'latin1');
  } catch {
    return undefined;
  }
  // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || Number(f[1]) !== NETLINK_NETFILTER) continue;
    if (Number(f[2]) >>> 0 === portId) return Number(f[9]);
  }
  return undefined;
}

function nameOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const m = /^\d+ \(([^)]*)/.exec(stat);
    return m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

function holds(pid: number, link: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === link) return true;
    } catch {
      /* closed meanwhile */
    }
  }
  return false;
}

function nameByPortId(portId: number, inode: number): string | undefined {
  const link = `socket:[${inode}]`;
  // Most netlink users get their process id as their first port id.
  if (holds(portId, link)) return nameOf(portId);
  let pids: string[];
  try {
    pids = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const entry of pids) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid <= 1 || pid === portId) continue;
    if (holds(pid, link)) return nameOf(pid);
  }
  return undefined;
}

/** The process name behind a netlink port id, if it can be found (conntrack's get_progname()). */
export function progname(portId: number): string | undefined {
  const inode = inodeOf(portId);
  if (inode === undefined) return undefined;
  if (last && last.portId === portId && last.inode === inode) return last.name;
  last = { portId, inode, name: nameByPortId(portId, inode) };
  return last.name;
}

export function userspaceSuffix(portId: number): string {
  const name = progname(portId);
  return name === undefined ? ` [USERSPACE] portid=${portId}` : ` [USERSPACE] portid=${portId} progname=${name}`;
}
