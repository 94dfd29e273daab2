/**
 * 32-bit FNV-1a over the UTF-16 code units of `s` (signatures for duplicate suppression);
 * `seed` chains several strings into one hash without concatenating them.
 */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
