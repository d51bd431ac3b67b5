/**
 * Square Attack, L∞ (Andriushchenko et al. 2020): score-based black-box random search. It only
 * reads output logits (no gradients): starting from vertical stripes of ±eps, each query
 * proposes re-drawing one random square window to ±eps per channel and keeps the proposal when
 * the logit margin drops. The window covers a fraction p of the image that shrinks on the
 * paper's schedule. Every perturbation component is ±eps (then clipped to [0, 1]), so the
 * L∞ bound holds by construction.
 *
 * `queries` counts every model evaluation of an image: the clean check, the stripe start and
 * one per proposal; images stop being queried once they are adversarial.
 */
import { tf } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import type { Attack, SquareAttackOptions } from './types';
import { createRng } from '../data/random';
import { intOption, labelArray, marginsFromLogits, numberOption, requireEps, resolveTargets, seedOption, lossOption } from './common';

/**
 * Fraction of the image a window covers at proposal `it` (0-based): the paper's schedule, halving
 * after 10, 50, 200, 500, … of 10 000 iterations, rescaled to a budget of `nIters` unless
 * `rescale` is false (AutoAttack runs it unscaled with 5000 queries).
 */
export function squareFraction(pInit: number, it: number, nIters: number, rescale = true): number {
  const i = rescale ? Math.floor((it / nIters) * 10000) : it;
  const halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000].filter((t) => i > t).length;
  return pInit / Math.pow(2, halvings);
}

/** Logit margins of a CPU batch: the only access to the model this attack makes. */
async function query(model: Classifier, x: Float32Array, m: number, s: number, cls: Int32Array, targeted: boolean): Promise<Float32Array> {
  const xt = tf.tensor4d(x, [m, s, s, 3]);
  const z = await inferLogits(model, xt);
  const logits = (await z.data()) as Float32Array;
  tf.dispose([xt, z]);
  return marginsFromLogits(logits, m, model.numClasses, cls, targeted);
}

export const square: Attack = {
  name: 'square',
  title: 'Square Attack (L∞, score-based black-box)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  blackBox: true,
  takesLoss: false,
  extraOptions: ['pInit'] satisfies (keyof SquareAttackOptions)[],
  settings: (options) => ({ queries: intOption(options, 'maxQueries', 1000, 1) }),
  async run(model, images, labels, options: SquareAttackOptions) {
    lossOption(options, square);
    const eps = requireEps(options, 'square');
    // With eps = 0 there is nothing to search: one query to report success.
    const maxQueries = eps > 0 ? intOption(options, 'maxQueries', 1000, 1) : 1;
    // 0.1 rather than the paper's 0.05: on 32×32 inputs and budgets of ~1000 queries the larger
    // early squares found more adversarials in our runs. (AutoAttack: 0.8, 5000, not rescaled.)
    const pInit = numberOption(options, 'pInit', 0.1);
    const rescale = options.rescaleSchedule !== false;
    const rand = createRng(seedOption(options) + 1);
    const y = labelArray(labels);
    const [n, h, w, ch] = images.shape;
    const d = h * w * ch;
    const targets = resolveTargets(options, n, model.numClasses, 'square');
    const cls = targets ?? y;
    const targeted = targets != null;
    const clean = (await images.data()) as Float32Array;
    const queries = new Int32Array(n);
    const clip = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

    const best = Float32Array.from(clean);
    let margin = await query(model, best, n, h, cls, targeted);
    queries.fill(1);
    // Stripe initialisation for images not already adversarial.
    const delta = new Float32Array(n * d);
    const startIdx: number[] = [];
    for (let i = 0; i < n; i++) {
      if (margin[i] < 0) continue;
      startIdx.push(i);
      for (let col = 0; col < w; col++) {
        for (let c = 0; c < ch; c++) {
          const v = rand() < 0.5 ? -eps : eps;
          for (let row = 0; row < h; row++) delta[i * d + (row * w + col) * ch + c] = v;
        }
      }
    }
    if (startIdx.length > 0 && maxQueries > 1) {
      const cand = new Float32Array(startIdx.length * d);
      startIdx.forEach((i, j) => {
        for (let p = 0; p < d; p++) cand[j * d + p] = clip(clean[i * d + p] + delta[i * d + p]);
      });
      const m = await query(
        model,
        cand,
        startIdx.length,
        h,
        Int32Array.from(startIdx, (i) => cls[i]),
        targeted,
      );
      startIdx.forEach((i, j) => {
        queries[i]++;
        // The stripes become the current point even when slightly worse: the search starts there.
        margin[i] = m[j];
        best.set(cand.subarray(j * d, (j + 1) * d), i * d);
      });
    }

    for (let it = 1; ; it++) {
      const active: number[] = [];
      for (let i = 0; i < n; i++) if (margin[i] >= 0 && queries[i] < maxQueries) active.push(i);
      if (active.length === 0) break;
      const p = squareFraction(pInit, it - 1, maxQueries, rescale);
      const side = Math.min(h - 1, Math.max(1, Math.round(Math.sqrt(p * h * w))));
      const cand = new Float32Array(active.length * d);
      const newDelta = new Float32Array(active.length * d);
      active.forEach((i, j) => {
        newDelta.set(delta.subarray(i * d, (i + 1) * d), j * d);
        const r0 = Math.floor(rand() * (h - side + 1));
        const c0 = Math.floor(rand() * (w - side + 1));
        for (let c = 0; c < ch; c++) {
          const v = rand() < 0.5 ? -eps : eps;
          for (let r = r0; r < r0 + side; r++) {
            for (let q = c0; q < c0 + side; q++) newDelta[j * d + (r * w + q) * ch + c] = v;
          }
        }
        for (let q = 0; q < d; q++) cand[j * d + q] = clip(clean[i * d + q] + newDelta[j * d + q]);
      });
      const m = await query(
        model,
        cand,
        active.length,
        h,
        Int32Array.from(active, (i) => cls[i]),
        targeted,
      );
      active.forEach((i, j) => {
        queries[i]++;
        if (m[j] < margin[i]) {
          margin[i] = m[j];
          delta.set(newDelta.subarray(j * d, (j + 1) * d), i * d);
          best.set(cand.subarray(j * d, (j + 1) * d), i * d);
        }
      });
    }
    const success = new Uint8Array(n);
    for (let i = 0; i < n; i++) success[i] = margin[i] < 0 ? 1 : 0;
    return { adversarial: tf.tensor4d(best, [n, h, w, ch]), success, queries };
  },
};
