/**
 * JSMA (Papernot et al. 2016), L0: repeatedly picks the pair of input features (single channel
 * values) whose increase most raises the target class while lowering the others, per the
 * saliency map on the forward derivative of an output O
 *   α = ∂O_t/∂x_p + ∂O_t/∂x_q,  β = Σ_{j≠t} (∂O_j/∂x_p + ∂O_j/∂x_q),  pick α > 0, β < 0, max α·|β|,
 * and sets both to 1 (θ = +1). Each feature is used once. It stops when the target is reached
 * or when the changed *pixels* (any channel changed, as norms.ts counts L0) reach
 * `maxFraction` of the image; a pair that would cross that budget takes only its first feature.
 *
 * `saliency` chooses O:
 *   - 'probs' (default, the paper's JSMA-F): O = softmax. Since Σ_j F_j = 1, β = −α exactly and
 *     the best pair is simply the two features with the largest ∂F_t/∂x. F_t's gradient is
 *     F_t·∇log F_t, a positive per-image factor times the gradient of the log-softmax, so we
 *     rank by ∇(Z_t − logsumexp Z): computed from the logits, it does not vanish when the
 *     softmax saturates.
 *   - 'logits' (JSMA-Z): O = Z. β then sums the gradients of every other logit, most of which
 *     belong to classes nowhere near the decision; on our test model this lowered targeted
 *     success from 100% to under 40% at the same budget.
 * The exact logit pair search is O(d²) per step (9.4 M pairs at 32×32×3); we search the pairs
 * among the `pairCandidates` moves with the best single-feature score α_p − β_p, where the
 * best pair almost always lies. When no pair satisfies the sign conditions we still take the
 * best-scoring one (α − β) rather than stop, trading fidelity to the paper for success.
 *
 * `direction: 'both'` also lets a feature be *decreased* to 0 (scored with the gradient signs
 * flipped), a two-sided variant for colour images; the default is the paper's 'increase'.
 *
 * Targeted by nature; untargeted, the target is the runner-up class (or random with
 * `targetMode: 'random'`) and success means any misclassification. eps is not used.
 */
import { tf } from '../inference/tf';
import { vjp } from '../inference/objective';
import type { Attack, JsmaAttackOptions } from './types';
import {
  argmaxRows,
  fallbackTargets,
  intOption,
  labelArray,
  numberOption,
  resolveTargets,
  seedOption,
  stringOption,
  successFromPredictions,
  lossOption,
} from './common';
import { quantiseArray } from './written';

