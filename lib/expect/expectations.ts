/**
 * `ct.expectations`: list, dump, get, create, delete, flush, events and statistics of
 * the kernel's expectation table (NFNL_SUBSYS_CTNETLINK_EXP).
 */
import type { Handle } from '../wire/handle';
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import { checkInt, checkKeys, checkObject, checkSignal, show } from '../common/validate';
import {
  AF_UNSPEC, IPCTNL_MSG_CT_GET, IPCTNL_MSG_EXP_DELETE, IPCTNL_MSG_EXP_GET, IPCTNL_MSG_EXP_GET_STATS_CPU,
  IPCTNL_MSG_EXP_NEW, NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_CTNETLINK_EXP, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
} from '../wire/enums';
import type { Dump, DumpOptions, DumpSpec } from '../wire/dump';
import { ctType, expType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import { decodeFlow } from '../flows/flow';
import { Expectation, decodeExpectation, expectationSignature } from './decode';
import { ExpectationKey, ExpectationSpec, encodeCreate, encodeHelperFlush, encodeKey } from './encode';
import { CompiledExpectationFilter, ExpectationFilter, compileExpectationFilter } from './filter';
import { ExpectationEvents, ExpectationEventsOptions, eventGroups } from './events';
import { ExpectationCpuStats, decodeExpectationStats } from './stats';

/** Anything that names one expectation: a tuple with proto (and zone), or an Expectation. */
export type ExpectationTarget = ExpectationKey | Pick<Expectation, 'tuple' | 'zone' | 'id'>;

/** The expectation table of one Conntrack handle (`ct.expectations`). */
const EXP_EVENT_KEYS = new Set(['types', 'filter', 'signal', 'receiveBufferSize', 'highWaterMark']);

export class Expectations {
  /** @internal */
  constructor(private readonly ct: Handle) {}

  /**
   * Streams the expectation table (or the part matching `filter`). Iterate with
   * `for await`; `options.signal` aborts it.
   */
  dump(filter?: ExpectationFilter, options: DumpOptions = {}): Dump<Expectation> {
    const f = compileExpectationFilter(filter);
    return this.ct.startDump<Expectation>(this.dumpSpec(f), options);
  }

  private dumpSpec(f: CompiledExpectationFilter): DumpSpec<Expectation> {
    return {
      type: expType(IPCTNL_MSG_EXP_GET),
      family: f.nfFamily,
      payload: undefined,
      operation: 'expectations.dump',
      decode: (buf: Buffer, off: number, len: number, msgType: number): Expectation | undefined => {
        if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK_EXP || nfnlMsg(msgType) !== IPCTNL_MSG_EXP_NEW) return undefined;
        return decodeExpectation(buf, off, len);
      },
      match: f.empty ? undefined : f.match,
      idOf: (x: Expectation) => x.id,
      signatureOf: expectationSignature,
    };
  }

  /** The expectation table (or the part matching `filter`) as an array. */
  list(filter?: ExpectationFilter, options: DumpOptions = {}): Promise<Expectation[]> {
    try {
      return this.dump(filter, options).toArray();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Fetches one expectation by its tuple `{ proto, src, dst, sport, dport, zone? }`
   * (sport 0 for "any source port", as the kernel stores it), or by an Expectation from
   * list(). Rejects with code ENOENT when there is none.
   */
  async get(target: ExpectationTarget): Promise<Expectation> {
    this.ct.assertOpen('expectations.get');
    const key = encodeKey(target, 'target');
    const replies = await this.ct.request(expType(IPCTNL_MSG_EXP_GET), 0, key.nfFamily, key.payload, 'expectations.get');
    for (const r of replies) {
      const t = r.readUInt16LE(4);
      if (nfnlSubsys(t) === NFNL_SUBSYS_CTNETLINK_EXP) return withZone(decodeExpectation(r, 0, r.length), key.zone);
    }
    throw new ConntrackError('ERR_PROTOCOL', 'expectations.get: the kernel acknowledged but sent no expectation');
  }

  /**
   * Creates an expectation on an existing master flow that has a helper. Resolves with
   * the expectation as the kernel stored it, or undefined when it was already gone
   * (matched by a connection or expired) by the time it was read back.
   *
   * Kernel refusals are explained: no master (ENOENT), a master without a helper or an
   * unknown helper name (ENOTSUP), an existing expectation (EEXIST), a clash with
   * another master's expectation (EBUSY), a full expectation table (EMFILE).
   */
  async create(spec: ExpectationSpec): Promise<Expectation | undefined> {
    this.ct.assertOpen('expectations.create');
    const enc = encodeCreate(spec);
    try {
      await this.ct.requestAck(expType(IPCTNL_MSG_EXP_NEW), NLM_F_CREATE | NLM_F_EXCL, enc.nfFamily, enc.payload, 'expectations.create');
    } catch (err) {
      throw await this.explainCreate(err, enc);
    }
    // The kernel takes the lifetime from the helper's policy on create; apply ours now.
    if (enc.timeoutPayload) {
      try {
        await this.ct.requestAck(expType(IPCTNL_MSG_EXP_NEW), 0, enc.nfFamily, enc.timeoutPayload, 'expectations.create (setting the timeout)');
      } catch (err) {
        if ((err as ConntrackError).code !== 'ENOENT') throw err;
        return undefined;
      }
    }
    try {
      const replies = await this.ct.request(expType(IPCTNL_MSG_EXP_GET), 0, enc.nfFamily, enc.getPayload, 'expectations.create (reading back)');
      const r = replies.find((b) => nfnlSubsys(b.readUInt16LE(4)) === NFNL_SUBSYS_CTNETLINK_EXP);
      return r ? withZone(decodeExpectation(r, 0, r.length), enc.zone) : undefined;
    } catch (err) {
      if ((err as ConntrackError).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async explainCreate(err: unknown, enc: ReturnType<typeof encodeCreate>): Promise<unknown> {
    if (!(err instanceof ConntrackError) || err.errno === undefined) return err;
    const base = { errno: err.errno, syscall: err.syscall, extack: err.extack, cause: err };
    const say = (text: string): ConntrackError => new ConntrackError(err.code, `expectations.create failed: ${err.code}: ${text}`, base);
    switch (err.code) {
      case 'ENOENT':
        return say(`there is no master flow ${enc.masterText} (in this zone): create the master first, e.g. ct.create({ proto, orig, timeout, helper: 'ftp' })`);
      case 'ENOTSUP': {
        // Either the master has no helper, or spec.helper names a helper the kernel lacks.
        let masterHelper: string | undefined;
        let known = false;
        try {
          const replies = await this.ct.request(ctType(IPCTNL_MSG_CT_GET), 0, enc.nfFamily, enc.masterLookup, 'expectations.create (checking the master)');
          const r = replies.find((b) => nfnlSubsys(b.readUInt16LE(4)) === NFNL_SUBSYS_CTNETLINK);
          if (r) {
            known = true;
            masterHelper = decodeFlow(r, 0, r.length).helper;
          }
        } catch {
          /* fall through to the general explanation */
        }
        if (known && masterHelper === undefined) {
          return say(`the kernel accepts expectations only on a master flow that has a helper, and ${enc.masterText} has none. ` +
            "Create the master with a helper (ct.create({ ..., helper: 'ftp' })), or let traffic pick one up through an nft rule (ct helper set)");
        }
        if (enc.helper !== undefined) {
          return say(`the kernel has no helper named ${show(enc.helper)} for this master's protocol (is its nf_conntrack_* module loaded?)` +
            (masterHelper ? `; the master's helper is ${show(masterHelper)}` : ''));
        }
        return say("the master flow needs a helper: create it with ct.create({ ..., helper: 'ftp' }) or through an nft rule (ct helper set)");
      }
      case 'EEXIST':
        return say('an expectation with this tuple already exists (delete it first, or use another tuple)');
      case 'EBUSY':
        return say("the tuple overlaps an expectation of another master (the kernel refuses clashing expectations)");
      case 'EMFILE':
        return say('the expectation table is full (net.netfilter.nf_conntrack_expect_max; a helper at its per-master limit replaces the oldest expectation instead)');
      case 'ESHUTDOWN':
        return say('the master flow is going away or lost its helper');
      case 'EINVAL':
        return say('the kernel refused the request as invalid (a class at or above the helper\'s class count, an unknown fn, or a bad NAT tuple)' +
          (err.extack ? ` — ${err.extack}` : ''));
      default:
        return err;
    }
  }

  /**
   * Deletes one expectation, named by its tuple (`{ proto, src, dst, sport, dport,
   * zone? }`) or by an Expectation from list() (its id is checked, so an expectation
   * re-created with the same tuple is left alone). Rejects with ENOENT when absent.
   */
  async delete(target: ExpectationTarget): Promise<void> {
    this.ct.assertOpen('expectations.delete');
    const key = encodeKey(target, 'target');
    await this.ct.requestAck(expType(IPCTNL_MSG_EXP_DELETE), 0, key.nfFamily, key.payload, 'expectations.delete');
  }

  /**
   * Removes every expectation, or those matching `filter`. A filter with only `helper`
   * is done by the kernel in one request; other filters list the matches and delete
   * them one by one (ones that vanish meanwhile are skipped).
   */
  async flush(filter?: ExpectationFilter): Promise<void> {
    this.ct.assertOpen('expectations.flush');
    const f = compileExpectationFilter(filter);
    if (f.empty) {
      await this.ct.requestAck(expType(IPCTNL_MSG_EXP_DELETE), 0, AF_UNSPEC, undefined, 'expectations.flush');
      return;
    }
    if (f.helperOnly && f.helper !== undefined) {
      await this.ct.requestAck(expType(IPCTNL_MSG_EXP_DELETE), 0, AF_UNSPEC, encodeHelperFlush(f.helper), 'expectations.flush');
      return;
    }
    const victims = await this.ct.startDump<Expectation>(this.dumpSpec(f)).toArray();
    const results = await Promise.allSettled(victims.map((x) => this.delete(x)));
    let missed = 0;
    for (const r of results) {
      if (r.status === 'rejected') {
        if ((r.reason as ConntrackError).code !== 'ENOENT') throw r.reason;
        missed++;
      }
    }
    if (missed > 0) {
      // ENOENT: gone meanwhile (fine), or in a zone other than 0, which dumps do not report
      // and deletes therefore cannot name. Look again rather than claim success.
      const left = await this.ct.startDump<Expectation>(this.dumpSpec(f)).toArray();
      const stuck = left.filter((x) => victims.some((v) => v.id === x.id));
      if (stuck.length > 0) {
        throw new ConntrackError(
          'ERR_UNSUPPORTED',
          `expectations.flush: ${stuck.length} matching expectation(s) could not be deleted: they are in a non-zero zone, ` +
            "which the kernel does not report; delete them with expectations.delete({ ...tuple, zone }), or flush() without a filter",
        );
      }
    }
  }

  /**
   * Subscribes to expectation events (`'new'` when one is created, `'destroy'` when it
   * expires, is matched or is deleted). The subscription is live when this returns.
   */
  events(options: ExpectationEventsOptions & { filter?: ExpectationFilter } = {}): ExpectationEvents {
    this.ct.assertOpen('expectations.events');
    checkObject(options, 'options', '{ types?, signal? }');
    checkKeys(options as Record<string, unknown>, EXP_EVENT_KEYS, 'options', 'expectations.events()');
    const groups = eventGroups(options.types, 'options.types');
    const filter = compileExpectationFilter(options.filter, 'options.filter');
    if (options.highWaterMark !== undefined) checkInt(options.highWaterMark, 1, 1 << 24, 'options.highWaterMark');
    if (options.receiveBufferSize !== undefined) checkInt(options.receiveBufferSize, 4096, 0x7fffffff, 'options.receiveBufferSize', 'a size in bytes');
    checkSignal(options.signal, 'options.signal');
    if (options.signal?.aborted) throw abortError('expectations.events', options.signal);
    return new ExpectationEvents(this.ct, filter, options, groups);
  }

  /** Per-CPU expectation counters. */
  async stats(): Promise<ExpectationCpuStats[]> {
    this.ct.assertOpen('expectations.stats');
    const replies = await this.ct.request(expType(IPCTNL_MSG_EXP_GET_STATS_CPU), NLM_F_DUMP, AF_UNSPEC, undefined, 'expectations.stats');
    const out: ExpectationCpuStats[] = [];
    for (const r of replies) out.push(decodeExpectationStats(r, 0, r.length));
    return out;
  }
}

/** Fills in the zone the caller named when the kernel did not report one. */
function withZone(x: Expectation, zone: number | undefined): Expectation {
  if (zone !== undefined && x.zone === 0) x.zone = zone;
  return x;
}
