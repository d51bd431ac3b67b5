/**
 * Fooling images (Nguyen et al. 2015, gradient version): start from uniform noise and climb the
 * target class's log-softmax, Z_t − logsumexp(Z), computed from the logits, with signed steps
 * clipped to [0, 1], until softmax(target) ≥ `threshold` (default 0.99). Images that reach it
 * stop moving. The result is unrecognisable to people yet classified with high confidence.
 *
 * As an Attack it ignores the content of the input images (only their shape is used): each
 * output is a fooling image for the target (untargeted: a random class other than the label).
 * It has no norm budget relative to the input. Untargeted, the target is the input's runner-up
 * class (a class the model has learnt, unlike a random one on a partly trained model).
 */
import { tf, signExact, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import { vjp } from '../inference/objective';
import type { Attack, FoolingAttackOptions } from './types';
import { fallbackTargets, intOption, labelArray, numberOption, resolveTargets, seedOption, lossOption } from './common';

export interface FoolingOptions {
  /** Stop when the target's softmax reaches this (default 0.99). */
  threshold?: number;
  /** Maximum ascent steps (default 300). */
  steps?: number;
  /** Signed step size (default 0.01). */
  stepSize?: number;
  seed?: number;
}

export interface FoolingResult {
  /** [n, s, s, 3] in [0, 1]; caller disposes. */
  images: Tensor4D;
  /** Softmax probability of the target class per image. */
  confidence: Float32Array;
  /** 1 where confidence ≥ threshold and the target is the top class. */
  success: Uint8Array;
  /** Steps each image took. */
  steps: Int32Array;
}

export async function makeFoolingImages(model: Classifier, targetClasses: ArrayLike<number>, opts: FoolingOptions = {}): Promise<FoolingResult> {
  const threshold = opts.threshold ?? 0.99;
  const maxSteps = opts.steps ?? 300;
  const stepSize = opts.stepSize ?? 0.01;
  const n = targetClasses.length,
    s = model.inputSize,
    k = model.numClasses;
  const t = Int32Array.from(targetClasses);
  for (const c of t) if (!Number.isInteger(c) || c < 0 || c >= k) throw new UserError(`fooling: target class ${c} is outside 0..${k - 1}`);
  const tT = tf.tensor1d(t, 'int32');
  const oh = tf.oneHot(tT, k);
  let x: Tensor4D = tf.randomUniform([n, s, s, 3], 0, 1, 'float32', opts.seed ?? 0);
  const confidence = new Float32Array(n);
  const stepsTaken = new Int32Array(n);
  const success = new Uint8Array(n);
  try {
    // Σ log softmax(z)_t, written with logits so it does not saturate like softmax does.
    const ascent = (z: tf.Tensor2D) => tf.grad((q) => tf.sum(tf.mul(tf.sub(q, tf.logSumExp(q, 1, true)), oh)))(z) as tf.Tensor2D;
    for (let step = 0; ; step++) {
      // The gradient comes with the logits that decide which images still move (the last is unused).
      const { logits, grad: g } = await vjp(model, x, ascent);
      const probs = tf.tidy(() => tf.softmax(logits));
      const p = (await probs.data()) as Float32Array;
      tf.dispose([probs, logits]);
      const moving = new Float32Array(n);
      let anyMoving = false;
      for (let i = 0; i < n; i++) {
        confidence[i] = p[i * k + t[i]];
        let top = true;
        for (let j = 0; j < k; j++) if (p[i * k + j] > confidence[i]) top = false;
        success[i] = confidence[i] >= threshold && top ? 1 : 0;
        if (!success[i] && step < maxSteps) {
          moving[i] = 1;
          anyMoving = true;
          stepsTaken[i] = step + 1;
        }
      }
      if (!anyMoving) {
        g.dispose();
        break;
      }
      const next = tf.tidy(() => {
        const upd = tf.mul(signExact(g), tf.reshape(tf.mul(tf.tensor1d(moving), stepSize), [n, 1, 1, 1]));
        return tf.clipByValue(tf.add(x, upd), 0, 1) as Tensor4D;
      });
      g.dispose();
      x.dispose();
      x = next;
    }
    return { images: x, confidence, success, steps: stepsTaken };
  } catch (e) {
    x.dispose();
    throw e;
  } finally {
    tT.dispose();
    oh.dispose();
  }
}

export const fooling: Attack = {
  name: 'fooling',
  title: 'Fooling images (gradient ascent from noise)',
  norm: 'linf',
  usesEps: false,
  supportsTargeted: true,
  takesLoss: false,
  extraOptions: ['threshold'] satisfies (keyof FoolingAttackOptions)[],
  async run(model, images, labels, options: FoolingAttackOptions) {
    lossOption(options, fooling);
    const y = labelArray(labels);
    const n = y.length;
    const explicit = resolveTargets(options, n, model.numClasses, 'fooling');
    const t = explicit ?? (await fallbackTargets(model, images, y, 'second', seedOption(options)));
    const r = await makeFoolingImages(model, t, {
      threshold: numberOption(options, 'threshold', 0.99),
      steps: intOption(options, 'steps', 300, 0),
      stepSize: numberOption(options, 'stepSize', 0.01),
      seed: seedOption(options),
    });
    return { adversarial: r.images, success: r.success };
  },
};
