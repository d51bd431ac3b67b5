/**
 * Szegedy et al. (2014) box-constrained attack: minimise  c·‖r‖² + CE_target(x + r)  subject to
 * x + r ∈ [0, 1], searching for the largest c (smallest perturbation) that still reaches the
 * target.
 *
 * Not true L-BFGS-B: the inner problem is solved by projected Adam (a step on r, then x + r is
 * clipped to the box). On these small CNNs it reaches the same kind of minimum in a fixed,
 * batchable number of steps, while L-BFGS would need per-image line searches and history.
 * The outer search on c is per image: success → raise c (try a smaller r), failure → lower it.
 *
 * It is targeted by nature; untargeted, it aims at the runner-up class (`targetMode: 'random'`
 * for a random other class) and counts any misclassification as success. Minimal-perturbation:
 * eps is not used.
 */
import { tf, Tensor1D, Tensor4D } from '../inference/tf';
import { inferLogits } from '../inference/model';
import { gradThroughModel } from '../inference/objective';
import type { Attack, LbfgsAttackOptions } from './types';
import {
  adamUpdate,
  argmaxRows,
  bisectConstants,
  fallbackTargets,
  intOption,
  labelArray,
  numberOption,
  rejectStepSize,
  resolveTargets,
  seedOption,
  selectRows,
  stringOption,
  successFromPredictions,
  lossOption,
} from './common';
import { quantiseTensor } from './written';

export const lbfgs: Attack = {
  name: 'lbfgs',
  title: 'Szegedy box-constrained attack (projected Adam in place of L-BFGS-B)',
  norm: 'l2',
  usesEps: false,
  supportsTargeted: true,
  takesLoss: false,
  extraOptions: ['learningRate', 'initialConst', 'searchSteps', 'targetMode'] satisfies (keyof LbfgsAttackOptions)[],
  async run(model, images, labels, options: LbfgsAttackOptions) {
    lossOption(options, lbfgs);
    rejectStepSize(options, 'lbfgs');
    const steps = intOption(options, 'steps', 50, 1);
    const searchSteps = intOption(options, 'searchSteps', 4, 1);
    const lr = numberOption(options, 'learningRate', 0.01);
    const c0 = numberOption(options, 'initialConst', 1);
    const y = labelArray(labels);
    const n = y.length,
      k = model.numClasses;
    const explicit = resolveTargets(options, n, k, 'lbfgs');
    const aim =
      explicit ?? (await fallbackTargets(model, images, y, stringOption(options, 'targetMode', ['second', 'random'] as const, 'second'), seedOption(options)));
    const aimT = tf.tensor1d(aim, 'int32');
    const oneHot = tf.oneHot(aimT, k);
    const c = new Float32Array(n).fill(c0);
    const lower = new Float32Array(n);
    const upper = new Float32Array(n).fill(Infinity);
    let bestAdv: Tensor4D = images.clone();
    let bestL2: Tensor1D = tf.fill([n], Infinity) as Tensor1D;
    const b1 = 0.9,
      b2 = 0.999;
    try {
      for (let bs = 0; bs < searchSteps; bs++) {
        const cT = tf.tensor1d(c);
        let r: Tensor4D = tf.zerosLike(images);
        let m: Tensor4D = tf.zerosLike(images);
        let v: Tensor4D = tf.zerosLike(images);
        let found: Tensor1D = tf.zeros([n], 'bool') as Tensor1D;
        for (let s = 1; s <= steps; s++) {
          const objective = (rr: Tensor4D, a: Tensor4D, z: tf.Tensor2D) => {
            const ce = tf.losses.softmaxCrossEntropy(oneHot, z, undefined, undefined, tf.Reduction.NONE);
            return tf.sum(tf.add(tf.mul(cT, tf.sum(tf.square(rr), [1, 2, 3])), ce)) as tf.Scalar;
          };
          const { grad: g, logits, input: a } = await gradThroughModel(model, r, (rr) => tf.add(images, rr) as Tensor4D, objective);
          // Written as 8 bits: judge and keep the rounded image (its own logits and distance).
          const kept = options.eightBit ? quantiseTensor(a) : a;
          const keptLogits = options.eightBit ? await inferLogits(model, kept) : logits;
          const next = tf.tidy(() => {
            const pred = tf.argMax(keptLogits, 1);
            const ok = explicit ? tf.equal(pred, aimT) : tf.notEqual(pred, tf.tensor1d(y, 'int32'));
            const l2 = tf.sqrt(tf.sum(tf.square(tf.sub(kept, images)), [1, 2, 3])) as Tensor1D;
            const improve = tf.logicalAnd(ok, tf.less(l2, bestL2));
            const adv2 = selectRows(improve, kept, bestAdv);
            const l22 = tf.where(improve, l2, bestL2) as Tensor1D;
            const { m: m2, v: v2, step } = adamUpdate(g, m, v, s, b1, b2);
            // Projection onto the box: keep x + r inside [0, 1].
            const r2 = tf.sub(tf.clipByValue(tf.sub(a, tf.mul(step, lr)), 0, 1), images) as Tensor4D;
            return { adv2, l22, m2, v2, r2, found2: tf.logicalOr(found, ok) as Tensor1D };
          });
          tf.dispose([g, logits, a, kept, keptLogits]);
          for (const t of [bestAdv, bestL2, m, v, r, found]) t.dispose();
          ({ adv2: bestAdv, l22: bestL2, m2: m, v2: v, r2: r, found2: found } = next);
        }
        const ok = (await found.data()) as Uint8Array;
        for (const t of [cT, r, m, v, found]) t.dispose();
        bisectConstants(c, lower, upper, (i) => ok[i] !== 0);
      }
      const adversarial = tf.tidy(() => tf.clipByValue(bestAdv, 0, 1) as Tensor4D);
      const z = await inferLogits(model, adversarial);
      const pred = argmaxRows((await z.data()) as Float32Array, n, k);
      z.dispose();
      return { adversarial, success: successFromPredictions(pred, y, explicit) };
    } finally {
      for (const t of [aimT, oneHot, bestAdv, bestL2]) t.dispose();
    }
  },
};
