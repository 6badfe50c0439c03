// A sliding window of per-sample losses and its histogram with quantile bands.
import type { HistogramView } from "./protocol.js";

const TOP_K = 8;

/** The newest `capacity` per-sample losses of one split, with their dataset indices. */
export class LossWindow {
  private readonly losses: Float64Array;
  private readonly indices: Float64Array;
  private next = 0;
  private size = 0;
  /** Step of the newest batch added. */
  step = 0;

  constructor(readonly split: string, readonly capacity = 4096) {
    this.losses = new Float64Array(capacity);
    this.indices = new Float64Array(capacity);
  }

  get count(): number {
    return this.size;
  }

  clear(): void {
    this.next = 0;
    this.size = 0;
  }

  /** Adds one batch; non-finite losses are skipped (they would wreck the bins), not hidden: see `nonFinite`. */
  add(step: number, indices: ArrayLike<number>, losses: ArrayLike<number>): void {
    this.step = step;
    for (let i = 0; i < losses.length; i++) {
      const v = losses[i];
      if (!Number.isFinite(v)) {
        this.nonFinite++;
        continue;
      }
      this.losses[this.next] = v;
      this.indices[this.next] = i < indices.length ? indices[i] : -1;
      this.next = (this.next + 1) % this.capacity;
      if (this.size < this.capacity) this.size++;
    }
  }

  nonFinite = 0;

  /** The window's histogram (`bins` equal-width bins between min and max) with quantiles and the top losses. */
  histogram(bins = 40): HistogramView | undefined {
    const n = this.size;
    if (n === 0) return undefined;
    const values = this.losses.slice(0, n);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
    const sorted = Float64Array.from(order, (i) => values[i]);
    const lo = sorted[0];
    const hi = sorted[n - 1];
    const width = hi > lo ? (hi - lo) / bins : 1;
    const counts = new Array<number>(bins).fill(0);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      sum += v;
      counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
    }
    // One row per sample: a sample seen twice in the window (two epochs) is listed once, at its highest loss.
    const top: { index: number; loss: number }[] = [];
    const listed = new Set<number>();
    for (let k = n - 1; k >= 0 && top.length < TOP_K; k--) {
      const index = this.indices[order[k]];
      if (index >= 0 && listed.has(index)) continue;
      listed.add(index);
      top.push({ index, loss: values[order[k]] });
    }
    return {
      split: this.split,
      step: this.step,
      n,
      lo,
      hi: hi > lo ? hi : lo + 1,
      counts,
      mean: sum / n,
      quantiles: {
        p05: quantile(sorted, 0.05),
        p25: quantile(sorted, 0.25),
        p50: quantile(sorted, 0.5),
        p75: quantile(sorted, 0.75),
        p95: quantile(sorted, 0.95),
      },
      top,
    };
  }
}

/** Linear-interpolated quantile q of ascending `sorted` (non-empty). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}
