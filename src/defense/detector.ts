/**
 * Adversarial-example detection (in the spirit of Metzen et al. 2017 and Grosse et al. 2017, but
 * on the input, not on hidden activations): a small binary CNN trained to tell clean images from
 * FGSM/PGD examples of a given classifier. Its quality is the ROC AUC of its score, computed here
 * (Mann–Whitney U, ties counted half). A detector says nothing about attacks it was not trained on,
 * and an attacker who knows it can aim at it too (see the joint attack in defended.ts).
 */
import { tf, Tensor1D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { createRng } from '../data/random';
import { shuffledBatches } from '../inference/train';
import { adversarialExamples } from './adversarial';

export class Detector {
  readonly inputSize: number;

  constructor(readonly model: tf.LayersModel) {
    const s = model.inputs[0].shape;
    if (s.length !== 4 || s[1] == null) throw new UserError('detector model must take [n, s, s, 3] images');
    this.inputSize = s[1];
  }

  private check(x: Tensor4D): void {
    const [, h, w, c] = x.shape;
    if (h !== this.inputSize || w !== this.inputSize || c !== 3) {
      throw new UserError(`the detector judges ${this.inputSize}×${this.inputSize} RGB images, got ${h}×${w}×${c}: resize them first`);
    }
  }

  /** Detector logit per image (higher = more likely adversarial). Differentiable, synchronous. */
  scoreLogits(x: Tensor4D, training = false): Tensor1D {
    this.check(x);
    return tf.tidy(() => tf.reshape(this.model.apply(x, { training }) as tf.Tensor, [-1]) as Tensor1D);
  }

  /** P(adversarial) per image. */
  async scores(x: Tensor4D): Promise<Float32Array> {
    const p = tf.tidy(() => tf.sigmoid(this.scoreLogits(x)));
    const v = (await p.data()) as Float32Array;
    p.dispose();
    return Float32Array.from(v);
  }
}

export function buildDetectorModel(size: number, seed = 1): tf.LayersModel {
  const init = (k: number) => tf.initializers.heNormal({ seed: seed * 10 + k });
  const m = tf.sequential({ name: 'advsign_detector' });
  m.add(tf.layers.rescaling({ inputShape: [size, size, 3], scale: 2, offset: -1 }));
  m.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(0) }));
  m.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: init(3) }));
  m.add(tf.layers.dense({ units: 1, kernelInitializer: init(4) }));
  return m;
}

export interface DetectorTrainOptions {
  /** Budgets the adversarial examples are drawn from (uniformly per batch). */
  epsList: number[];
  attacks?: ('fgsm' | 'pgd')[];
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** PGD steps for training examples (default 5). */
  pgdSteps?: number;
  maxSeconds?: number;
  seed?: number;
}

/**
 * Trains a detector: each batch holds clean images (label 0) and adversarial versions of the same
 * images (label 1) made on the fly against `clf`, so the detector cannot key on image content.
 */
export async function trainDetector(clf: Classifier, set: ImageSet, o: DetectorTrainOptions): Promise<Detector> {
  if (o.epsList.length === 0 || o.epsList.some((e) => !(e > 0 && e <= 1))) throw new UserError('detector eps values must be in (0, 1]');
  const model = buildDetectorModel(set.size, o.seed ?? 1);
  const det = new Detector(model);
  const optimizer = tf.train.adam(o.learningRate ?? 1e-3);
  const rand = createRng(o.seed ?? 1);
  const attacks = o.attacks ?? ['fgsm', 'pgd'];
  let seed = o.seed ?? 1;
  for (const { idx, x, y } of shuffledBatches(set, o.batchSize ?? 64, o.epochs ?? 3, rand, o.maxSeconds)) {
    const eps = o.epsList[Math.floor(rand() * o.epsList.length)];
    const method = attacks[Math.floor(rand() * attacks.length)];
    const loss = tf.tidy(() => {
      const xb = tf.tensor4d(x, [idx.length, set.size, set.size, 3]);
      const yb = tf.tensor1d(y, 'int32');
      const adv = adversarialExamples(clf, xb, yb, method, eps, { pgdSteps: o.pgdSteps ?? 5, seed: seed++ });
      const inputs = tf.concat([xb, adv], 0) as Tensor4D;
      const target = tf.concat([tf.zeros([idx.length]), tf.ones([idx.length])]);
      return optimizer.minimize(
        () => tf.losses.sigmoidCrossEntropy(target, det.scoreLogits(inputs, true)) as tf.Scalar,
        true,
        model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val),
      ) as tf.Scalar;
    });
    await loss.data();
    loss.dispose();
  }
  optimizer.dispose();
  return det;
}

/**
 * ROC AUC of scores where `positive` should score higher than `negative`: the probability that a
 * random positive outranks a random negative (ties count half). O((n+m) log(n+m)).
 */
export function rocAuc(positive: ArrayLike<number>, negative: ArrayLike<number>): number {
  const n1 = positive.length,
    n0 = negative.length;
  if (n1 === 0 || n0 === 0) return NaN;
  const all: { v: number; pos: boolean }[] = [];
  for (let i = 0; i < n1; i++) all.push({ v: positive[i], pos: true });
  for (let i = 0; i < n0; i++) all.push({ v: negative[i], pos: false });
  all.sort((a, b) => a.v - b.v);
  // Average ranks over ties, then the Mann–Whitney U of the positives.
  let rankSumPos = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (all[k].pos) rankSumPos += avgRank;
    i = j + 1;
  }
  return (rankSumPos - (n1 * (n1 + 1)) / 2) / (n1 * n0);
}
