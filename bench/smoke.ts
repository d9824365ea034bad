/**
 * `npm run bench -- --smoke`: every scenario at a tiny size, so that CI can run the whole bench in
 * a minute or two (test/bench/smoke.test.ts) and a change that breaks it fails. Its figures only
 * show that each scenario runs and prints; they are not measurements.
 */

export const SMOKE = process.argv.includes('--smoke');

/** A count (decisions, samples, requests, seconds) for a full run, or for a smoke run. */
export const size = (full: number, smoke: number): number => (SMOKE ? smoke : full);
