/**
 * What `nfct sandbox` shows: the default walk-through (traffic, flows, events, stats) and
 * the classic experiments. Each builds on conntrack/testing's sandbox() and prints what
 * it does and what the kernel answered, so the output is the explanation.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import type { Conntrack, Flow, FlowEvent, FlowEventStream } from '../../../lib';
import { Sandbox, sandbox, TRACKING_RULESET } from '../../testing';
import { formatFlow } from '../common/conntrack-format';
import { NO_COLOR_PALETTE, flowTable } from '../common/output';

export type Out = (line?: string) => void;

export interface Scenario {
  summary: string;
  run(out: Out): Promise<Sandbox>;
}

const step = (out: Out, text: string): void => out(`\n==> ${text}`);
const note = (out: Out, text: string): void => out(`    ${text}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Prints each event as `conntrack -E` does, and counts them by type. */
function followEvents(ct: Conntrack, out: Out, filter?: (f: Flow) => boolean): { stream: FlowEventStream; counts: Record<string, number> } {
  const stream = ct.events();
  const counts: Record<string, number> = { new: 0, update: 0, destroy: 0 };
  stream.on('event', (ev: FlowEvent) => {
    if (filter && !filter(ev.flow)) return;
    counts[ev.type]++;
    out(`    ${formatFlow(ev.flow, { event: ev.type })}`);
  });
  return { stream, counts };
}

async function printTable(ct: Conntrack, out: Out, flows?: Flow[]): Promise<Flow[]> {
  const list = flows ?? (await ct.list());
  for (const line of flowTable(list, NO_COLOR_PALETTE)) out(`    ${line}`);
  return list;
}

async function printStats(ct: Conntrack, out: Out): Promise<void> {
  const s = await ct.stats();
  note(out, `count ${s.count} of max ${s.max} (nf_conntrack_max; the count is this namespace's own)`);
  const t = s.total;
  note(out, `drop ${t.drop}  early_drop ${t.earlyDrop}  insert_failed ${t.insertFailed}  invalid ${t.invalid}  found ${t.found}  insert ${t.insert}  clash_resolve ${t.clashResolve}`);
}

async function open(out: Out, extraNft?: string): Promise<Sandbox> {
  step(out, 'A private network namespace, loopback up');
  const sb = await sandbox({
    tracking: true,
    sysctls: { 'net.netfilter.nf_conntrack_acct': 1, 'net.netfilter.nf_conntrack_timestamp': 1 },
    nft: extraNft,
  });
  note(out, `${sb.path}: its conntrack table is empty and yours alone`);
  step(out, 'Tracking on: real traffic is tracked only once a rule in the namespace refers to conntrack');
  for (const line of TRACKING_RULESET.trimEnd().split('\n')) note(out, line);
  note(out, 'and net.netfilter.nf_conntrack_acct=1 (byte and packet counters), nf_conntrack_timestamp=1');
  return sb;
}

/** The default: real TCP, UDP and ICMP traffic, then the flows, the events and the statistics. */
export async function runDefault(out: Out): Promise<Sandbox> {
  const sb = await open(out);
  try {
    step(out, 'Listening for events (ct.events(), like conntrack -E), then real traffic on loopback:');
    note(out, 'a TCP connection held open, a UDP request and its answer, a ping');
    const ev = followEvents(sb.ct, out);
    const { tcp } = await sb.traffic();
    await sleep(200);
    step(out, 'The table (ct.list(), like conntrack -L):');
    const flows = await printTable(sb.ct, out);
    note(out, `${flows.length} flows: TCP ESTABLISHED and ASSURED (it saw traffic both ways); UDP and ICMP with SEEN_REPLY`);
    step(out, 'Closing the TCP connection: its state moves on (FIN_WAIT, ... TIME_WAIT) and each change is an event');
    await tcp.close();
    await sleep(300);
    await ev.stream.barrier();
    const icmp = flows.find((f) => f.proto === 'icmp');
    if (icmp) {
      step(out, 'Deleting the ICMP entry (ct.delete(flow), like conntrack -D): a DESTROY event');
      await sb.ct.delete(icmp);
      await sleep(50);
      await ev.stream.barrier();
    }
    step(out, 'Statistics (ct.stats(), like conntrack -S and -C):');
    await printStats(sb.ct, out);
    note(out, `events seen: ${ev.counts.new} new, ${ev.counts.update} update, ${ev.counts.destroy} destroy; lost ${ev.stream.lost}`);
    ev.stream.close();
    step(out, 'Done: closing the sandbox removes the namespace, its table and every process in it.');
    note(out, 'Try a scenario: nfct sandbox --scenario table-full|drop-before-confirm|nat|expectations');
    return sb;
  } catch (err) {
    await sb.close();
    throw err;
  }
}

