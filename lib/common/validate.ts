/**
 * Checks of caller input. Every refusal is an ERR_INVALID_ARGUMENT that names the field
 * (`invalid(field, problem)`), thrown before anything reaches the kernel.
 */
import { inspect } from 'node:util';
import { invalid } from './errors';

/**
 * A value as error messages show it: strings quoted, numbers as written (`NaN`, `-0`),
 * bigints with their `n`, symbols, objects (null-prototype ones too) inspected shallowly.
 * Never throws, whatever the caller passed.
 */
export function show(v: unknown): string {
  try {
    if (typeof v === 'string') return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}...` : v);
    // customInspect off: a caller's [util.inspect.custom] does not run inside a message.
    return inspect(v, { depth: 2, breakLength: Infinity, maxArrayLength: 10, maxStringLength: 100, customInspect: false });
  } catch {
    return `a value of type ${typeof v}`;
  }
}

/**
 * An integer in [min, max]. `what` names the value in the message ("port must be an
 * integer 0-65535, got 70000"); `unit` follows the range ("0-60 seconds").
 */
export function checkInt(v: unknown, min: number, max: number, field: string, what?: string, unit = ''): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(field, `${what ? `${what} ` : ''}must be an integer ${min}-${max}${unit}, got ${show(v)}`);
  }
  return v;
}

export const checkU8 = (v: unknown, field: string, what?: string): number => checkInt(v, 0, 0xff, field, what);
export const checkU16 = (v: unknown, field: string, what?: string): number => checkInt(v, 0, 0xffff, field, what);
export const checkU32 = (v: unknown, field: string, what?: string): number => checkInt(v, 0, 0xffffffff, field, what);

/** A finite number in [min, max] (not necessarily whole: milliseconds, ratios). */
export function checkNumber(v: unknown, min: number, max: number, field: string, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalid(field, `must be ${what} from ${min} to ${max}, got ${show(v)}`);
  }
  return v;
}

/** True for a plain object (not null, not an array). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A plain object; the message shows an example of what is expected. */
export function checkObject(v: unknown, field: string, example: string): Record<string, unknown> {
  if (!isObject(v)) throw invalid(field, `must be an object like ${example}`);
  return v;
}

/**
 * Refuses keys outside `known`, naming `field.key`, the closest known key when one is
 * near (a typo), and listing what `what` takes.
 */
export function checkKeys(o: Record<string, unknown>, known: ReadonlySet<string>, field: string, what: string): void {
  for (const k in o) {
    if (known.has(k) || !Object.prototype.hasOwnProperty.call(o, k)) continue;
    const near = closest(k, known);
    throw invalid(`${field}.${k}`, `unknown key${near ? ` (did you mean ${near}?)` : ''}; ${what} takes ${[...known].join(', ')}`);
  }
}

/**
 * The entry of `candidates` nearest to `word` by edit distance (case-insensitive), if it
 * is near enough to be a typo: at most a third of the longer word's length, at least 1.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  if (best === undefined) return undefined;
  return bestDistance <= Math.max(1, Math.floor(Math.max(w.length, best.length) / 3)) ? best : undefined;
}

/** Edit distance with adjacent transpositions (optimal string alignment): "makr" is 1 from "mark". */
function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

export function checkBoolean(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw invalid(field, `must be true or false, got ${show(v)}`);
  return v;
}

/** NF_CT_HELPER_NAME_LEN (16) less its NUL: the longest helper name the kernel accepts. */
const HELPER_NAME_MAX = 15;

/**
 * A conntrack helper name as the kernel accepts it in CTA_HELP_NAME and
 * CTA_EXPECT_HELP_NAME: 1 to 15 bytes, no NUL.
 */
export function checkHelperName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0') || Buffer.byteLength(v) > HELPER_NAME_MAX) {
    throw invalid(field, `must be a helper name of 1-${HELPER_NAME_MAX} bytes (the kernel's limit) such as 'ftp', got ${show(v)}`);
  }
  return v;
}

/** An AbortSignal, or undefined. */
export function checkSignal(v: unknown, field: string): AbortSignal | undefined {
  if (v !== undefined && !(v instanceof AbortSignal)) throw invalid(field, 'must be an AbortSignal');
  return v;
}
