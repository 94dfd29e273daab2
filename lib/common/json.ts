/**
 * JSON for decoded objects: flows and events carry bigints (counters, timestamps), which
 * JSON.stringify refuses. Their prototypes get a toJSON() that returns a copy with every
 * bigint as a decimal string, so the work happens only when someone stringifies.
 */

/** A copy of `obj`'s own enumerable fields with bigints as decimal strings, recursively. */
export function jsonCopy(obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj)) {
    const v = (obj as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = jsonValue(v);
  }
  return out;
}

function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(jsonValue);
  const own = (v as { toJSON?: unknown }).toJSON;
  if (typeof own === 'function') return (own as () => unknown).call(v);
  return jsonCopy(v);
}
