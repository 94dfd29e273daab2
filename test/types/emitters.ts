/**
 * Compiled by test/unit/types.test.ts against the built package (dist/*.d.ts), as a user's
 * code would be. Each `@ts-expect-error TSnnnn` line must fail with that error; every other
 * line must compile.
 */
import { Conntrack, type ConntrackError, type Flow, type LostInfo } from 'conntrack';

export async function flowEvents(ct: Conntrack): Promise<void> {
  const events = ct.events({ types: ['new', 'destroy'] });
  events.on('event', (ev) => ev.flow.orig.src.toUpperCase());
  events.on('lost', (i) => i.lost + i.delta + i.receiveBufferSize);
  events.once('error', (e: ConntrackError) => e.code);
  events.on('close', () => undefined).off('close', () => undefined);
  events.on('newListener', (name) => String(name));
  const lost: (i: LostInfo) => void = (i) => void i.lost;
  events.prependListener('lost', lost).removeListener('lost', lost);
  const n: number = events.listenerCount('event');
  void n;
  // @ts-expect-error TS2339 a payload field that does not exist
  events.on('lost', (i) => i.lots);
  // @ts-expect-error TS2345 a misspelt event name
  events.on('evnt', () => undefined);
  // @ts-expect-error TS2345 once() is typed too
  events.once('closed', () => undefined);
  // @ts-expect-error TS2345 and off()
  events.off('losts', lost);
  // @ts-expect-error TS2345 a listener taking the wrong payload type
  events.on('event', (ev: LostInfo) => ev.lost);
  // @ts-expect-error TS2345 emit() checks the payload
  events.emit('lost', 3);
  // @ts-expect-error TS2551 FlowEvent has no 'flows' (did you mean 'flow'?)
  for await (const ev of events) void ev.flows;
}

export function mirror(ct: Conntrack): void {
  const m = ct.mirror({ filter: { proto: 'tcp' } });
  m.on('add', (f: Flow) => f.id);
  m.on('update', (f, previous) => f.id === previous.id);
  m.on('delete', (f) => f.orig.dst);
  m.on('resync', (info) => info.reason === 'lost' || info.reason === 'refresh' || info.reason === 'initial');
  m.once('error', (e) => e.message);
  // @ts-expect-error TS2345 Mirror has no 'event'
  m.on('event', () => undefined);
  // @ts-expect-error TS2367 no such reason
  m.on('resync', (info) => info.reason === 'timer');
  // @ts-expect-error TS2339 ResyncInfo has no 'removals'
  m.on('resync', (info) => info.removals);
}

export function expectationEvents(ct: Conntrack): void {
  const x = ct.expectations.events({ types: ['new'] });
  x.on('event', (ev) => ev.expectation.tuple.dport);
  x.on('new', (e) => e.helper);
  x.on('destroy', (e) => e.master.src);
  x.on('lost', (i) => i.delta);
  // @ts-expect-error TS2345 expectations have no update events
  x.on('update', () => undefined);
  // @ts-expect-error TS2339 the 'new' payload is the Expectation itself
  x.on('new', (e) => e.expectation);
}

export function pressure(ct: Conntrack): void {
  const mon = ct.pressure({ interval: 1000, warnAt: 0.8 });
  mon.on('warning', (w) => `${w.reason}: ${w.message} (${w.sample.fill})`);
  mon.on('recovered', (r) => r.reason);
  mon.on('sample', (s) => s.rates.drop);
  // @ts-expect-error TS2345 'warn' is not an event
  mon.on('warn', () => undefined);
  // @ts-expect-error TS2339 PressureWarning has no 'text'
  mon.on('warning', (w) => w.text);
}
