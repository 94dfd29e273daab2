import { fromNative } from '../common/errors';
import type { Netns } from '../common/netns';
import type { Subscription } from './handle';
import { NfSocket } from './socket';

/** Opens a socket in `netns`, prepares it and joins the groups; the owner starts the reading (setListening). */
export function openSubscription(netns: Netns | undefined, s: Subscription): NfSocket {
  const sock = new NfSocket({ netns, threaded: s.threaded });
  try {
    s.prepare?.(sock);
    for (const g of s.groups) sock.handle.joinGroup(g);
  } catch (err) {
    sock.close();
    throw fromNative(err, s.operation);
  }
  sock.events = s.sink;
  // Not reading yet: the owner calls setListening(true) once something consumes the
  // stream (a reader thread started here would take its first block before that).
  return sock;
}
