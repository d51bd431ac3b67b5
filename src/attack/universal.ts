/**
 * Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017): one image-agnostic v with
 * ‖v‖∞ ≤ eps that fools the model on many inputs. We pass over the data in mini-batches; for
 * the images that x + v does not fool yet we take a step and project v back onto the eps ball:
 *   - 'fgsm' (default): the sign of the summed, per-image-normalised loss gradients (the
 *     batched SGD variant of Shafahi et al. 2020; fast and stable);
 *   - 'deepfool': the paper's minimal DeepFool perturbations of those images, summed per batch
 *     (the paper adds them one image at a time; batching trades a little fidelity for speed).
 */
import { tf, signExact, Tensor1D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import type { Attack, UniversalAttackOptions } from './types';
import { inputGradient, AttackLoss } from './loss';
import { intOption, labelArray, lossOption, numberOption, predictBatch, rejectTargeted, requireEps, stringOption, successFromPredictions } from './common';
import { deepfoolBatch } from './deepfool';

export interface UniversalOptions {
  eps: number;
  /** Passes over the data (default 5). */
  epochs?: number;
  batchSize?: number;
  /** L∞ step of the 'fgsm' method (default eps / 4). */
  stepSize?: number;
  method?: 'fgsm' | 'deepfool';
  /** Stop once the fooling rate on the data reaches this (default 1: run all epochs). */
  stopAt?: number;
  /** The objective of the 'fgsm' method's steps (default 'ce'). */
  loss?: AttackLoss;
}

export interface UniversalResult {
  /** v as s·s·3 floats (HWC), every value in [−eps, eps]. */
  perturbation: Float32Array;
  size: number;
  /** Fraction of all images whose predicted class changes when v is added (the paper's measure). */
  foolingRate: number;
  /** Fraction of the correctly classified images that x + v misclassifies. */
  successRate: number;
  epochs: number;
}

/** x + v clipped to [0, 1]; v ([s, s, 3] values) is first clipped to the eps ball. */
export function applyPerturbation(images: Tensor4D, v: Float32Array, eps: number): Tensor4D {
  const [, h, w, c] = images.shape;
  if (v.length !== h * w * c) throw new UserError(`universal perturbation has ${v.length} values, images need ${h * w * c}`);
  return tf.tidy(() => {
    const vt = tf.clipByValue(tf.tensor4d(v, [1, h, w, c]), -eps, eps);
    return tf.clipByValue(tf.add(images, vt), 0, 1) as Tensor4D;
  });
}

function sliceBatch(x: Tensor4D, start: number, size: number): Tensor4D {
  return tf.slice(x, [start, 0, 0, 0], [size, -1, -1, -1]);
}

async function predictAll(model: Classifier, images: Tensor4D, v: Float32Array | null, eps: number, batch: number): Promise<Int32Array> {
  const n = images.shape[0];
  const out = new Int32Array(n);
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const xb = sliceBatch(images, i, m);
    const xa = v ? applyPerturbation(xb, v, eps) : xb;
    out.set(await predictBatch(model, xa), i);
    if (xa !== xb) xa.dispose();
    xb.dispose();
  }
  return out;
}

