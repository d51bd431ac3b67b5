/**
 * FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein 2020), L∞ and L2, as AutoAttack
 * runs it: for each of the target classes the clean image ranks 2nd, 3rd, …, it linearises the
 * logit difference z_t − z_y at the current point x₁, projects both x₁ and the clean image x₀ onto
 * the approximate boundary (fab-projection.ts), and steps to a mix of the two projections with
 * overshoot η = 1.05, weighted towards x₀'s by α = min(‖d₁‖ / (‖d₁‖ + ‖d₀‖), α_max = 0.1). On
 * reaching an adversarial point it keeps the smallest one seen and steps back towards x₀ by
 * β = 0.9. An image counts as fooled when its smallest adversarial lies within eps; otherwise the
 * clean image is returned, so results never exceed the budget.
 *
 * It needs the model's logits: on a model that ends in softmax the logits advsign recovers are
 * clipped log-probabilities, flat (zero gradient) wherever a probability is below 1e-12.
 */
import { tf, Tensor2D, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { UserError } from '../data/types';
import { cotangentGradient } from './loss';
import { argmaxRows } from './common';
import { rankedTargets } from './apgd';
import { projectionL2, projectionLinf } from './fab-projection';

export interface FabOptions {
  norm: 'linf' | 'l2';
  eps: number;
  /** Iterations per target class (100). */
  steps: number;
  /** Runs per target; runs after the first start from a random point (restarts = 1 in AutoAttack). */
  restarts: number;
  /** Target classes per image, ranked 2nd … by clean logits (9), at most numClasses − 1. */
  targets: number;
  alphaMax: number;
  eta: number;
  beta: number;
  seed: number;
}

export const FAB_DEFAULTS = { steps: 100, restarts: 1, targets: 9, alphaMax: 0.1, eta: 1.05, beta: 0.9 } as const;

/** True when the classifier's logits are recovered from softmax outputs. */
export function outputsSoftmax(model: Classifier): boolean {
  return (model as { outputsSoftmax?: unknown }).outputsSoftmax === true;
}

export function requireLogits(model: Classifier, attack: string): void {
  if (outputsSoftmax(model)) {
    throw new UserError(
      `attack '${attack}' needs the model's logits, but this model ends in softmax: the log-probabilities advsign recovers are clipped at 1e-12, where FAB's linearisation has no gradient (export the model without its softmax layer)`,
    );
  }
}

function norm(v: ArrayLike<number>, o: number, d: number, kind: 'linf' | 'l2'): number {
  let s = 0;
  for (let i = o; i < o + d; i++) s = kind === 'linf' ? Math.max(s, Math.abs(v[i])) : s + v[i] * v[i];
  return kind === 'linf' ? s : Math.sqrt(s);
}

/** z_t − z_y and its gradient at x (one vector-Jacobian product with c = e_t − e_y). */
async function logitDifference(model: Classifier, x: Tensor4D, y: Int32Array, t: Int32Array): Promise<{ df: Float32Array; dg: Float32Array }> {
  const k = model.numClasses;
  const c = tf.tidy(() => tf.sub(tf.oneHot(tf.tensor1d(t, 'int32'), k), tf.oneHot(tf.tensor1d(y, 'int32'), k)).toFloat() as Tensor2D);
  const { grad, logits } = await cotangentGradient(model, x, c);
  const z = (await logits.data()) as Float32Array;
  const dg = Float32Array.from((await grad.data()) as Float32Array);
  tf.dispose([c, grad, logits]);
  return { df: Float32Array.from(y, (yi, i) => z[i * k + t[i]] - z[i * k + yi]), dg };
}

/** The rows of a flat per-image array for images `rows`. */
function pick(a: Float32Array, rows: number[], d: number): Float32Array {
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, j) => out.set(a.subarray(r * d, (r + 1) * d), j * d));
  return out;
}

