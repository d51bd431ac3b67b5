/**
 * An exponential moving average of a model's trainable weights (Polyak averaging): after every
 * optimizer step avg ← d·avg + (1 − d)·w. Adversarially trained weights wander from step to step
 * and their robust accuracy with them; the average is steadier and usually a little more robust
 * (Gowal et al. 2020, "Uncovering the limits of adversarial training"). The decay is warmed up as
 * min(d, (1 + t) / (10 + t)) so the first steps' random or --init weights fade quickly. Batch-norm
 * statistics are not averaged: they stay the live model's.
 */
import { tf } from './tf';

export class WeightAverage {
  private readonly average: tf.Variable[];
  private steps = 0;

  constructor(
    private readonly weights: readonly tf.Variable[],
    readonly decay: number,
  ) {
    if (!(decay > 0 && decay < 1)) throw new RangeError(`weight-average decay must be in (0, 1), got ${decay}`);
    this.average = weights.map((w) => tf.variable(w.clone(), false));
  }

  /** Folds the current weights into the average (call after each optimizer step). */
  update(): void {
    const d = Math.min(this.decay, (1 + this.steps) / (10 + this.steps));
    this.steps++;
    tf.tidy(() => this.average.forEach((a, i) => a.assign(tf.add(tf.mul(a, d), tf.mul(this.weights[i], 1 - d)))));
  }

  /** Runs `f` with the averaged weights in the model, then puts the live ones back (also if f throws). */
  async withAverage<T>(f: () => Promise<T>): Promise<T> {
    const live = this.weights.map((w) => w.clone());
    this.weights.forEach((w, i) => w.assign(this.average[i]));
    try {
      return await f();
    } finally {
      this.weights.forEach((w, i) => w.assign(live[i]));
      tf.dispose(live);
    }
  }

  dispose(): void {
    tf.dispose(this.average);
  }
}
