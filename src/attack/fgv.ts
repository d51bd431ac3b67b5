/**
 * Fast gradient value (Rozsa et al. 2016): like FGSM but steps along the raw gradient instead of
 * its sign. Normalisation: each image's gradient is scaled so its largest |component| equals
 * eps, so the step lies exactly on the L∞ budget (and is then clipped to [0, 1]); pixels with
 * small gradients move less than under FGSM.
 */
import { tf } from '../inference/tf';
import type { Attack } from './types';
import { ascentGradient, labelArray, projectLinf, requireEps, resolveTargets, successOf } from './common';

export const fgv: Attack = {
  name: 'fgv',
  title: 'Fast gradient value (gradient scaled to L∞ = eps)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'fgv');
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'fgv');
    const adversarial = tf.tidy(() => {
      const t = targets ? tf.tensor1d(targets, 'int32') : null;
      const g = ascentGradient(model, images, labels, t);
      const maxAbs = tf.maximum(tf.max(tf.abs(g), [1, 2, 3], true), 1e-20);
      return projectLinf(tf.add(images, tf.mul(g, tf.div(eps, maxAbs))), images, eps);
    });
    return { adversarial, success: await successOf(model, adversarial, y, targets) };
  },
};
