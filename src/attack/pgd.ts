/**
 * PGD, L∞ (Madry et al. 2018): BIM from a uniformly random start inside the eps ball, with
 * optional restarts; per image the best (lowest-margin) restart is returned.
 */
import type { Attack } from './types';
import { intOption, labelArray, numberOption, requireEps, resolveTargets, seedOption, successOf } from './common';
import { pgdWithRestarts } from './iterative';

export const pgd: Attack = {
  name: 'pgd',
  title: 'PGD (L∞, random start, restarts)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'pgd');
    const steps = intOption(options, 'steps', 10, 1);
    const stepSize = numberOption(options, 'stepSize', 2.5 * eps / steps);
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'pgd');
    const adversarial = await pgdWithRestarts(model, images, labels, y, targets, {
      norm: 'linf', eps, steps, stepSize,
      randomStart: options.randomStart ?? true,
      restarts: intOption(options, 'restarts', 1, 1),
      seed: seedOption(options),
    });
    return { adversarial, success: await successOf(model, adversarial, y, targets) };
  },
};