async function tableFull(out: Out): Promise<Sandbox> {
  out('table-full: what a full conntrack table does to new connections.');
  const sb = await open(out);
  try {
    const before = await sb.ct.stats();
    step(out, `The limit: net.netfilter.nf_conntrack_max = ${before.max}`);
    note(out, 'It is one global number, but each namespace counts its own entries against it,');
    note(out, 'so this namespace can be filled without real root and without touching the host.');
    if (before.max === 0) {
      note(out, 'nf_conntrack_max is 0 here (no limit): the table cannot fill; nothing to show.');
      return sb;
    }
    step(out, `Filling the table with ${before.max - before.count} ASSURED entries over ctnetlink (createMany)`);
    note(out, 'Early drop may evict entries that are not ASSURED to make room; ASSURED ones it cannot.');
    const t0 = Date.now();
    const r = await sb.fill('max', { proto: 'udp' });
    const after = await sb.ct.stats();
    note(out, `created ${r.ok} in ${((Date.now() - t0) / 1000).toFixed(1)} s; the table holds ${after.count} of ${after.max}`);
    const l = await sb.listen();
    step(out, `Three new TCP connections to a listener on 127.0.0.1:${l.port} (1 s connect timeout each):`);
    const results = await Promise.all([1, 2, 3].map(() => sb.connect({ port: l.port, timeout: 1000 })));
    for (const c of results) {
      note(out, c.ok ? `connected in ${c.ms} ms` : c.timedOut ? `timed out after ${c.ms} ms: the SYN was dropped, no entry could be made` : `failed: ${c.error}`);
    }
    const s = await sb.ct.stats();
    step(out, 'Statistics:');
    note(out, `drop +${s.total.drop - before.total.drop} (new flows dropped because the table was full), early_drop +${s.total.earlyDrop - before.total.earlyDrop} (nothing evictable)`);
    note(out, `count ${s.count} of ${s.max}. On a host this shows as "nf_conntrack: table full, dropping packet" in dmesg.`);
    step(out, 'Freeing one entry lets one new connection in:');
    const victim = (await sb.ct.list({ proto: 'udp', orig: { dst: '198.51.100.1', sport: 1024 } }))[0];
    if (victim) await sb.ct.delete(victim);
    const again = await sb.connect({ port: l.port, timeout: 1000, hold: true });
    note(out, again.ok ? `connected in ${again.ms} ms; count is ${(await sb.ct.stats()).count} again` : `still failing (${again.timedOut ? 'timed out' : again.error})`);
    step(out, 'Done. Remedies on a real host: raise nf_conntrack_max, shorten timeouts, or find what floods the table.');
    return sb;
  } catch (err) {
    await sb.close();
    throw err;
  }
}

