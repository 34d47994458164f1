import { describe, expect, it } from 'vitest';
import { median, medianDifferenceInterval, p95, pairedMedianInterval, percentile } from '../bench/stats.js';

describe('bench statistics', () => {
  it('takes medians and nearest-rank percentiles', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    const twenty = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(p95(twenty)).toBe(19);
    expect(percentile(twenty, 0.025)).toBe(1);
    expect(percentile(twenty, 1)).toBe(20);
  });

  it('gives an interval that holds the true shift and narrows with less noise', () => {
    // b is a shifted by 30, with the same noise pattern in each pair.
    const noise = Array.from({ length: 20 }, (_, i) => ((i * 37) % 20) * 40); // 0..760, spread like the e2e runs
    const a = noise.map((n) => 900 + n);
    const b = noise.map((n) => 930 + n);
    const independent = medianDifferenceInterval(a, b);
    expect(independent.lo).toBeLessThan(30);
    expect(independent.hi).toBeGreaterThan(30);
    // Pairing removes the shared noise: every difference is 30.
    const paired = pairedMedianInterval(b.map((x, i) => x - a[i]!));
    expect(paired).toEqual({ lo: 30, hi: 30 });
    expect(independent.hi - independent.lo).toBeGreaterThan(100);
  });

  it('is the same interval on every run (seeded)', () => {
    const xs = [5, 1, 9, 3, 7, 2, 8];
    expect(pairedMedianInterval(xs)).toEqual(pairedMedianInterval(xs));
  });
});
