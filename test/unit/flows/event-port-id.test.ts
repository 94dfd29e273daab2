/**
 * FlowEvent.portId: the sender's netlink port id (nlmsg_pid) of captured kernel event
 * messages, fed through a FlowEventStream driven by a scripted handle (no kernel).
 */
import type { FlowEvent } from '../../../lib';
import { FlowEventStream } from '../../../lib/flows/events';
import type { Handle, Subscription } from '../../../lib/wire/handle';
import { capturedMessages } from '../../helpers/fixtures';


/** The netlink messages of a capture (each padded to 4 bytes, as test/fixtures/events/capture.js writes them). */
const messages = (file: string): Buffer[] => capturedMessages(`events/${file}`);

/** Feeds `msgs` to a stream as its socket would, and returns the events it delivers. */
function deliver(msgs: Buffer[]): FlowEvent[] {
  let sub: Subscription | undefined;
  const fakeSocket = {
    handle: { getReceiveBuffer: () => 212992, memInfo: () => [], unref() {}, ref() {} },
    setPaused() {},
    setListening() {},
    close() {},
  };
  const handle = {
    netnsFile: undefined,
    assertOpen() {},
    subscribe(s: Subscription) {
      sub = s;
      s.prepare?.(fakeSocket as never);
      return fakeSocket;
    },
    adopt: () => () => undefined,
  } as unknown as Handle;
  const stream = new FlowEventStream(handle);
  const seen: FlowEvent[] = [];
  stream.on('event', (e) => seen.push(e));
  for (const m of msgs) sub!.sink.message(m, 0, m.length, m.readUInt16LE(4), m.readUInt16LE(6));
  return seen;
}

describe('FlowEvent.portId', () => {
  const captured = messages('events.bin');

  test('events a netlink request caused carry the requester port id (nlmsg_pid)', () => {
    const events = deliver(captured);
    expect(events).toHaveLength(captured.length);
    // capture.js made every entry, update and the flush over one request socket.
    const pids = captured.map((m) => m.readUInt32LE(12));
    expect(pids.every((p) => p !== 0)).toBe(true);
    expect(events.map((e) => e.portId)).toEqual(pids);
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(['new', 'update', 'destroy']));
  });

  test('events of the kernel itself (nlmsg_pid 0: traffic, timeouts) have no portId, also in JSON', () => {
    const kernelMade = captured.map((m) => {
      const c = Buffer.from(m);
      c.writeUInt32LE(0, 12);
      return c;
    });
    const events = deliver(kernelMade);
    expect(events).toHaveLength(captured.length);
    for (const e of events) {
      expect(e.portId).toBeUndefined();
      expect(Object.keys(JSON.parse(JSON.stringify(e)))).toEqual(['type', 'flow']);
    }
    const withPort = JSON.parse(JSON.stringify(deliver([captured[0]])[0]));
    expect(withPort.portId).toBe(captured[0].readUInt32LE(12));
  });
});
