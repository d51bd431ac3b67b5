/**
 * A defended classifier = an (optional) input transform, the classifier behind it, and optionally
 * a detector. Two ways to attack it:
 *   plain     the attacker ignores the defense: FGSM / PGD against the undefended classifier
 *             (for distillation: the usual cross-entropy on the student, which its saturated
 *             softmax masks), and the adversarial images are then fed through the defense;
 *   adaptive  the attack is aimed through the defense: exact gradients through the autoencoder,
 *             BPDA (Athalye et al. 2018: forward through the transform, identity backward)
 *             through squeezing, median and JPEG, the logit margin for the distilled student
 *             (scale-free, so the temperature cannot hide the gradient), and for the detector
 *             the classifier loss plus the detector's "clean" log-probability (joint attack).
 */
import { tf, signExact, Tensor1D, Tensor2D, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { gradThroughModel } from '../inference/objective';
import { ceSum, marginTensor, projectLinf } from '../attack/common';
import { getAttack } from '../attack/registry';
import type { Detector } from './detector';

export interface DefendedModel {
  /** Command-line name, e.g. 'squeeze-bits'. */
  readonly name: string;
  readonly title: string;
  /** The classifier after the transform (the student for distillation). */
  readonly classifier: Classifier;
  /** What a defense-oblivious attacker attacks. */
  readonly plainTarget: Classifier;
  /** Input transform applied before classification (identity when absent). */
  transform?(x: Tensor4D): Promise<Tensor4D>;
  /** Differentiable version of the transform (autoencoder): adaptive attacks use exact gradients. */
  differentiableTransform?(x: Tensor4D): Tensor4D;
  /** Loss for the adaptive attack on the classifier: 'ce' (default) or the logit 'margin'. */
  readonly adaptiveLoss?: 'ce' | 'margin';
  readonly detector?: Detector;
}

/** Predicted classes after the defense's transform. */
export async function defendedPredict(d: DefendedModel, x: Tensor4D): Promise<Int32Array> {
  const t = d.transform ? await d.transform(x) : x;
  const z = await inferLogits(d.classifier, t);
  const p = tf.argMax(z, 1);
  const out = Int32Array.from(await p.data());
  tf.dispose([z, p]);
  if (t !== x) t.dispose();
  return out;
}

/** Gradient (ascent direction) of the adaptive objective w.r.t. the input. */
export async function adaptiveGradient(d: DefendedModel, x: Tensor4D, y: Tensor1D): Promise<Tensor4D> {
  // BPDA: evaluate the gradient at T(x) and use it for x (identity backward pass).
  const at = d.transform && !d.differentiableTransform ? await d.transform(x) : x;
  const objective = (xin: Tensor4D, _: Tensor4D, z: Tensor2D) => {
    let loss = (d.adaptiveLoss === 'margin' ? tf.neg(tf.sum(marginTensor(z, y, false))) : ceSum(z, y)) as tf.Scalar;
    if (d.detector) {
      // Joint attack: also push the detector towards "clean": maximise log(1 − p_adv) = −softplus(s).
      // (Not tf.logSigmoid: its custom gradient reads a tensor the forward pass has already freed.)
      const s = d.detector.scoreLogits(xin);
      loss = tf.sub(loss, tf.sum(tf.softplus(s))) as tf.Scalar;
    }
    return loss;
  };
  // The classifier's own part natively when it can (vjp), the transform and detector in tfjs.
  const transform = d.differentiableTransform ? (v: Tensor4D) => (d.differentiableTransform as (x: Tensor4D) => Tensor4D)(v) : null;
  const { grad: g, logits, input } = await gradThroughModel(d.classifier, at, transform, objective, 'tape');
  tf.dispose([logits, input]);
  if (at !== x) at.dispose();
  return g;
}

export interface DefenseAttackOptions {
  attack: 'fgsm' | 'pgd';
  eps: number;
  /** PGD iterations (default 10), step 2.5·eps/steps, random start. */
  steps?: number;
  adaptive: boolean;
  seed?: number;
}

/** Adversarial images against a defended model (plain or adaptive); caller disposes. */
export async function attackDefended(d: DefendedModel, x: Tensor4D, y: Tensor1D, o: DefenseAttackOptions): Promise<Tensor4D> {
  if (o.eps === 0) return x.clone();
  if (!o.adaptive) {
    const r = await getAttack(o.attack).run(d.plainTarget, x, y, { eps: o.eps, steps: o.steps ?? 10, seed: o.seed ?? 0 });
    return r.adversarial;
  }
  if (o.attack === 'fgsm') {
    const g = await adaptiveGradient(d, x, y);
    const adv = tf.tidy(() => projectLinf(tf.add(x, tf.mul(signExact(g), o.eps)), x, o.eps));
    g.dispose();
    return adv;
  }
  const steps = o.steps ?? 10;
  const step = (2.5 * o.eps) / steps;
  let adv = tf.tidy(() => projectLinf(tf.add(x, tf.randomUniform(x.shape, -o.eps, o.eps, 'float32', o.seed ?? 0)), x, o.eps));
  for (let k = 0; k < steps; k++) {
    const g = await adaptiveGradient(d, adv, y);
    const next = tf.tidy(() => projectLinf(tf.add(adv, tf.mul(signExact(g), step)), x, o.eps));
    g.dispose();
    adv.dispose();
    adv = next;
  }
  return adv;
}

/** The undefended model as a DefendedModel. */
export function undefended(clf: Classifier, name = 'none'): DefendedModel {
  return { name, title: 'no defense', classifier: clf, plainTarget: clf };
}
