/**
 * FGSM (Goodfellow et al. 2015): one step of size eps along the sign of the loss gradient.
 * Targeted, it is the one-step target class method (Kurakin et al. 2017): a step *down* the
 * cross-entropy of the target class.
 */
import { tf } from '../inference/tf';
import type { Attack } from './types';
import { ascentGradient, labelArray, projectLinf, requireEps, resolveTargets, successOf } from './common';

export const fgsm: Attack = {
  name: 'fgsm',
  title: 'FGSM (targeted: one-step target class method)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'fgsm');
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'fgsm');
    const adversarial = tf.tidy(() => {
      const t = targets ? tf.tensor1d(targets, 'int32') : null;
      const g = ascentGradient(model, images, labels, t);
      return projectLinf(tf.add(images, tf.mul(tf.sign(g), eps)), images, eps);
    });
    return { adversarial, success: await successOf(model, adversarial, y, targets) };
  },
};
