/**
 * How well a physical attack survives: success over fresh EOT transformations drawn from a seed
 * stream never used in optimisation (held-out), next to the clean sign under the very same
 * transformations (so "fooled" is not confused with "the model already fails at this angle").
 */
import { tf } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { hashSeed } from '../data/random';
import { DEFAULT_EOT, EotConfig, renderEot, sampleEot, splitRgba } from './eot';

export interface RobustnessOptions {
  /** Number of held-out transformations (default 200). */
  n?: number;
  seed?: number;
  config?: EotConfig;
}

export interface RobustnessReport {
  n: number;
  seed: number;
  /** Fraction of transformations where the adversarial sign is classified as the target (or, untargeted, not as the sign). */
  successRate: number;
  /** Mean softmax probability of the target (targeted) or of the true class (untargeted). */
  meanProbability: number;
  /** The clean sign under the same transformations: accuracy, and how often it is the target anyway. */
  cleanAccuracy: number;
  cleanTargetRate: number;
  /** Most frequent predictions for the adversarial sign: class id → count. */
  predictions: Record<string, number>;
}

/** The seed stream for held-out measurement (disjoint from trainingSeed's). */
export function heldOutSeed(seed: number): number {
  return hashSeed(seed, 0xe7a1, 0x4e1d);
}

async function classify(clf: Classifier, images: Float32Array, n: number, s: number, batch = 64): Promise<{ pred: Int32Array; prob: Float32Array }> {
  const pred = new Int32Array(n);
  const prob = new Float32Array(n * clf.numClasses);
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const x = tf.tensor4d(images.subarray(i * s * s * 3, (i + m) * s * s * 3), [m, s, s, 3]);
    const z = await inferLogits(clf, x);
    const p = tf.softmax(z);
    const v = (await p.data()) as Float32Array;
    tf.dispose([x, z, p]);
    prob.set(v, i * clf.numClasses);
    for (let j = 0; j < m; j++) {
      let best = 0;
      for (let k = 1; k < clf.numClasses; k++) if (v[j * clf.numClasses + k] > v[j * clf.numClasses + best]) best = k;
      pred[i + j] = best;
    }
  }
  return { pred, prob };
}

/** Predictions of the model for images given as one Float32Array; shared with the round trip. */
export async function scoreImages(
  clf: Classifier,
  images: Float32Array,
  n: number,
  classId: number,
  target: number | null,
): Promise<{ success: number; meanProbability: number; predictions: Record<string, number>; pred: Int32Array }> {
  const s = clf.inputSize;
  const { pred, prob } = await classify(clf, images, n, s);
  let success = 0,
    p = 0;
  const predictions: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    if (target !== null ? pred[i] === target : pred[i] !== classId) success++;
    p += prob[i * clf.numClasses + (target ?? classId)];
    predictions[pred[i]] = (predictions[pred[i]] ?? 0) + 1;
  }
  return { success: n ? success / n : 0, meanProbability: n ? p / n : 0, predictions, pred };
}

/** What measurement needs from an optimised attack (a StickerResult has all of it). */
export interface PhysicalAttack {
  mode: 'sticker' | 'sign';
  classId: number;
  target: number | null;
  canvasSize: number;
  /** Straight RGBA (canvasSize² × 4). */
  clean: Float32Array;
  adversarial: Float32Array;
  /** Printed coverage (canvasSize²). */
  printed: Float32Array;
}

/**
 * Success rate of the adversarial sign over n held-out transformations, and the clean sign's
 * accuracy under the same ones. The clean sign counts as printed in sign mode (both are prints,
 * as in Kurakin et al.) and as the real, unprinted sign in sticker mode.
 */
export async function measureRobustness(clf: Classifier, attack: PhysicalAttack, o: RobustnessOptions = {}): Promise<RobustnessReport> {
  const n = o.n ?? 200;
  const seed = o.seed ?? 1;
  const size = attack.canvasSize;
  const config = { ...(o.config ?? DEFAULT_EOT), outputSize: clf.inputSize };
  const samples = sampleEot(n, heldOutSeed(seed), config);
  const a0 = splitRgba(attack.adversarial),
    c0 = splitRgba(attack.clean);
  const adv = tf.tensor4d(a0.rgb, [1, size, size, 3]),
    cl = tf.tensor4d(c0.rgb, [1, size, size, 3]);
  try {
    const advImgs = await renderEot(adv, a0.alpha, attack.printed, samples, config);
    const cleanImgs = await renderEot(cl, c0.alpha, attack.mode === 'sign' ? attack.printed : null, samples, config);
    const a = await scoreImages(clf, advImgs, n, attack.classId, attack.target);
    const c = await scoreImages(clf, cleanImgs, n, attack.classId, attack.target);
    let cleanOk = 0,
      cleanTarget = 0;
    for (const p of c.pred) {
      if (p === attack.classId) cleanOk++;
      if (attack.target !== null && p === attack.target) cleanTarget++;
    }
    return {
      n,
      seed,
      successRate: a.success,
      meanProbability: a.meanProbability,
      cleanAccuracy: n ? cleanOk / n : 0,
      cleanTargetRate: n ? cleanTarget / n : 0,
      predictions: topCounts(a.predictions, 5),
    };
  } finally {
    tf.dispose([adv, cl]);
  }
}

/** The k most frequent entries of a count table. */
export function topCounts(counts: Record<string, number>, k: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, k),
  );
}
