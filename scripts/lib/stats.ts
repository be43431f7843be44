/** Small statistics for measurements: nearest-rank percentiles, rounding for display. */

/** The p-th percentile (0–100) by nearest rank; null for no samples. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function round(value: number | null, digits = 1): number | null {
  if (value === null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function p50p95(samples: readonly number[], digits = 1): { p50: number | null; p95: number | null } {
  return { p50: round(percentile(samples, 50), digits), p95: round(percentile(samples, 95), digits) };
}

export function p50max(samples: readonly number[], digits = 1): { p50: number | null; max: number | null } {
  return { p50: round(percentile(samples, 50), digits), max: round(samples.length ? Math.max(...samples) : null, digits) };
}
