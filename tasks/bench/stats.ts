/** Order statistics for benchmark samples. */

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new RangeError("Cannot summarise an empty sample");
  for (const v of values) {
    if (!Number.isFinite(v)) throw new RangeError(`Cannot summarise a non-finite value "${v}"`);
  }
  return [...values].sort((a, b) => a - b);
}

/** Median; the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const s = sorted(values);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (`p` in 0..100): the smallest value with at least p % at or below it. */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`Cannot take percentile "${p}": expected 0..100`);
  const s = sorted(values);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

/** Arithmetic mean. */
export function mean(values: readonly number[]): number {
  const s = sorted(values);
  return s.reduce((a, b) => a + b, 0) / s.length;
}

/** Median of the last half of a time series: the steady value once start-up has settled. */
export function steadyMedian(series: readonly number[]): number {
  return median(series.slice(Math.floor(series.length / 2)));
}