/** One FAB step of image i's point xi towards the boundary estimated by (w, b), in place. */
function fabStep(xi: Float32Array, x0i: Float32Array, w: Float32Array, b: number, o: FabOptions): void {
  const project = o.norm === 'linf' ? projectionLinf : projectionL2;
  const d = xi.length;
  const d1 = project(xi, w, b),
    d2 = project(x0i, w, b);
  const a1 = Math.max(norm(d1, 0, d, o.norm), 1e-8),
    a2 = Math.max(norm(d2, 0, d, o.norm), 1e-8);
  const alpha = Math.min(Math.max(a1 / (a1 + a2), 0), o.alphaMax);
  for (let p = 0; p < d; p++) {
    const v = (xi[p] + o.eta * d1[p]) * (1 - alpha) + (x0i[p] + d2[p] * o.eta) * alpha;
    xi[p] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

/**
 * One FAB-T run towards targets t on correctly classified images x0 (HWC floats): the smallest
 * adversarial found per row (norm `best[i]`, Infinity if none) written into `adv`. An image
 * whose adversarial already fits in eps stops, with all rows of its `group` (its other targets):
 * the reference goes on shrinking it, but for AutoAttack's count it is fooled either way.
 */
async function fabRun(
  model: Classifier,
  x0: Float32Array,
  y: Int32Array,
  t: Int32Array,
  o: FabOptions,
  randomStart: boolean,
  seed: number,
  group: Int32Array,
): Promise<{ adv: Float32Array; best: Float64Array }> {
  const m = y.length,
    s = model.inputSize,
    d = x0.length / m;
  const x1 = Float32Array.from(x0);
  if (randomStart) {
    // Half the eps ball (the reference's restarts), uniform on L∞ or Gaussian direction for L2.
    const r = tf.tidy(
      () => (o.norm === 'linf' ? tf.randomUniform([m, d], -1, 1, 'float32', seed) : tf.randomNormal([m, d], 0, 1, 'float32', seed)).dataSync() as Float32Array,
    );
    for (let i = 0; i < m; i++) {
      const sc = (0.5 * o.eps) / (norm(r, i * d, d, o.norm) + 1e-12);
      for (let p = i * d; p < (i + 1) * d; p++) x1[p] = Math.min(1, Math.max(0, x0[p] + sc * r[p]));
    }
  }
  const adv = Float32Array.from(x0);
  const best = new Float64Array(m).fill(Infinity);
  let active = Array.from({ length: m }, (_, i) => i);
  for (let it = 0; it < o.steps && active.length; it++) {
    const xt = tf.tensor4d(pick(x1, active, d), [active.length, s, s, 3]);
    const { df, dg } = await logitDifference(
      model,
      xt,
      Int32Array.from(active, (i) => y[i]),
      Int32Array.from(active, (i) => t[i]),
    );
    xt.dispose();
    active.forEach((i, j) => {
      const w = dg.subarray(j * d, (j + 1) * d),
        xi = x1.subarray(i * d, (i + 1) * d);
      let wx = 0;
      for (let p = 0; p < d; p++) wx += w[p] * xi[p];
      fabStep(xi, x0.subarray(i * d, (i + 1) * d), w, -df[j] + wx, o);
    });
    // Adversarial now? Keep the smallest, and step back towards the clean image.
    const xn = tf.tensor4d(pick(x1, active, d), [active.length, s, s, 3]);
    const z = await inferLogits(model, xn);
    const pred = argmaxRows((await z.data()) as Float32Array, active.length, model.numClasses);
    tf.dispose([xn, z]);
    active.forEach((i, j) => {
      if (pred[j] === y[i]) return;
      let r = 0;
      for (let p = i * d; p < (i + 1) * d; p++) r = o.norm === 'linf' ? Math.max(r, Math.abs(x1[p] - x0[p])) : r + (x1[p] - x0[p]) ** 2;
      if (o.norm === 'l2') r = Math.sqrt(r);
      if (r < best[i]) {
        best[i] = r;
        adv.set(x1.subarray(i * d, (i + 1) * d), i * d);
      }
      for (let p = i * d; p < (i + 1) * d; p++) x1[p] = x0[p] + (x1[p] - x0[p]) * o.beta;
    });
    const broken = new Set(active.filter((i) => best[i] <= o.eps).map((i) => group[i]));
    if (broken.size) active = active.filter((i) => !broken.has(group[i]));
  }
  return { adv, best };
}

/**
 * FAB-T over the target classes (and restarts), each run on the images not yet fooled within eps.
 * All targets of a run go in one batch, one row per (image, target) pair, so a native engine gets
 * one large call per step (the reference runs the targets one after another on the images still
 * robust: per pair the iterations are the same). Per image, the first target whose adversarial
 * fits in eps gives the result. Images the model already misclassifies stay clean and count as fooled.
 */
export async function fabTargeted(model: Classifier, x: Tensor4D, y: Int32Array, o: FabOptions): Promise<{ adversarial: Float32Array; fooled: Uint8Array }> {
  const m = y.length,
    d = x.size / m;
  const clean = Float32Array.from((await x.data()) as Float32Array);
  const adversarial = Float32Array.from(clean);
  const z = await inferLogits(model, x);
  const pred = argmaxRows((await z.data()) as Float32Array, m, model.numClasses);
  z.dispose();
  const fooled = Uint8Array.from(pred, (p, i) => (p !== y[i] ? 1 : 0));
  const lists = await rankedTargets(model, x, Math.min(o.targets, model.numClasses - 1));
  const nt = lists.length;
  for (let r = 0; r < o.restarts; r++) {
    const rows = Array.from({ length: m }, (_, i) => i).filter((i) => !fooled[i]);
    if (!rows.length || !(o.eps > 0)) break;
    const k = rows.length;
    const x0 = new Float32Array(nt * k * d);
    const ys = new Int32Array(nt * k),
      ts = new Int32Array(nt * k),
      group = new Int32Array(nt * k);
    lists.forEach((t, ti) =>
      rows.forEach((img, j) => {
        const row = ti * k + j;
        x0.set(clean.subarray(img * d, (img + 1) * d), row * d);
        ys[row] = y[img];
        ts[row] = t[img];
        group[row] = j;
      }),
    );
    const res = await fabRun(model, x0, ys, ts, o, r > 0, o.seed + 7919 * r, group);
    for (let row = 0; row < nt * k; row++) {
      const img = rows[group[row]];
      if (fooled[img] || !(res.best[row] <= o.eps)) continue; // counted only within the budget
      fooled[img] = 1;
      adversarial.set(res.adv.subarray(row * d, (row + 1) * d), img * d);
    }
  }
  return { adversarial, fooled };
}
