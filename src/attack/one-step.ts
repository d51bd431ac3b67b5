/**
 * The one-step L∞ attacks: FGSM and FGV, made by one factory (the clean image plus one step,
 * clipped to the eps ball and [0, 1]).
 */
import { tf, projectLinf, signExact, Tensor2D, Tensor4D } from '../inference/tf';
import type { Attack } from './types';
import { epsAttack } from './common';
import { inputGradient } from './loss';

/**
 * A one-step L∞ attack: the clean images plus `step(gradient, eps)`, clipped to the eps ball and
 * [0, 1]. The step is taken up the loss (or, targeted, down the target class's loss). `signStep`:
 * the step is eps·sign(gradient), which a native engine takes in the same call as the gradient,
 * and the logits of the result with it (model.linfStep).
 */
export function oneStepLinfAttack(name: string, title: string, step: (g: Tensor4D, eps: number) => tf.Tensor, signStep = false): Attack {
  return epsAttack(
    name,
    title,
    'linf',
    async ({ model, images, labels, targets, eps, loss }) => {
      const t = targets ? tf.tensor1d(targets, 'int32') : null;
      if (signStep && model.linfStep) {
        try {
          const r = await model.linfStep(images, { clean: images, labels, targets: t, loss, eps, step: eps, logits: true });
          return { adversarial: r.adv, logits: r.logits as Tensor2D };
        } finally {
          t?.dispose();
        }
      }
      const g = await inputGradient(model, images, labels, t, loss);
      t?.dispose();
      const adv = tf.tidy(() => projectLinf(tf.add(images, step(g, eps)) as Tensor4D, images, eps));
      g.dispose();
      return adv;
    },
    () => ({ steps: 1 }),
  );
}

/**
 * FGSM (Goodfellow et al. 2015): one step of size eps along the sign of the loss gradient.
 * Targeted, it is the one-step target class method (Kurakin et al. 2017): a step *down* the
 * cross-entropy of the target class.
 */
export const fgsm: Attack = oneStepLinfAttack('fgsm', 'FGSM (fast gradient sign method)', (g, eps) => tf.mul(signExact(g), eps), true);

/**
 * Fast gradient value (Rozsa et al. 2016): like FGSM but steps along the raw gradient instead of
 * its sign. Normalisation: each image's gradient is scaled so its largest |component| equals
 * eps, so the step lies exactly on the L∞ budget (and is then clipped to [0, 1]); pixels with
 * small gradients move less than under FGSM.
 */
export const fgv: Attack = oneStepLinfAttack('fgv', 'Fast gradient value (gradient scaled to L∞ = eps)', (g, eps) => {
  const maxAbs = tf.maximum(tf.max(tf.abs(g), [1, 2, 3], true), 1e-20);
  return tf.mul(g, tf.div(eps, maxAbs));
});
