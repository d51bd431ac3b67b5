/**
 * MI-FGSM (Dong et al. 2018): I-FGSM whose step follows a decayed sum of L1-normalised
 * gradients; the momentum smooths the direction, which mostly helps transfer to other models.
 */
import { tf } from '../inference/tf';
import type { Attack } from './types';
import { intOption, labelArray, numberOption, requireEps, resolveTargets, successOf } from './common';
import { iterateAttack } from './iterative';

export const mifgsm: Attack = {
  name: 'mifgsm',
  title: 'MI-FGSM (momentum iterative FGSM)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'mifgsm');
    const steps = intOption(options, 'steps', 10, 1);
    // The paper's α = eps/steps: all steps together can just reach the boundary.
    const stepSize = numberOption(options, 'stepSize', eps / steps);
    const momentum = numberOption(options, 'momentum', 1.0);
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'mifgsm');
    const t = targets ? tf.tensor1d(targets, 'int32') : null;
    try {
      const adversarial = iterateAttack(model, images, labels, t, { norm: 'linf', eps, steps, stepSize, momentum });
      return { adversarial, success: await successOf(model, adversarial, y, targets) };
    } finally {
      t?.dispose();
    }
  },
};
