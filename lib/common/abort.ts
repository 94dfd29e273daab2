import { ConntrackError } from './errors';

/** What an aborted operation rejects with: code ERR_ABORTED, the signal's reason as cause. */
export function abortError(operation: string, signal?: AbortSignal): ConntrackError {
  return new ConntrackError('ERR_ABORTED', `${operation} was aborted`, { cause: signal?.reason });
}
