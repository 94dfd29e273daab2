/**
 * The fuzz properties (fuzz.properties.ts), bounded for `npm test`. `npm run fuzz` runs
 * the same properties with FUZZ_RUNS inputs each.
 */
import { properties } from './fuzz.properties';

const long = process.env.FUZZ_RUNS !== undefined;
const total = long ? Number(process.env.FUZZ_RUNS) : 2500;
const names = Object.keys(properties) as (keyof typeof properties)[];
const numRuns = Math.max(1, Math.ceil(total / names.length));
const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

describe('mutated kernel messages', () => {
  for (const name of names) {
    // The long run (npm run fuzz) needs more than Jest's default per-test allowance.
    test(`${name}: never throws, every field typed (${numRuns} inputs)`, async () => {
      const started = Date.now();
      await properties[name]({ numRuns, seed });
      if (long) console.log(`${name}: ${numRuns} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }, long ? 24 * 3600 * 1000 : undefined);
  }
});
