/**
 * Protocol names: the built-in names Flow.proto uses, then the system's protocol database
 * (/etc/protocols, read once on first use) for the rest, so `proto: 'igmp'` means 2 as it
 * does for `conntrack -p igmp`. Without the file only the built-in names are known.
 */
import { readFileSync } from 'node:fs';
import { PROTO_NUMBERS, Proto } from '../wire/enums';

const PROTOCOLS_PATH = '/etc/protocols';

/** Parses protocols(5) text: `name number [aliases...] [# comment]`, names lowercased. */
export function parseProtocols(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [name, num, ...aliases] = line.split(/\s+/);
    const n = Number(num);
    if (!/^\d+$/.test(num ?? '') || n > 255) continue;
    for (const k of [name, ...aliases]) {
      const key = k.toLowerCase();
      if (!out.has(key)) out.set(key, n);
    }
  }
  return out;
}

let system: Map<string, number> | undefined;
let path = PROTOCOLS_PATH;

function systemTable(): Map<string, number> {
  if (!system) {
    try {
      system = parseProtocols(readFileSync(path, 'latin1'));
    } catch {
      system = new Map(); // no protocol database: built-in names only
    }
  }
  return system;
}

/** The protocol number for a name (case-insensitive): built-in first, then /etc/protocols. */
export function protocolByName(name: string): number | undefined {
  const key = name.toLowerCase();
  const builtin = PROTO_NUMBERS[key as Proto];
  if (builtin !== undefined) return builtin;
  return systemTable().get(key);
}

/** @internal Reads another protocols file (tests); undefined restores /etc/protocols. */
export function useProtocolsFile(file: string | undefined): void {
  path = file ?? PROTOCOLS_PATH;
  system = undefined;
}

/**
 * A protocol as callers may give it: a built-in name (as Flow.proto shows it), any name
 * from /etc/protocols (e.g. 'igmp'), or a number 0-255.
 */
export type ProtoSpec = Proto | number | (string & {});
