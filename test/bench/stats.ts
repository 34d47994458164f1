/**
 * Small statistics for the benchmarks: medians, nearest-rank percentiles, and bootstrap intervals,
 * so a table says how far a median of twenty noisy runs can be trusted.
 */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (q in 0..1): with 20 samples, p95 is the 19th smallest. */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export const p95 = (xs: readonly number[]) => percentile(xs, 0.95);

/** A seeded generator (mulberry32): the same data gives the same interval on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function resample(xs: readonly number[], rand: () => number): number[] {
  return xs.map(() => xs[Math.floor(rand() * xs.length)]!);
}

export interface Interval {
  lo: number;
  hi: number;
}

/** 95% percentile-bootstrap interval of `statistic`, computed on resamples drawn by `draw`. */
function bootstrap(draw: (rand: () => number) => number, rounds = 2_000, seed = 1): Interval {
  const rand = random(seed);
  const values = Array.from({ length: rounds }, () => draw(rand));
  return { lo: percentile(values, 0.025), hi: percentile(values, 0.975) };
}

/** Interval of median(b) - median(a), the two samples resampled independently. */
export function medianDifferenceInterval(a: readonly number[], b: readonly number[]): Interval {
  return bootstrap((rand) => median(resample(b, rand)) - median(resample(a, rand)));
}

/** Interval of the median of paired differences (b[i] - a[i]), the pairs resampled together. */
export function pairedMedianInterval(differences: readonly number[]): Interval {
  return bootstrap((rand) => median(resample(differences, rand)));
}
