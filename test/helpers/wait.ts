/** Waiting in integration tests for what happens asynchronously (events, child output, sockets closing). */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every `every` ms until it holds; rejects naming `what` if it still does not after `ms`. */
export async function waitFor(pred: () => boolean, what: string, ms = 10000, every = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}
