/**
 * TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
 * accuracy"): minimise CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' the point of the eps ball that
 * maximises that KL divergence (PGD on the KL from x + 0.001·N(0, 1)). Unlike mixing clean and
 * PGD images, every image contributes both terms: the clean term keeps accuracy, the KL term makes
 * the prediction flat over the ball, and β sets the trade-off (6 in the paper).
 */
import { tf, projectLinf, signExact, Tensor1D, Tensor2D, Tensor4D } from './tf';
import type { Classifier } from './model';

/** KL(p ‖ softmax(z)) per row, with p given as probabilities (rows summing to 1). */
function klFromProbabilities(p: Tensor2D, z: Tensor2D): tf.Tensor1D {
  return tf.sum(tf.mul(p, tf.sub(tf.log(tf.add(p, 1e-12)), tf.logSoftmax(z))), 1) as tf.Tensor1D;
}

/**
 * The TRADES inner maximisation: `steps` signed steps of 2.5·eps/steps on KL(f(x) ‖ f(x')),
 * in inference mode (no dropout), from x plus a small Gaussian. Synchronous and tidy.
 */
export function tradesExamples(clf: Classifier, x: Tensor4D, eps: number, steps: number, seed: number): Tensor4D {
  return tf.tidy(() => {
    const p = tf.softmax(clf.logits(x));
    const klGrad = tf.grad((xa: tf.Tensor) => tf.sum(klFromProbabilities(p, clf.logits(xa as Tensor4D))));
    const step = (2.5 * eps) / steps;
    let adv = projectLinf(tf.add(x, tf.mul(tf.randomNormal(x.shape, 0, 1, 'float32', seed), 0.001)) as Tensor4D, x, eps);
    for (let k = 0; k < steps; k++) {
      const next = projectLinf(tf.add(adv, tf.mul(signExact(klGrad(adv) as Tensor4D), step)) as Tensor4D, x, eps);
      adv.dispose();
      adv = next;
    }
    return adv;
  });
}

/**
 * The TRADES loss on a batch: mean CE of the clean logits plus β times the mean KL between the
 * clean and the adversarial predictions, differentiable through both (as in the paper's code).
 */
export function tradesLoss(cleanLogits: Tensor2D, advLogits: Tensor2D, y: Tensor1D, numClasses: number, beta: number): tf.Scalar {
  return tf.tidy(() => {
    const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(y, numClasses), cleanLogits);
    const kl = tf.mean(klFromProbabilities(tf.softmax(cleanLogits), advLogits));
    return tf.add(ce, tf.mul(kl, beta)) as tf.Scalar;
  });
}