export async function computeUniversal(model: Classifier, images: Tensor4D, labels: Tensor1D, opts: UniversalOptions): Promise<UniversalResult> {
  const { eps } = opts;
  if (!Number.isFinite(eps) || eps < 0) throw new UserError(`universal: eps must be a finite number ≥ 0, got ${eps}`);
  const epochs = opts.epochs ?? 5;
  const batch = opts.batchSize ?? 32;
  const stepSize = opts.stepSize ?? eps / 4;
  const method = opts.method ?? 'fgsm';
  const stopAt = opts.stopAt ?? 1;
  const [n, s] = images.shape;
  const y = labelArray(labels);
  const cleanPred = await predictAll(model, images, null, eps, batch);
  let v = new Float32Array(s * s * 3);
  let ranEpochs = 0;
  const rates = async () => {
    const pred = await predictAll(model, images, v, eps, batch);
    let fooled = 0,
      correct = 0,
      wrong = 0;
    for (let i = 0; i < n; i++) {
      if (pred[i] !== cleanPred[i]) fooled++;
      if (cleanPred[i] === y[i]) {
        correct++;
        if (pred[i] !== y[i]) wrong++;
      }
    }
    return { foolingRate: n ? fooled / n : 0, successRate: correct ? wrong / correct : 0 };
  };
  for (let e = 0; e < epochs && eps > 0; e++) {
    ranEpochs++;
    for (let i = 0; i < n; i += batch) {
      const m = Math.min(batch, n - i);
      const xb = sliceBatch(images, i, m);
      const yb = tf.tensor1d(y.subarray(i, i + m), 'int32');
      const xv = applyPerturbation(xb, v, eps);
      // Only images that x + v does not fool yet contribute, as in the paper.
      const pred = await predictBatch(model, xv);
      const keep = new Float32Array(m);
      let any = false;
      for (let j = 0; j < m; j++)
        if (pred[j] === y[i + j]) {
          keep[j] = 1;
          any = true;
        }
      if (any) {
        let step: tf.Tensor;
        if (method === 'fgsm') {
          const g = await inputGradient(model, xv, yb, null, opts.loss);
          step = tf.tidy(() => {
            const norm = tf.maximum(tf.mean(tf.abs(g), [1, 2, 3], true), 1e-12);
            const weighted = tf.mul(tf.div(g, norm), tf.reshape(tf.tensor1d(keep), [m, 1, 1, 1]));
            return tf.mul(signExact(tf.sum(weighted, 0)), stepSize);
          });
          g.dispose();
        } else {
          const { adversarial } = await deepfoolBatch(model, xv, y.subarray(i, i + m), { steps: 10, overshoot: 0.02, candidates: 10 });
          step = tf.tidy(() => tf.sum(tf.mul(tf.sub(adversarial, xv), tf.reshape(tf.tensor1d(keep), [m, 1, 1, 1])), 0));
          adversarial.dispose();
        }
        const stepData = (await step.data()) as Float32Array;
        step.dispose();
        const nv = new Float32Array(v.length);
        for (let q = 0; q < v.length; q++) nv[q] = Math.max(-eps, Math.min(eps, v[q] + stepData[q]));
        v = nv;
      }
      xb.dispose();
      yb.dispose();
      xv.dispose();
    }
    if ((await rates()).foolingRate >= stopAt) break;
  }
  return { perturbation: v, size: s, epochs: ranEpochs, ...(await rates()) };
}

export const universal: Attack = {
  name: 'universal',
  title: 'Universal adversarial perturbation (L∞)',
  norm: 'linf',
  usesEps: true,
  supportsTargeted: false,
  takesLoss: true,
  extraOptions: ['perturbation', 'epochs', 'method', 'batchSize'] satisfies (keyof UniversalAttackOptions)[],
  async run(model, images, labels, options: UniversalAttackOptions) {
    rejectTargeted(options, 'universal');
    const eps = requireEps(options, 'universal');
    const loss = lossOption(options, universal);
    const given = options.perturbation;
    let v: Float32Array;
    if (given !== undefined) {
      if (!(given instanceof Float32Array)) throw new UserError('universal: option perturbation must be a Float32Array');
      v = given;
    } else {
      // No precomputed v: fit one on this batch itself (what a sweep over a test set can do).
      v = (
        await computeUniversal(model, images, labels, {
          eps,
          epochs: intOption(options, 'epochs', 5, 1),
          stepSize: numberOption(options, 'stepSize', eps / 4),
          method: stringOption(options, 'method', ['fgsm', 'deepfool'] as const, 'fgsm'),
          batchSize: intOption(options, 'batchSize', 32, 1),
          loss,
        })
      ).perturbation;
    }
    const adversarial = applyPerturbation(images, v, eps);
    const y = labelArray(labels);
    return { adversarial, success: successFromPredictions(await predictBatch(model, adversarial), y, null) };
  },
};

/** An Attack that always applies one precomputed universal perturbation. */
export function universalAttackWith(perturbation: Float32Array): Attack {
  return {
    ...universal,
    run: (model, images, labels, options) => universal.run(model, images, labels, { ...options, perturbation }),
  };
}
