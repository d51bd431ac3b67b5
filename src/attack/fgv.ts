/**
 * Fast gradient value (Rozsa et al. 2016): like FGSM but steps along the raw gradient instead of
 * its sign. Normalisation: each image's gradient is scaled so its largest |component| equals
 * eps, so the step lies exactly on the L∞ budget (and is then clipped to [0, 1]); pixels with
 * small gradients move less than under FGSM.
 */
import { tf } from '../inference/tf';
import type { Attack } from './types';
import { oneStepLinfAttack } from './common';

export const fgv: Attack = oneStepLinfAttack('fgv', 'Fast gradient value (gradient scaled to L∞ = eps)', (g, eps) => {
  const maxAbs = tf.maximum(tf.max(tf.abs(g), [1, 2, 3], true), 1e-20);
  return tf.mul(g, tf.div(eps, maxAbs));
});
