/**
 * The adversarial plan of a training step: a plain, serialisable "perturb this shard" recipe
 * (method, eps, share, steps, seed) and the synchronous code that applies it. It lives with the
 * training core because every data-parallel worker thread applies it to its own shard; the
 * recipes that decide the plan per batch (eps ramp, overfitting guard) are src/defense/adversarial.ts.
 */
import { tf, projectLinf, signExact, Tensor1D, Tensor4D } from './tf';
import type { Classifier } from './model';
import { AttackLoss, tfObjectiveGradient } from './objective';
import { tradesExamples } from './trades';

export const ADVERSARIAL_METHODS = ['fgsm', 'fgsm-rs', 'pgd', 'trades'] as const;
export type AdversarialMethod = (typeof ADVERSARIAL_METHODS)[number];

/**
 * What one batch (or one shard of it) gets: a plain, serialisable record, so data-parallel
 * training can send it to worker threads, each of which attacks its own shard.
 */
export interface AdversarialPlan {
  method: AdversarialMethod;
  eps: number;
  ratio: number;
  pgdSteps?: number;
  fgsmRsAlpha?: number;
  /** TRADES: weight of the KL term. */
  tradesBeta?: number;
  seed: number;
}

/** Decides the plan of each batch (ramped eps, guard fallback); the guard runs on the main thread. */
export type AdversarialPlanner = (clf: Classifier, epoch: number) => AdversarialPlan;

/**
 * The adversarial version of x (inside the eps ball, in [0, 1]) for one recipe. Synchronous and
 * tidy, so it can run inside the training step's tidy.
 */
export function adversarialExamples(
  clf: Classifier,
  x: Tensor4D,
  y: Tensor1D,
  method: AdversarialMethod,
  eps: number,
  o: { pgdSteps?: number; fgsmRsAlpha?: number; seed?: number; loss?: AttackLoss } = {},
): Tensor4D {
  return tf.tidy(() => {
    const grad = (xx: Tensor4D) => {
      const { grad: g, logits } = tfObjectiveGradient(clf, xx, y, null, o.loss ?? 'ce');
      logits.dispose();
      return g;
    };
    if (eps === 0) return x.clone();
    if (method === 'fgsm') return projectLinf(tf.add(x, tf.mul(signExact(grad(x)), eps)), x, eps);
    if (method === 'fgsm-rs') {
      const alpha = (o.fgsmRsAlpha ?? 1.25) * eps;
      const start = projectLinf(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', o.seed)), x, eps);
      return projectLinf(tf.add(start, tf.mul(signExact(grad(start)), alpha)), x, eps);
    }
    const steps = o.pgdSteps ?? 7;
    if (method === 'trades') return tradesExamples(clf, x, eps, steps, o.seed ?? 1);
    const step = (2.5 * eps) / steps;
    let adv = projectLinf(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', o.seed)), x, eps);
    for (let k = 0; k < steps; k++) {
      const next = projectLinf(tf.add(adv, tf.mul(signExact(grad(adv)), step)), x, eps);
      adv.dispose();
      adv = next;
    }
    return adv;
  });
}

/** The first ⌈ratio·n⌉ images of x (already shuffled) replaced by their adversarial versions. */
export function applyAdversarialPlan(clf: Classifier, x: Tensor4D, y: Tensor1D, p: AdversarialPlan): Tensor4D {
  const n = x.shape[0];
  const m = Math.min(n, Math.ceil(p.ratio * n));
  return tf.tidy(() => {
    if (m === 0) return x.clone();
    const xa = x.slice([0, 0, 0, 0], [m, -1, -1, -1]) as Tensor4D;
    const ya = y.slice([0], [m]) as Tensor1D;
    const adv = adversarialExamples(clf, xa, ya, p.method, p.eps, { pgdSteps: p.pgdSteps, fgsmRsAlpha: p.fgsmRsAlpha, seed: p.seed });
    if (m === n) return adv;
    return tf.concat([adv, x.slice([m, 0, 0, 0], [n - m, -1, -1, -1])], 0) as Tensor4D;
  });
}
