/**
 * Plain byte reads for the decoders' hot loops. Callers check bounds once per attribute,
 * so these skip Buffer.readUInt*'s own range checks, which showed in dump profiles.
 */

/** u16, little endian (netlink attribute headers: host order on the little-endian targets). */
export const u16le = (b: Uint8Array, p: number): number => b[p] | (b[p + 1] << 8);

/** u16, big endian (ctnetlink attribute payloads: network order). */
export const u16be = (b: Uint8Array, p: number): number => (b[p] << 8) | b[p + 1];

/** u32, big endian, as an unsigned number. */
export const u32be = (b: Uint8Array, p: number): number => ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