export const jsma: Attack = {
  name: 'jsma',
  title: 'JSMA (L0 saliency map, pairs of features)',
  norm: 'l0',
  usesEps: false,
  supportsTargeted: true,
  takesLoss: false,
  extraOptions: ['maxFraction', 'pairCandidates', 'saliency', 'direction', 'targetMode'] satisfies (keyof JsmaAttackOptions)[],
  async run(model, images, labels, options: JsmaAttackOptions) {
    lossOption(options, jsma);
    const maxFraction = numberOption(options, 'maxFraction', 0.1);
    const pairCandidates = intOption(options, 'pairCandidates', 48, 2);
    const useProbs = stringOption(options, 'saliency', ['probs', 'logits'] as const, 'probs') === 'probs';
    const both = stringOption(options, 'direction', ['increase', 'both'] as const, 'increase') === 'both';
    const y = labelArray(labels);
    const [n, h, w, ch] = images.shape;
    const k = model.numClasses;
    const d = h * w * ch;
    const explicit = resolveTargets(options, n, k, 'jsma');
    const aim =
      explicit ?? (await fallbackTargets(model, images, y, stringOption(options, 'targetMode', ['second', 'random'] as const, 'second'), seedOption(options)));
    const maxPixels = Math.max(1, Math.floor(maxFraction * h * w));
    const x = Float32Array.from((await images.data()) as Float32Array);
    // Features already chosen, or with no room to move in any allowed direction.
    const used = new Uint8Array(n * d);
    for (let i = 0; i < n * d; i++) if (x[i] >= 1 && !(both && x[i] > 0)) used[i] = 1;
    const touched = new Uint8Array(n * h * w);
    const pixelsChanged = new Int32Array(n);
    const done = new Uint8Array(n);
    const aimT = tf.tensor1d(aim, 'int32');
    const targetMask = tf.oneHot(aimT, k);
    let pred: Int32Array = new Int32Array(n);
    const zeros = new Float32Array(n * d);
    // Each step changes at least one pixel, so this bounds the loop even if nothing succeeds.
    for (let iter = 0; iter <= maxPixels * ch; iter++) {
      // Written as 8 bits: success is judged on the rounded image (features already set to 0 or 1
      // are on the grid; the rest is the clean image, rounded).
      const xt = tf.tensor4d(options.eightBit ? quantiseArray(x) : x, [n, h, w, ch]);
      let zT: tf.Tensor, gT: tf.Tensor, gAll: tf.Tensor | undefined;
      if (useProbs) {
        // ∇ log F_t; with β = −α the "all outputs" gradient is zero (passed as zeros below).
        const logSoftmaxT = (zz: tf.Tensor2D) => tf.grad((q) => tf.sum(tf.mul(tf.sub(q, tf.logSumExp(q, 1, true)), targetMask)))(zz) as tf.Tensor2D;
        ({ logits: zT, grad: gT } = await vjp(model, xt, logSoftmaxT));
      } else {
        const [toTarget, toAll] = tf.tidy(() => [tf.cast(targetMask, 'float32'), tf.onesLike(targetMask).toFloat()] as tf.Tensor2D[]);
        ({ logits: zT, grad: gT } = await vjp(model, xt, toTarget));
        const all = await vjp(model, xt, toAll, 'tape');
        all.logits.dispose();
        gAll = all.grad;
        tf.dispose([toTarget, toAll]);
      }
      xt.dispose();
      const z = (await zT.data()) as Float32Array;
      const dt = (await gT.data()) as Float32Array;
      const da = gAll ? ((await gAll.data()) as Float32Array) : zeros;
      zT.dispose();
      gT.dispose();
      gAll?.dispose();
      pred = argmaxRows(z, n, k);
      let active = 0;
      for (let i = 0; i < n; i++) {
        const reached = explicit ? pred[i] === aim[i] : pred[i] !== y[i];
        if (reached || pixelsChanged[i] >= maxPixels) done[i] = 1;
        if (done[i]) continue;
        const pair = bestPair(dt, da, used, x, both, i * d, d, pairCandidates);
        if (!pair) {
          done[i] = 1;
          continue;
        }
        active++;
        for (const [p, sign] of pair) {
          const pix = i * h * w + Math.floor(p / ch);
          // A pair on two new pixels one short of the budget: only its first feature fits.
          if (!touched[pix] && pixelsChanged[i] >= maxPixels) continue;
          x[i * d + p] = sign > 0 ? 1 : 0;
          used[i * d + p] = 1;
          if (!touched[pix]) {
            touched[pix] = 1;
            pixelsChanged[i]++;
          }
        }
      }
      if (active === 0) break;
    }
    aimT.dispose();
    targetMask.dispose();
    const adversarial = tf.tensor4d(options.eightBit ? quantiseArray(x) : x, [n, h, w, ch]);
    return { adversarial, success: successFromPredictions(pred, y, explicit) };
  },
};

/** A feature index and the direction it moves in (+1: set to 1, −1: set to 0). */
type Move = [number, 1 | -1];

/**
 * The best feature pair for one image (offset `o` into the flat arrays), or null if < 2 remain.
 * A decrease is scored like an increase with the gradients' signs flipped.
 */
function bestPair(dt: Float32Array, da: Float32Array, used: Uint8Array, x: Float32Array, both: boolean, o: number, d: number, m: number): [Move, Move] | null {
  // Keep the top-m (feature, direction) moves by α − β in a small sorted list (m ≪ d).
  const idx: Move[] = [];
  const score: number[] = [];
  const consider = (p: number, sign: 1 | -1) => {
    const a = sign * dt[o + p],
      b = sign * (da[o + p] - dt[o + p]);
    const s = a - b;
    if (idx.length === m && s <= score[m - 1]) return;
    let j: number;
    if (idx.length < m) {
      idx.push([p, sign]);
      score.push(s);
      j = idx.length - 1;
    } else j = m - 1;
    while (j > 0 && score[j - 1] < s) {
      idx[j] = idx[j - 1];
      score[j] = score[j - 1];
      j--;
    }
    idx[j] = [p, sign];
    score[j] = s;
  };
  for (let p = 0; p < d; p++) {
    if (used[o + p]) continue;
    if (x[o + p] < 1) consider(p, 1);
    if (both && x[o + p] > 0) consider(p, -1);
  }
  if (idx.length < 2) return null;
  let best: [Move, Move] | null = null,
    bestScore = -Infinity;
  let fallback: [Move, Move] | null = null,
    fallbackScore = -Infinity;
  for (let u = 0; u < idx.length; u++) {
    const [p, sp] = idx[u];
    const ap = sp * dt[o + p],
      bp = sp * (da[o + p] - dt[o + p]);
    for (let v = u + 1; v < idx.length; v++) {
      const [q, sq] = idx[v];
      if (q === p) continue; // the same feature in both directions
      const a = ap + sq * dt[o + q],
        b = bp + sq * (da[o + q] - dt[o + q]);
      if (a > 0 && b < 0 && a * -b > bestScore) {
        bestScore = a * -b;
        best = [idx[u], idx[v]];
      }
      if (a - b > fallbackScore) {
        fallbackScore = a - b;
        fallback = [idx[u], idx[v]];
      }
    }
  }
  return best ?? fallback;
}
