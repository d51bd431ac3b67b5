/**
 * DeepFool, L2, multi-class (Moosavi-Dezfooli et al. 2016). Each iteration linearises the
 * logit differences f_k − f_y around the current point and takes the smallest step that
 * crosses the nearest linearised boundary; the accumulated step is scaled by (1 + overshoot)
 * so the point lands just past the boundary. Minimal-perturbation: eps is not used.
 *
 * Candidate classes are the top `candidates` classes by clean logits (as in the paper's code):
 * one backward pass per candidate per iteration instead of one per class.
 */
import { tf, Tensor1D, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { vjp } from '../inference/objective';
import type { Attack, DeepFoolAttackOptions } from './types';
import { argmaxRows, intOption, labelArray, numberOption, rejectTargeted, selectRows, lossOption } from './common';
import { quantiseTensor } from './written';

export interface DeepFoolOptions {
  steps: number;
  overshoot: number;
  candidates: number;
  /** Iterate on the image rounded to 8 bits, so the result still fools once written (see written.ts). */
  eightBit?: boolean;
}

/** The DeepFool loop proper; returns the adversarial batch and per-image success. */
export async function deepfoolBatch(
  model: Classifier,
  x: Tensor4D,
  y: Int32Array,
  o: DeepFoolOptions,
): Promise<{ adversarial: Tensor4D; success: Uint8Array }> {
  const n = y.length,
    k = model.numClasses;
  const nc = Math.max(1, Math.min(o.candidates, k) - 1);
  // Candidate classes per image: the highest clean logits other than the label.
  const z0t = await inferLogits(model, x);
  const z0 = (await z0t.data()) as Float32Array;
  z0t.dispose();
  const cand: Int32Array[] = Array.from({ length: nc }, () => new Int32Array(n));
  for (let i = 0; i < n; i++) {
    const order = Array.from({ length: k }, (_, j) => j)
      .filter((j) => j !== y[i])
      .sort((a, b) => z0[i * k + b] - z0[i * k + a]);
    for (let c = 0; c < nc; c++) cand[c][i] = order[c];
  }
  const yT = tf.tensor1d(y, 'int32');
  const candT = cand.map((c) => tf.tensor1d(c, 'int32'));
  let rTot: Tensor4D = tf.zerosLike(x);
  let adv: Tensor4D = x.clone();
  const success = new Uint8Array(n);
  try {
    for (let it = 0; it <= o.steps; it++) {
      // ∇(f_c − f_y) = Jᵀ(e_c − e_y) per candidate, one vjp each at the current point; the first
      // also gives the logits that decide whether to go on.
      const gradAt = async (c: Tensor1D, logits: 'plain' | 'tape') => {
        const cot = tf.tidy(() => tf.cast(tf.sub(tf.oneHot(c, k), tf.oneHot(yT, k)), 'float32') as tf.Tensor2D);
        try {
          return await vjp(model, adv, cot, logits);
        } finally {
          cot.dispose();
        }
      };
      const first = await gradAt(candT[0], 'plain');
      const z = first.logits;
      const grads: Tensor4D[] = [first.grad];
      const pred = argmaxRows((await z.data()) as Float32Array, n, k);
      let anyActive = false;
      const active = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        success[i] = pred[i] !== y[i] ? 1 : 0;
        active[i] = success[i] ? 0 : 1;
        anyActive ||= !success[i];
      }
      if (!anyActive || it === o.steps) {
        tf.dispose([z, ...grads]);
        break;
      }
      for (const c of candT.slice(1)) {
        const r = await gradAt(c, 'tape');
        r.logits.dispose();
        grads.push(r.grad);
      }
      const next = tf.tidy(() => {
        // The linearisation point is the current adversarial (with overshoot), as in Foolbox.
        let bestDist: Tensor1D | null = null;
        let bestW: Tensor4D | null = null;
        let bestF: Tensor1D | null = null;
        candT.forEach((c, j) => {
          // f_c − f_y and its gradient for every image at once (images do not interact).
          const f = tf.sub(tf.sum(tf.mul(z, tf.oneHot(c, k)), 1), tf.sum(tf.mul(z, tf.oneHot(yT, k)), 1)) as Tensor1D;
          const w = grads[j];
          const wn = tf.sqrt(tf.sum(tf.square(w), [1, 2, 3])) as Tensor1D;
          const dist = tf.div(tf.abs(f), tf.add(wn, 1e-8)) as Tensor1D;
          if (!bestDist || !bestW || !bestF) {
            bestDist = dist;
            bestW = w;
            bestF = f;
          } else {
            const closer = tf.less(dist, bestDist);
            bestDist = tf.where(closer, dist, bestDist) as Tensor1D;
            bestW = selectRows(closer, w, bestW);
            bestF = tf.where(closer, f, bestF) as Tensor1D;
          }
        });
        const w = bestW as unknown as Tensor4D;
        const wn2 = tf.add(tf.sum(tf.square(w), [1, 2, 3]), 1e-8);
        // r = (|f| + 1e-4) / ‖w‖² · w, only for images still classified correctly.
        const coef = tf.mul(tf.div(tf.add(tf.abs(bestF as unknown as Tensor1D), 1e-4), wn2), tf.tensor1d(active));
        const r = tf.mul(w, tf.reshape(coef, [n, 1, 1, 1]));
        const total = tf.add(rTot, r) as Tensor4D;
        const a = tf.clipByValue(tf.add(x, tf.mul(total, 1 + o.overshoot)), 0, 1) as Tensor4D;
        // Rounded, the point is checked and linearised as written; steps too small to survive
        // rounding accumulate in `total` until they do.
        return { total, a: o.eightBit ? quantiseTensor(a) : a };
      });
      tf.dispose([z, ...grads]);
      rTot.dispose();
      adv.dispose();
      rTot = next.total;
      adv = next.a;
    }
    return { adversarial: adv, success };
  } catch (e) {
    adv.dispose();
    throw e;
  } finally {
    rTot.dispose();
    yT.dispose();
    candT.forEach((t) => t.dispose());
  }
}

export const deepfool: Attack = {
  name: 'deepfool',
  title: 'DeepFool (L2, multi-class)',
  norm: 'l2',
  usesEps: false,
  supportsTargeted: false,
  takesLoss: false,
  extraOptions: ['overshoot', 'candidates'] satisfies (keyof DeepFoolAttackOptions)[],
  async run(model, images, labels, options: DeepFoolAttackOptions) {
    lossOption(options, deepfool);
    rejectTargeted(options, 'deepfool');
    return deepfoolBatch(model, images, labelArray(labels), {
      steps: intOption(options, 'steps', 50, 1),
      overshoot: numberOption(options, 'overshoot', 0.02),
      candidates: intOption(options, 'candidates', 10, 2),
      eightBit: options.eightBit === true,
    });
  },
};
