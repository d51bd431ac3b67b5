/**
 * A transfer surrogate seen in the target's terms: it takes images at the target's size (resized
 * to its own, bilinearly, with model-input.ts's exact gradient) and returns logits in the
 * target's class order, matched through GTSRB class ids. So a 32×32 project model can attack a 30×30 Keras model whose
 * outputs come in folder-name order.
 */
import { tf, Tensor2D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { resizeBilinear } from '../inference/model-input';
import { CLASS_NAMES, gtsrbClassIds } from '../data/classes';
import { UserError } from '../data/types';

export function alignSurrogate(source: Classifier, target: Classifier): Classifier {
  const srcIds = Array.from(gtsrbClassIds(source.classNames ?? CLASS_NAMES));
  const tgtNames = target.classNames ?? CLASS_NAMES;
  const cols = Array.from(gtsrbClassIds(tgtNames), (id) => (id < 0 ? -1 : srcIds.indexOf(id)));
  const missing = cols.findIndex((c) => c < 0);
  if (missing >= 0) throw new UserError(`transfer: the target's class '${tgtNames[missing]}' has no counterpart among the surrogate's classes`);
  const sameOrder = cols.length === source.numClasses && cols.every((c, i) => c === i);
  if (sameOrder && source.inputSize === target.inputSize) return source;
  const s = source.inputSize;
  return {
    inputSize: target.inputSize,
    numClasses: target.numClasses,
    trainableWeights: [],
    classNames: target.classNames,
    logits: (images: Tensor4D): Tensor2D =>
      tf.tidy(() => {
        const x = resizeBilinear(images, s, s);
        const z = source.logits(x);
        return sameOrder ? z : tf.gather(z, cols, 1);
      }),
  };
}
