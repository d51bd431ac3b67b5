/**
 * What a command writes is what it reports: adversarial images are measured after rounding to
 * the 8-bit grid they are written on (PNG, the report's examples, the live page), never as the
 * float tensor the attack returned. Rounding can undo an attack (a minimal perturbation lands
 * just past the decision boundary, and half of its pixels move less than half a grey level), so
 * success, predictions and norms are re-measured on the rounded image.
 *
 * An eps budget is kept through rounding: each value goes to the nearest grid level inside the
 * ball around the clean image (L∞), or, if nearest rounding left the L2 ball, every value is
 * rounded towards the clean one. Both hold exactly when the clean image is itself on the grid
 * (an 8-bit photo, a GTSRB image from the cache): `advsign attack` rounds its input first.
 */
import { tf } from '../inference/tf';
import { Classifier, inferLogits, measuredOn } from '../inference/model';
import { BYTE_TO_FLOAT, toByte } from '../data/quantise';
import type { Norm } from './types';
import { normsFromArrays, PerturbationNorms } from './norms';

export { quantiseArray } from '../data/quantise';

/** The same rounding as toByte (float32 arithmetic), on a tensor: what writing it would give. */
export function quantiseTensor<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.div(tf.floor(tf.add(tf.mul(tf.clipByValue(x, 0, 1), 255), 0.5)), 255) as T);
}

/** A perturbation budget in one norm (an L0 budget is already on the grid: pixels set to 0 or 1). */
export interface Budget {
  norm: Norm;
  eps: number;
}

/** Grid levels are compared with this slack, so eps = 8/255 keeps the level 8 steps away. */
const LEVEL_SLACK = 1e-4;

/** Rounds one image (offset o, d values) into the L∞ ball: the nearest level inside [c − eps, c + eps]. */
function roundLinf(clean: Float32Array, adv: Float32Array, out: Float32Array, o: number, d: number, eps: number): void {
  for (let p = o; p < o + d; p++) {
    const c = clean[p];
    const lo = Math.max(0, Math.ceil((c - eps) * 255 - LEVEL_SLACK));
    const hi = Math.min(255, Math.floor((c + eps) * 255 + LEVEL_SLACK));
    const b = toByte(adv[p]);
    // lo > hi only for an off-grid clean value with eps under a level: the nearest level to it.
    out[p] = BYTE_TO_FLOAT[lo > hi ? toByte(c) : Math.min(hi, Math.max(lo, b))];
  }
}

/** Rounds one image's values towards the clean ones (|written − clean| ≤ |adv − clean| on the grid). */
function roundTowardsClean(clean: Float32Array, adv: Float32Array, out: Float32Array, o: number, d: number): void {
  for (let p = o; p < o + d; p++) {
    const v = adv[p] * 255,
      c = clean[p] * 255;
    const b = v >= c ? Math.floor(v + LEVEL_SLACK) : Math.ceil(v - LEVEL_SLACK);
    out[p] = BYTE_TO_FLOAT[Math.min(255, Math.max(0, b))];
  }
}

/** `n` adversarial images rounded to the 8-bit grid, within `budget` of `clean` when one is given. */
export function quantiseWithin(clean: Float32Array, adv: Float32Array, n: number, budget?: Budget): Float32Array {
  if (clean.length !== adv.length || adv.length % n !== 0) throw new Error('quantiseWithin: clean and adversarial sizes differ');
  const d = adv.length / n;
  const out = new Float32Array(adv.length);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    if (budget?.norm === 'linf') {
      roundLinf(clean, adv, out, o, d, budget.eps);
      continue;
    }
    let s2 = 0;
    for (let p = o; p < o + d; p++) {
      out[p] = BYTE_TO_FLOAT[toByte(adv[p])];
      s2 += (out[p] - clean[p]) ** 2;
    }
    if (budget?.norm === 'l2' && Math.sqrt(s2) > budget.eps * (1 + 1e-6)) roundTowardsClean(clean, adv, out, o, d);
  }
  return out;
}

/** An adversarial batch as written: its pixels, the model's verdict on them, and their norms. */
export interface WrittenImages {
  /** The written values (multiples of 1/255), NHWC. */
  images: Float32Array;
  pred: Int32Array;
  /** Softmax probability of `pred`. */
  conf: Float32Array;
  /** 1 where the written image is the target (targeted) or not the label (untargeted). */
  success: Uint8Array;
  norms: PerturbationNorms;
}

/**
 * Rounds `adv` as it will be written (see quantiseWithin), classifies the result and measures
 * its perturbation from `clean`: the figures a command prints about the file it writes.
 */
export async function measureWritten(
  model: Classifier,
  clean: Float32Array,
  adv: Float32Array,
  labels: Int32Array,
  targets: Int32Array | null,
  budget?: Budget,
): Promise<WrittenImages> {
  const n = labels.length,
    s = model.inputSize;
  const images = quantiseWithin(clean, adv, n, budget);
  // Judged where predictions count (a .tflite file's interpreter, a native engine).
  const x = tf.tensor4d(images, [n, s, s, 3]);
  const z = await inferLogits(measuredOn(model), x);
  const [p, c] = tf.tidy(() => {
    const probs = tf.softmax(z);
    return [tf.argMax(probs, 1), tf.max(probs, 1)];
  });
  tf.dispose([x, z]);
  const pred = Int32Array.from((await p.data()) as Int32Array);
  const conf = Float32Array.from((await c.data()) as Float32Array);
  tf.dispose([p, c]);
  const success = Uint8Array.from(pred, (v, i) => ((targets ? v === targets[i] : v !== labels[i]) ? 1 : 0));
  return { images, pred, conf, success, norms: normsFromArrays(clean, images, n) };
}
