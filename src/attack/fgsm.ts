/**
 * FGSM (Goodfellow et al. 2015): one step of size eps along the sign of the loss gradient.
 * Targeted, it is the one-step target class method (Kurakin et al. 2017): a step *down* the
 * cross-entropy of the target class.
 */
import { tf, signExact } from '../inference/tf';
import type { Attack } from './types';
import { oneStepLinfAttack } from './common';

export const fgsm: Attack = oneStepLinfAttack('fgsm', 'FGSM (targeted: one-step target class method)', (g, eps) => tf.mul(signExact(g), eps));
