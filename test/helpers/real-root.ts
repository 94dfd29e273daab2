/**
 * Tests that need real root (root in the initial user namespace): forced receive buffers
 * beyond rmem_max, host-wide sysctls such as nf_conntrack_max, switching users. Elsewhere
 * (`unshare -Urn npm test`) they are skipped, and the suite says which and why.
 */
import { isRealRoot } from '../../apps/testing';

/** `test` as real root; otherwise `test.skip`, after a line naming `what` and `why`. */
export function realRootTest(what: string, why: string): jest.It {
  if (isRealRoot()) return test;
  // eslint-disable-next-line no-console
  console.log(`${what}: skipped: ${why}`);
  return test.skip;
}
