/**
 * How robust is the deployed (TFLite) model? It has no gradients, so the two threats are:
 *  - transfer: adversarial examples crafted with white-box FGSM/PGD on the tfjs model it was
 *    exported from, then shown to the TFLite model (float and int8);
 *  - score-based black-box: Square Attack querying the TFLite model's logits directly.
 * Success rates count only images the attacked model classifies correctly when clean (an image
 * it already gets wrong says nothing about the attack), as in src/attack/transfer.ts.
 */
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { getAttack } from '../attack/registry';
import { square } from '../attack/square';

export interface TfliteRobustnessOptions {
  /** L∞ budget (default 8/255). */
  eps?: number;
  /** White-box attacks crafted on the surrogate (default fgsm, pgd). */
  transferAttacks?: string[];
  /** PGD iterations (default 10). */
  pgdSteps?: number;
  /** Square Attack query budget per image (default 500; 0 skips Square). */
  squareQueries?: number;
  /** Images used (the first `limit`, spread over the set; default 100). */
  limit?: number;
  /** Images for Square (it is the slow part; default min(limit, 50)). */
  squareLimit?: number;
  seed?: number;
}

export interface TargetScore {
  name: string;
  /** Images counted (correct when clean). */
  count: number;
  successRate: number;
}

export interface TransferRow {
  attack: string;
  eps: number;
  /** White-box success on the surrogate itself. */
  source: TargetScore;
  targets: TargetScore[];
}

export interface SquareRow extends TargetScore {
  eps: number;
  maxQueries: number;
  /** Queries used by the successful images (mean and median; 0 when none succeeded). */
  meanQueries: number;
  medianQueries: number;
}

export interface TfliteRobustnessResult {
  n: number;
  eps: number;
  clean: { name: string; accuracy: number }[];
  transfer: TransferRow[];
  square: SquareRow[];
}

function pick(set: ImageSet, limit: number): { x: Float32Array; y: Int32Array; n: number } {
  const n = Math.min(limit, set.n);
  const per = set.size * set.size * 3;
  const x = new Float32Array(n * per);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = Math.floor((i * set.n) / n);
    x.set(set.images.subarray(k * per, (k + 1) * per), i * per);
    y[i] = set.labels[k];
  }
  return { x, y, n };
}

async function predict(model: Classifier, x: Tensor4D): Promise<Int32Array> {
  const p = tf.tidy(() => tf.argMax(model.logits(x), 1));
  const out = Int32Array.from(await p.data());
  p.dispose();
  return out;
}

function score(name: string, clean: Int32Array, adv: Int32Array, y: Int32Array): TargetScore {
  let count = 0,
    hit = 0;
  for (let i = 0; i < y.length; i++) {
    if (clean[i] !== y[i]) continue;
    count++;
    if (adv[i] !== y[i]) hit++;
  }
  return { name, count, successRate: count ? hit / count : 0 };
}

/**
 * Transfer success (FGSM/PGD crafted on `surrogate`) and Square Attack success/queries on
 * each target (e.g. { float: tfliteFloat, int8: tfliteInt8 }).
 */
export async function tfliteRobustness(
  surrogate: Classifier,
  targets: Record<string, Classifier>,
  set: ImageSet,
  o: TfliteRobustnessOptions = {},
): Promise<TfliteRobustnessResult> {
  const eps = o.eps ?? 8 / 255;
  const names = Object.keys(targets);
  for (const [name, t] of [['surrogate', surrogate] as const, ...Object.entries(targets)]) {
    if (t.inputSize !== set.size) {
      throw new UserError(`input size mismatch: ${name} takes ${t.inputSize}×${t.inputSize} images, the data has ${set.size}×${set.size}`);
    }
  }
  const { x, y, n } = pick(set, o.limit ?? 100);
  const s = set.size;
  const images = tf.tensor4d(x, [n, s, s, 3]);
  const labels = tf.tensor1d(y, 'int32');
  try {
    const cleanPred: Record<string, Int32Array> = { surrogate: await predict(surrogate, images) };
    for (const name of names) cleanPred[name] = await predict(targets[name], images);
    const acc = (p: Int32Array) => p.reduce((a, v, i) => a + (v === y[i] ? 1 : 0), 0) / n;
    const clean = [{ name: 'surrogate', accuracy: acc(cleanPred.surrogate) }, ...names.map((name) => ({ name, accuracy: acc(cleanPred[name]) }))];

    const transfer: TransferRow[] = [];
    for (const attackName of o.transferAttacks ?? ['fgsm', 'pgd']) {
      const attack = getAttack(attackName);
      const r = await attack.run(surrogate, images, labels, { eps, steps: o.pgdSteps ?? 10, seed: o.seed ?? 1 });
      try {
        const row: TransferRow = {
          attack: attack.name,
          eps,
          source: score('surrogate', cleanPred.surrogate, await predict(surrogate, r.adversarial), y),
          targets: [],
        };
        for (const name of names) row.targets.push(score(name, cleanPred[name], await predict(targets[name], r.adversarial), y));
        transfer.push(row);
      } finally {
        r.adversarial.dispose();
      }
    }

    const squareRows: SquareRow[] = [];
    const maxQueries = o.squareQueries ?? 500;
    if (maxQueries > 0) {
      const m = Math.min(n, o.squareLimit ?? Math.min(n, 50));
      for (const name of names) {
        // Only images the target gets right are attacked: the rest would count as free wins.
        const idx = Array.from({ length: m }, (_, i) => i).filter((i) => cleanPred[name][i] === y[i]);
        const row: SquareRow = { name, eps, maxQueries, count: idx.length, successRate: 0, meanQueries: 0, medianQueries: 0 };
        if (idx.length > 0) {
          const per = s * s * 3;
          const xs = new Float32Array(idx.length * per);
          idx.forEach((i, j) => xs.set(x.subarray(i * per, (i + 1) * per), j * per));
          const xt = tf.tensor4d(xs, [idx.length, s, s, 3]);
          const yt = tf.tensor1d(
            Int32Array.from(idx, (i) => y[i]),
            'int32',
          );
          try {
            const r = await square.run(targets[name], xt, yt, { eps, maxQueries, seed: o.seed ?? 1 });
            r.adversarial.dispose();
            const q = Array.from(r.queries ?? new Int32Array(0))
              .filter((_, j) => r.success[j] === 1)
              .sort((a, b) => a - b);
            row.successRate = q.length / idx.length;
            row.meanQueries = q.length ? q.reduce((a, b) => a + b, 0) / q.length : 0;
            row.medianQueries = q.length ? q[Math.floor((q.length - 1) / 2)] : 0;
          } finally {
            xt.dispose();
            yt.dispose();
          }
        }
        squareRows.push(row);
      }
    }
    return { n, eps, clean, transfer, square: squareRows };
  } finally {
    images.dispose();
    labels.dispose();
  }
}
