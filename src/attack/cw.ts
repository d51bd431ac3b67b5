/**
 * Carlini–Wagner L2 (2017). Optimises w with x' = (tanh(w) + 1) / 2, so x' is in [0, 1] by
 * construction (no clipping to fight the optimiser), minimising
 *   ‖x' − x‖² + c · max(margin(x'), −κ)
 * with Adam, where margin is the logit margin (see marginTensor) and κ the confidence.
 * A per-image binary search on c finds the smallest weight that still succeeds; the smallest
 * successful perturbation seen anywhere in the search is returned. Minimal-perturbation:
 * eps is not used.
 *
 * Defaults are far cheaper than the paper's (9 × 10 000 steps) so a sweep stays practical;
 * raise `binarySteps`/`steps` for tighter perturbations.
 */
import { tf, Tensor1D, Tensor4D } from '../inference/tf';
import { gradThroughModel } from '../inference/objective';
import { inferLogits } from '../inference/model';
import type { Attack, CwAttackOptions } from './types';
import {
  adamUpdate,
  bisectConstants,
  intOption,
  labelArray,
  marginTensor,
  numberOption,
  rejectStepSize,
  resolveTargets,
  selectRows,
  successOf,
  lossOption,
} from './common';
import { quantiseTensor } from './written';

export const cw: Attack = {
  name: 'cw',
  title: 'Carlini–Wagner L2',
  norm: 'l2',
  usesEps: false,
  supportsTargeted: true,
  takesLoss: false,
  extraOptions: ['learningRate', 'confidence', 'initialConst', 'binarySteps'] satisfies (keyof CwAttackOptions)[],
  async run(model, images, labels, options: CwAttackOptions) {
    lossOption(options, cw);
    rejectStepSize(options, 'cw');
    const steps = intOption(options, 'steps', 100, 1);
    const binarySteps = intOption(options, 'binarySteps', 5, 1);
    const lr = numberOption(options, 'learningRate', 0.01);
    const kappa = numberOption(options, 'confidence', 0);
    const c0 = numberOption(options, 'initialConst', 1);
    const y = labelArray(labels);
    const n = y.length;
    const targets = resolveTargets(options, n, model.numClasses, 'cw');
    const targeted = targets != null;
    const cls = tf.tensor1d(targets ?? y, 'int32');
    // Start the search in tanh space at the clean image (shrunk slightly so atanh stays finite).
    const w0 = tf.tidy(() => tf.atanh(tf.mul(tf.sub(tf.mul(images, 2), 1), 1 - 1e-6)) as Tensor4D);
    const c = new Float32Array(n).fill(c0);
    const lower = new Float32Array(n);
    const upper = new Float32Array(n).fill(Infinity);
    let bestAdv: Tensor4D = images.clone();
    let bestL2: Tensor1D = tf.fill([n], Infinity) as Tensor1D;
    const b1 = 0.9,
      b2 = 0.999;
    try {
      for (let bs = 0; bs < binarySteps; bs++) {
        const cT = tf.tensor1d(c);
        let w = w0.clone();
        let m: Tensor4D = tf.zerosLike(w0);
        let v: Tensor4D = tf.zerosLike(w0);
        let found: Tensor1D = tf.zeros([n], 'bool') as Tensor1D;
        for (let s = 1; s <= steps; s++) {
          const toImage = (ww: Tensor4D): Tensor4D => tf.div(tf.add(tf.tanh(ww), 1), 2) as Tensor4D;
          const objective = (_: Tensor4D, a: Tensor4D, z: tf.Tensor2D) => {
            const dist = tf.sum(tf.square(tf.sub(a, images)), [1, 2, 3]);
            const f = tf.maximum(marginTensor(z, cls, targeted), -kappa);
            return tf.sum(tf.add(dist, tf.mul(cT, f))) as tf.Scalar;
          };
          const { grad: g, logits: zFloat, input: aFloat } = await gradThroughModel(model, w, toImage, objective);
          // Written as 8 bits: judge (and keep) the rounded image, on its own logits.
          const a = options.eightBit ? quantiseTensor(aFloat) : aFloat;
          const logits = options.eightBit ? await inferLogits(model, a) : zFloat;
          const next = tf.tidy(() => {
            // Bookkeeping on the point the gradient was taken at: is it adversarial, and closer?
            const l2 = tf.sqrt(tf.sum(tf.square(tf.sub(a, images)), [1, 2, 3])) as Tensor1D;
            const margin = marginTensor(logits, cls, targeted);
            const ok = tf.logicalAnd(tf.less(margin, 0), tf.lessEqual(margin, -kappa));
            const improve = tf.logicalAnd(ok, tf.less(l2, bestL2));
            const adv2 = selectRows(improve, a, bestAdv);
            const l22 = tf.where(improve, l2, bestL2) as Tensor1D;
            // Adam by hand so every image keeps its own state.
            const { m: m2, v: v2, step } = adamUpdate(g, m, v, s, b1, b2);
            const w2 = tf.sub(w, tf.mul(step, lr)) as Tensor4D;
            return { adv2, l22, m2, v2, w2, found2: tf.logicalOr(found, ok) as Tensor1D };
          });
          tf.dispose([g, zFloat, aFloat, logits, a]);
          for (const t of [bestAdv, bestL2, m, v, w, found]) t.dispose();
          ({ adv2: bestAdv, l22: bestL2, m2: m, v2: v, w2: w, found2: found } = next);
        }
        const ok = (await found.data()) as Uint8Array;
        for (const t of [cT, w, m, v, found]) t.dispose();
        bisectConstants(c, lower, upper, (i) => ok[i] === 0);
      }
      const adversarial = tf.tidy(() => tf.clipByValue(bestAdv, 0, 1) as Tensor4D);
      return { adversarial, success: await successOf(model, adversarial, y, targets) };
    } finally {
      for (const t of [cls, w0, bestAdv, bestL2]) t.dispose();
    }
  },
};
