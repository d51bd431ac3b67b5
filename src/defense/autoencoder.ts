/**
 * Input reconstruction (MagNet-style "reformer", Meng & Chen 2017): a small convolutional
 * autoencoder trained to map noisy images back to clean ones, placed in front of the classifier.
 * It removes small high-frequency perturbations, but it is differentiable, so an adaptive attacker
 * simply attacks classifier∘autoencoder as one network (defended.ts does exactly that).
 */
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import type { ImageSet } from '../data/types';
import { createRng } from '../data/random';
import { shuffledBatches } from '../inference/train';

export function buildAutoencoder(size: number, seed = 1): tf.LayersModel {
  const init = (k: number) => tf.initializers.heNormal({ seed: seed * 10 + k });
  const m = tf.sequential({ name: 'advsign_autoencoder' });
  m.add(tf.layers.conv2d({ inputShape: [size, size, 3], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(0) }));
  m.add(tf.layers.averagePooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }));
  m.add(tf.layers.upSampling2d({ size: [2, 2] }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }));
  m.add(tf.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'sigmoid', kernelInitializer: init(3) }));
  return m;
}

export interface AutoencoderTrainOptions {
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** Std of the Gaussian noise added to inputs (denoising training; default 0.05). */
  noise?: number;
  maxSeconds?: number;
  seed?: number;
}

/** Trains the denoising autoencoder (MSE to the clean image). */
export async function trainAutoencoder(set: ImageSet, o: AutoencoderTrainOptions = {}): Promise<tf.LayersModel> {
  const model = buildAutoencoder(set.size, o.seed ?? 1);
  const optimizer = tf.train.adam(o.learningRate ?? 2e-3);
  const rand = createRng(o.seed ?? 1);
  let seed = o.seed ?? 1;
  const vars = model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  for (const { idx, x } of shuffledBatches(set, o.batchSize ?? 64, o.epochs ?? 3, rand, o.maxSeconds)) {
    const loss = tf.tidy(() => {
      const clean = tf.tensor4d(x, [idx.length, set.size, set.size, 3]);
      const noisy = tf.clipByValue(tf.add(clean, tf.randomNormal(clean.shape, 0, o.noise ?? 0.05, 'float32', seed++)), 0, 1);
      return optimizer.minimize(() => tf.losses.meanSquaredError(clean, model.apply(noisy) as Tensor4D) as tf.Scalar, true, vars) as tf.Scalar;
    });
    await loss.data();
    loss.dispose();
  }
  optimizer.dispose();
  return model;
}

/** classifier ∘ autoencoder as one Classifier (differentiable end to end). */
export class ReconstructedClassifier implements Classifier {
  readonly inputSize: number;
  readonly numClasses: number;
  constructor(
    readonly autoencoder: tf.LayersModel,
    readonly inner: Classifier,
  ) {
    this.inputSize = inner.inputSize;
    this.numClasses = inner.numClasses;
  }

  reconstruct(x: Tensor4D): Tensor4D {
    return tf.tidy(() => this.autoencoder.apply(x) as Tensor4D);
  }

  logits(x: Tensor4D, training = false): tf.Tensor2D {
    return tf.tidy(() => this.inner.logits(this.reconstruct(x), training));
  }

  get trainableWeights(): tf.Variable[] {
    return this.inner.trainableWeights;
  }
}