async function dropBeforeConfirm(out: Out): Promise<Sandbox> {
  out('drop-before-confirm: a packet dropped before its entry is confirmed leaves no entry.');
  out('An entry is made when a flow\'s first packet enters (PREROUTING) but only inserted into');
  out('the table ("confirmed") when that packet leaves the last hook (INPUT, POSTROUTING).');
  const sb = await open(out, 'table inet sandbox_filter {\n  chain input { type filter hook input priority 0; policy accept; tcp dport 8080 drop; }\n}\n');
  const client = await sandbox();
  try {
    step(out, 'A second namespace as the client, joined to this one by a veth pair 10.200.0.2 -> 10.200.0.1');
    await sb.run('ip', ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', String(client.pid)]);
    await sb.sh('ip addr add 10.200.0.1/24 dev v0 && ip link set v0 up');
    await client.sh('ip addr add 10.200.0.2/24 dev v1 && ip link set v1 up');
    note(out, 'and an nft rule in this namespace: tcp dport 8080 drop, in the INPUT hook');
    const a = await sb.listen({ host: '0.0.0.0', port: 8080 });
    const b = await sb.listen({ host: '0.0.0.0', port: 8081 });
    const ev = followEvents(sb.ct, out, (f) => f.proto === 'tcp');
    const before = await sb.ct.stats();
    step(out, 'Connecting to port 8080 (dropped in INPUT) and to 8081 (accepted); events as they come:');
    const dropped = await client.connect({ host: '10.200.0.1', port: 8080, timeout: 1000 });
    const accepted = await client.connect({ host: '10.200.0.1', port: 8081, timeout: 1000, hold: true });
    note(out, `port 8080: ${dropped.ok ? 'connected (unexpected)' : dropped.timedOut ? `timed out after ${dropped.ms} ms` : dropped.error}`);
    note(out, `port 8081: ${accepted.ok ? `connected in ${accepted.ms} ms` : 'failed'}`);
    await sleep(100);
    await ev.stream.barrier();
    step(out, 'The table:');
    const flows = await sb.ct.list({ proto: 'tcp' });
    await printTable(sb.ct, out, flows);
    const on8080 = flows.filter((f) => f.orig.dport === 8080).length;
    const on8081 = flows.filter((f) => f.orig.dport === 8081).length;
    note(out, `entries for dport 8080: ${on8080}; for dport 8081: ${on8081}`);
    note(out, 'The SYN to 8080 got an entry in PREROUTING, the rule dropped it in INPUT before the');
    note(out, 'confirm, and the unconfirmed entry was destroyed with the packet: no entry, no event.');
    const s = await sb.ct.stats();
    note(out, `drop counter +${s.total.drop - before.total.drop}: conntrack's drop counts full-table drops, not rule drops`);
    note(out, `events: ${ev.counts.new} new (all for 8081), lost ${ev.stream.lost}`);
    ev.stream.close();
    await Promise.all([a.close(), b.close()]);
    return sb;
  } catch (err) {
    await sb.close();
    throw err;
  } finally {
    await client.close();
  }
}

async function nat(out: Out): Promise<Sandbox> {
  out('nat: a DNAT rule, and the reply tuple that shows it.');
  const sb = await open(
    out,
    'table ip sandbox_nat {\n  chain output { type nat hook output priority -100; ip daddr 10.99.0.80 tcp dport 80 dnat to 10.99.0.2:8080; }\n}\n',
  );
  try {
    await sb.run('ip', ['addr', 'add', '10.99.0.2/24', 'dev', 'lo']);
    step(out, 'A service address 10.99.0.80:80 that only exists in a rule:');
    note(out, 'ip daddr 10.99.0.80 tcp dport 80 dnat to 10.99.0.2:8080   (nft, nat hook output)');
    note(out, 'and a server that really listens on 10.99.0.2:8080');
    const c = await sb.tcp({ host: '10.99.0.80', port: 80, listen: { host: '10.99.0.2', port: 8080 }, hold: true });
    step(out, `Connected to 10.99.0.80:80 from port ${c.sport}. The entry, as conntrack -L prints it:`);
    const [f] = await sb.ct.list({ proto: 'tcp', orig: { dport: 80 } });
    note(out, formatFlow(f));
    note(out, `original: src=${f.orig.src} dst=${f.orig.dst} sport=${f.orig.sport} dport=${f.orig.dport}   (what the client sent)`);
    note(out, `reply:    src=${f.reply.src} dst=${f.reply.dst} sport=${f.reply.sport} dport=${f.reply.dport}   (who really answers: the DNAT target)`);
    note(out, `status: ${f.status.join(',')}`);
    note(out, 'Without NAT the reply tuple is the original one reversed. Here its source is the');
    note(out, 'rewritten destination, so the kernel maps answers from 10.99.0.2:8080 back to 10.99.0.80:80.');
    await c.close();
    return sb;
  } catch (err) {
    await sb.close();
    throw err;
  }
}

async function expectations(out: Out): Promise<Sandbox> {
  out('expectations: an FTP control connection through the ftp helper, and the expectation it makes.');
  const sb = await open(
    out,
    'table inet sandbox_helper {\n  ct helper ftp-standard { type "ftp" protocol tcp; }\n  chain output { type filter hook output priority 0; policy accept; tcp dport 21 ct helper set "ftp-standard"; }\n}\n',
  );
  try {
    step(out, 'The ftp helper is attached to connections to port 21 (nft ct helper):');
    note(out, 'ct helper ftp-standard { type "ftp" protocol tcp; }  ...  tcp dport 21 ct helper set "ftp-standard"');
    const evs = sb.ct.expectations.events();
    evs.on('event', (e: { type: string; expectation: { tuple: { dst: string; dport?: number } } }) =>
      note(out, `[expectation ${e.type.toUpperCase()}] for ${e.expectation.tuple.dst}:${e.expectation.tuple.dport}`));
    step(out, 'A tiny FTP server and client: greeting, then PASV; the server answers with a data port:');
    const s = await sb.ftp();
    for (const l of s.lines) note(out, `server: ${l}`);
    await sleep(100);
    const [master] = await sb.ct.list({ proto: 'tcp', orig: { dport: 21 } });
    step(out, 'The control connection (note helper=ftp):');
    note(out, formatFlow(master));
    const list = await sb.ct.expectations.list();
    step(out, `The helper read the 227 reply and made ${list.length} expectation (ct.expectations.list(), like conntrack -L expect):`);
    for (const x of list) {
      note(out, `expected: ${x.tuple.proto} src=${x.tuple.src} dst=${x.tuple.dst} sport=${x.tuple.sport} dport=${x.tuple.dport}  timeout ${x.timeout} s`);
      note(out, `master:   src=${x.master.src} dst=${x.master.dst} sport=${x.master.sport} dport=${x.master.dport}   helper=${(x as { helper?: string }).helper ?? ''}`);
    }
    note(out, 'On loopback the helper runs as the reply leaves and again as it arrives, so it makes the');
    note(out, 'expectation twice, the second replacing the first (the NEW, DESTROY, NEW above).');
    note(out, `the data port ${s.dataPort} is the one in the 227 reply: (..., ${s.dataPort >> 8}, ${s.dataPort & 255}) = ${s.dataPort >> 8}*256+${s.dataPort & 255}`);
    step(out, 'The data connection the expectation was waiting for:');
    const data = await sb.connect({ port: s.dataPort, hold: true });
    const [related] = await sb.ct.list({ proto: 'tcp', orig: { dport: s.dataPort } });
    if (data.ok && related) {
      note(out, formatFlow(related));
      note(out, `its master: src=${related.master?.src} dport=${related.master?.dport} (the control connection); expectations left: ${(await sb.ct.expectations.list()).length}`);
    }
    evs.close();
    await Promise.all([s.close(), data.close()]);
    return sb;
  } catch (err) {
    await sb.close();
    throw err;
  }
}

export const SCENARIOS: Record<string, Scenario> = {
  'table-full': { summary: 'fill the table with ASSURED entries: new connections are dropped', run: tableFull },
  'drop-before-confirm': { summary: 'a DROP in INPUT leaves no entry (never confirmed)', run: dropBeforeConfirm },
  nat: { summary: 'a DNAT rule and the reply tuple that shows it', run: nat },
  expectations: { summary: 'an FTP control connection and the expectation it makes', run: expectations },
};

/** Leaves the user in a shell inside the sandbox with nfct on PATH; resolves with its exit code. */
export async function runShell(sb: Sandbox, out: Out): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'nfct-sandbox-'));
  try {
    const main = process.argv[1];
    writeFileSync(join(dir, 'nfct'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(main)} "$@"\n`, { mode: 0o755 });
    const shell = process.env.SHELL || '/bin/sh';
    step(out, `A shell inside the sandbox (${sb.path}), nfct on PATH. Try: nfct list; conntrack -L; nft list ruleset. Leave with exit.`);
    // The shell's nfct works on the sandbox's table (its own namespace), not on NFCT_NETNS's.
    const { NFCT_NETNS: _outer, ...env } = process.env;
    const child = sb.spawn(shell, [], {
      stdio: 'inherit',
      ref: true,
      env: { ...env, PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`, PS1: '(nfct sandbox) # ', NFCT_SANDBOX: sb.path },
    });
    return await new Promise<number>((resolve) => {
      child.once('exit', (code) => resolve(code ?? 1));
      child.once('error', () => resolve(1));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
