/**
 * PGD, L2: steps along the L2-normalised gradient, projection onto the L2 ball of radius eps
 * (then [0, 1], which can only shrink the norm). eps is an L2 radius over all 3·s² values,
 * so useful values are much larger than L∞ ones (e.g. 0.5 rather than 8/255).
 */
import type { Attack } from './types';
import { intOption, labelArray, numberOption, requireEps, resolveTargets, seedOption, successOf } from './common';
import { pgdWithRestarts } from './iterative';

export const pgdL2: Attack = {
  name: 'pgd-l2',
  title: 'PGD (L2, random start, restarts)',
  norm: 'l2',
  usesEps: true,
  supportsTargeted: true,
  async run(model, images, labels, options) {
    const eps = requireEps(options, 'pgd-l2');
    const steps = intOption(options, 'steps', 10, 1);
    const stepSize = numberOption(options, 'stepSize', 2.5 * eps / steps);
    const y = labelArray(labels);
    const targets = resolveTargets(options, y.length, model.numClasses, 'pgd-l2');
    const adversarial = await pgdWithRestarts(model, images, labels, y, targets, {
      norm: 'l2', eps, steps, stepSize,
      randomStart: options.randomStart ?? true,
      restarts: intOption(options, 'restarts', 1, 1),
      seed: seedOption(options),
    });
    return { adversarial, success: await successOf(model, adversarial, y, targets) };
  },
};
