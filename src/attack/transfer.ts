/**
 * Transfer (black-box) attacks: craft adversarial examples with white-box access to a surrogate
 * ("source") model, then test them on a target model that was never queried while crafting.
 */
import { Tensor1D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import type { Attack, AnyAttackOptions } from './types';
import { labelArray, predictBatch, resolveTargets, successFromPredictions } from './common';
import { getAttack } from './registry';

export interface TransferResult {
  /** Success rate on the source, over images the source classifies correctly (untargeted) or all images (targeted). */
  successOnSource: number;
  /** Success rate on the target, over images the target classifies correctly (untargeted) or all images (targeted). */
  successOnTarget: number;
  /** Per image: the adversarial examples' success on each model. */
  sourceSuccess: Uint8Array;
  targetSuccess: Uint8Array;
  /** Images counted in each rate. */
  sourceCount: number;
  targetCount: number;
}

function rate(success: Uint8Array, counted: Uint8Array): { rate: number; count: number } {
  let hit = 0,
    count = 0;
  for (let i = 0; i < success.length; i++)
    if (counted[i]) {
      count++;
      hit += success[i];
    }
  return { rate: count ? hit / count : 0, count };
}

export async function transferAttack(
  source: Classifier,
  target: Classifier,
  images: Tensor4D,
  labels: Tensor1D,
  attack: Attack | string,
  opts: AnyAttackOptions,
): Promise<TransferResult> {
  const a = typeof attack === 'string' ? getAttack(attack) : attack;
  const y = labelArray(labels);
  const targets = resolveTargets(opts, y.length, target.numClasses, a.name);
  const r = await a.run(source, images, labels, opts);
  try {
    const [srcClean, tgtClean, srcAdv, tgtAdv] = [
      await predictBatch(source, images),
      await predictBatch(target, images),
      await predictBatch(source, r.adversarial),
      await predictBatch(target, r.adversarial),
    ];
    const sourceSuccess = successFromPredictions(srcAdv, y, targets);
    const targetSuccess = successFromPredictions(tgtAdv, y, targets);
    // Untargeted, an image the model already gets wrong says nothing about the attack.
    const counted = (clean: Int32Array) => Uint8Array.from(clean, (p, i) => (targets || p === y[i] ? 1 : 0));
    const s = rate(sourceSuccess, counted(srcClean));
    const t = rate(targetSuccess, counted(tgtClean));
    return {
      successOnSource: s.rate,
      successOnTarget: t.rate,
      sourceSuccess,
      targetSuccess,
      sourceCount: s.count,
      targetCount: t.count,
    };
  } finally {
    r.adversarial.dispose();
  }
}

/** An Attack that crafts on `surrogate` with `inner` and reports success on the model it is given. */
export function makeTransferAttack(surrogate: Classifier, inner: Attack): Attack {
  return {
    name: `transfer-${inner.name}`,
    title: `${inner.title}, transferred from a surrogate model`,
    norm: inner.norm,
    usesEps: inner.usesEps,
    supportsTargeted: inner.supportsTargeted,
    // The target is only shown the finished examples.
    blackBox: true,
    takesLoss: inner.takesLoss,
    async run(model, images, labels, options) {
      const r = await inner.run(surrogate, images, labels, options);
      const y = labelArray(labels);
      const targets = resolveTargets(options, y.length, model.numClasses, inner.name);
      return { adversarial: r.adversarial, success: successFromPredictions(await predictBatch(model, r.adversarial), y, targets) };
    },
  };
}
