/**
 * BIM / I-FGSM (Kurakin et al. 2017): repeated FGSM steps of size `stepSize`, clipped back into
 * the eps ball and [0, 1] after every step. No random start (that is PGD).
 */
import { tf } from '../inference/tf';
import type { Attack } from './types';
import { intOption, labelArray, numberOption, requireEps, resolveTargets, successOf } from './common';
import { iterateAttack } from './iterative';

export const bim: Attack = {
  name: 'bim',
  title: 'BIM / I-FGSM',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'bim');
    const steps = intOption(options, 'steps', 10, 1);
    // Madry et al.'s 2.5·eps/steps lets a step sequence reach the boundary with slack to turn.
    const stepSize = numberOption(options, 'stepSize', 2.5 * eps / steps);
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'bim');
    const t = targets ? tf.tensor1d(targets, 'int32') : null;
    try {
      const adversarial = iterateAttack(model, images, labels, t, { norm: 'linf', eps, steps, stepSize });
      return { adversarial, success: await successOf(model, adversarial, y, targets) };
    } finally {
      t?.dispose();
    }
  },
};
