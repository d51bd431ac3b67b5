/**
 * Defensive distillation (Papernot et al. 2016): a teacher trained with softmax at temperature T,
 * a student trained on the teacher's soft labels at the same T, and the student deployed at T = 1.
 * Its logits end up ~T times larger, so softmax at T = 1 saturates and cross-entropy gradients
 * vanish in float32: plain FGSM/PGD stall. That is gradient masking, not robustness; attacks on
 * the logit margin (Carlini & Wagner 2016) go straight through, and defended.ts uses them.
 */
import { tf, Tensor2D, Tensor4D } from '../inference/tf';
import { Architecture, buildModel, LayersClassifier, setDropoutSeeds, unseedDropout } from '../inference/model';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { createRng } from '../data/random';
import { shuffledBatches } from '../inference/train';
import { augmentBatch } from '../inference/augment';

export interface DistillOptions {
  arch: Architecture;
  temperature: number;
  /** Epochs for teacher and student each (default 3). */
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** A trained model to start the teacher from (fine-tuned at T); else trained from scratch. */
  teacherInit?: tf.LayersModel;
  /** Start the student from the teacher's weights (faster; default false = fresh, as in the paper). */
  studentFromTeacher?: boolean;
  augment?: boolean;
  /** Wall-time budget per network (seconds). */
  maxSeconds?: number;
  seed?: number;
}

export interface DistillResult {
  teacher: LayersClassifier;
  student: LayersClassifier;
  temperature: number;
}

function copyModel(src: tf.LayersModel, arch: Architecture, seed: number): tf.LayersModel {
  const m = buildModel({ arch, inputSize: src.inputs[0].shape[1] as number, numClasses: src.outputs[0].shape[1] as number, seed });
  m.setWeights(src.getWeights());
  return m;
}

/** One network trained with softmax(logits / T) against `targets(xb, yb)` (one-hot or soft). */
async function trainAtTemperature(
  model: tf.LayersModel,
  set: ImageSet,
  T: number,
  o: DistillOptions,
  targets: (x: Tensor4D, y: tf.Tensor1D) => Tensor2D,
): Promise<void> {
  const clf = new LayersClassifier(model);
  const optimizer = tf.train.adam(o.learningRate ?? 1e-3);
  const rand = createRng(o.seed ?? 1);
  for (const { idx, x, y } of shuffledBatches(set, o.batchSize ?? 64, o.epochs ?? 3, rand, o.maxSeconds)) {
    // A new dropout mask each step, reproducible from the seed (see setDropoutSeeds).
    setDropoutSeeds(model, Math.floor(rand() * 1e9));
    const loss = tf.tidy(() => {
      let xb = tf.tensor4d(x, [idx.length, set.size, set.size, 3]);
      if (o.augment) xb = augmentBatch(xb, rand);
      const t = targets(xb, tf.tensor1d(y, 'int32'));
      return optimizer.minimize(() => tf.losses.softmaxCrossEntropy(t, tf.div(clf.logits(xb, true), T)) as tf.Scalar, true, clf.trainableWeights) as tf.Scalar;
    });
    await loss.data();
    loss.dispose();
  }
  unseedDropout(model);
  optimizer.dispose();
}

export async function trainDistilled(set: ImageSet, o: DistillOptions): Promise<DistillResult> {
  const T = o.temperature;
  if (!Number.isFinite(T) || T < 1) throw new UserError(`distillation temperature must be ≥ 1, got ${T}`);
  const seed = o.seed ?? 1;
  const teacherModel = o.teacherInit ? copyModel(o.teacherInit, o.arch, seed) : buildModel({ arch: o.arch, inputSize: set.size, numClasses: 43, seed });
  await trainAtTemperature(teacherModel, set, T, o, (_x, y) => tf.oneHot(y, 43) as Tensor2D);
  const teacher = new LayersClassifier(teacherModel);
  const studentModel = o.studentFromTeacher
    ? copyModel(teacherModel, o.arch, seed + 1)
    : buildModel({ arch: o.arch, inputSize: set.size, numClasses: 43, seed: seed + 1 });
  // Soft labels: the teacher's softmax at T on the same (augmented) batch.
  await trainAtTemperature(studentModel, set, T, { ...o, seed: seed + 1 }, (x) => tf.softmax(tf.div(teacher.logits(x), T)) as Tensor2D);
  return { teacher, student: new LayersClassifier(studentModel), temperature: T };
}
