/**
 * Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
 * of diverse parameter-free attacks"), L∞ and L2, as in their reference code:
 *   - start: a random point on the surface of the eps ball (L∞: eps · u / ‖u‖∞, u uniform), clipped;
 *   - step: z = P(x + η·sign ∇) (L2: η·∇/‖∇‖₂), then x ← P(x + α(z − x) + (1 − α)(x − x_prev)),
 *     momentum α = 0.75 (1 on the first step), η starting at 2·eps;
 *   - checkpoints after 22 % of the iterations, then at intervals shrinking by 3 % of them to
 *     at least 6 %: η halves for an image (which restarts from its best point) when, since the
 *     last checkpoint, its loss rose in at most ρ = 75 % of the steps, or its best loss did not
 *     improve although η was not halved at the last checkpoint.
 * The loss is CE or DLR untargeted, or the targeted DLR (APGD-T, targets the classes the clean
 * image ranks 2nd, 3rd, … 10th). Gradients and logits come from objectiveGradient, so a native
 * engine serves both.
 *
 * An image stops being attacked once it is misclassified: the reference keeps iterating on it,
 * but per image the iterations are independent, so robust accuracy is the same at less cost.
 */
import { tf, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { objectiveGradient, objectiveValue } from './loss';
import { argmaxRows, l2PerImage } from './common';
import { apgdStep } from './apgd-step';

export interface ApgdOptions {
  norm: 'linf' | 'l2';
  eps: number;
  /** Iterations per run (the paper's 100). */
  steps: number;
  /** Runs from fresh random starts on the images not yet fooled. */
  restarts: number;
  /** The untargeted objective; targeted runs (targets given) climb the targeted DLR. */
  loss: 'ce' | 'dlr';
  /** Step-size halving threshold ρ (0.75). */
  rho: number;
  /** Weight α of the new step against the previous one (0.75). */
  momentum: number;
  seed: number;
}

export const APGD_DEFAULTS = { steps: 100, restarts: 1, rho: 0.75, momentum: 0.75 } as const;

/** Per image: the adversarial found (or, when none, the highest-loss point) and whether it fools. */
export interface ApgdResult {
  adversarial: Float32Array;
  fooled: Uint8Array;
}

/** The checkpoint schedule: iterations after which step sizes are reviewed. */
export function apgdCheckpoints(steps: number): number[] {
  const first = Math.max(Math.floor(0.22 * steps), 1);
  const min = Math.max(Math.floor(0.06 * steps), 1);
  const decr = Math.max(Math.floor(0.03 * steps), 1);
  const out: number[] = [];
  for (let k = first, at = first; at <= steps; k = Math.max(k - decr, min), at += k) out.push(at);
  return out;
}

/** A random point on the eps sphere of the norm around each image, clipped to [0, 1]. */
function randomStart(x: Tensor4D, norm: 'linf' | 'l2', eps: number, seed: number): Tensor4D {
  return tf.tidy(() => {
    const t = norm === 'linf' ? tf.randomUniform(x.shape, -1, 1, 'float32', seed) : tf.randomNormal(x.shape, 0, 1, 'float32', seed);
    const size = norm === 'linf' ? tf.max(tf.abs(t), [1, 2, 3], true) : l2PerImage(t as Tensor4D);
    return tf.clipByValue(tf.add(x, tf.mul(eps, tf.div(t, tf.add(size, 1e-12)))), 0, 1) as Tensor4D;
  });
}

/**
 * The running state of one APGD run on the images still active (rows follow `rows`), as flat
 * HWC floats per row: the steps are plain loops (apgd-step.ts) and only the gradient call sees tensors.
 */
interface State {
  rows: number[];
  x: Float32Array;
  adv: Float32Array;
  prev: Float32Array;
  grad: Float32Array;
  best: Float32Array;
  bestGrad: Float32Array;
}

/** The rows `keep` (increasing) of a flat per-row array with rows of d values. */
function pickRows(a: Float32Array, keep: number[], d: number): Float32Array {
  const out = new Float32Array(keep.length * d);
  keep.forEach((j, k) => out.set(a.subarray(j * d, (j + 1) * d), k * d));
  return out;
}

function keepRows(s: State, keep: number[], d: number): State {
  const g = (a: Float32Array) => pickRows(a, keep, d);
  return { rows: keep.map((i) => s.rows[i]), x: g(s.x), adv: g(s.adv), prev: g(s.prev), grad: g(s.grad), best: g(s.best), bestGrad: g(s.bestGrad) };
}

/** Copies row j of `from` into row j of `to`. */
function copyRow(from: Float32Array, to: Float32Array, j: number, d: number): void {
  to.set(from.subarray(j * d, (j + 1) * d), j * d);
}

/** Gradient, loss per image and predictions at the current point. */
async function evaluate(
  model: Classifier,
  s: State,
  shape: number[],
  y: Int32Array,
  t: Int32Array | null,
  loss: 'ce' | 'dlr',
): Promise<{ grad: Float32Array; value: Float32Array; pred: Int32Array }> {
  const m = s.rows.length;
  const x = tf.tensor4d(s.adv, [m, shape[1], shape[2], shape[3]]);
  const yt = tf.tensor1d(
    Int32Array.from(s.rows, (r) => y[r]),
    'int32',
  );
  const tt = t
    ? tf.tensor1d(
        Int32Array.from(s.rows, (r) => t[r]),
        'int32',
      )
    : null;
  const { grad, logits } = await objectiveGradient(model, x, yt, tt, tt ? 'dlr' : loss);
  const v = objectiveValue(logits, yt, tt, tt ? 'dlr' : loss);
  const value = Float32Array.from((await v.data()) as Float32Array);
  const pred = argmaxRows((await logits.data()) as Float32Array, m, model.numClasses);
  const g = Float32Array.from((await grad.data()) as Float32Array);
  tf.dispose([x, yt, ...(tt ? [tt] : []), v, logits, grad]);
  return { grad: g, value, pred };
}

/**
 * One APGD run on images x (with labels y and, targeted, targets t), from a random start drawn
 * with `seed`. Writes each image's result into `out` (HWC floats per image) and returns which fool.
 * Rows with the same `group` entry (one image under several targets) leave the run together as
 * soon as one of them fools: the image is broken, its other targets need no more steps.
 */
export async function apgdRun(
  model: Classifier,
  x: Tensor4D,
  y: Int32Array,
  t: Int32Array | null,
  o: ApgdOptions,
  seed: number,
  out: Float32Array,
  group?: Int32Array,
): Promise<Uint8Array> {
  const m = y.length,
    d = x.size / m;
  const checkpoints = new Set(apgdCheckpoints(o.steps));
  const fooled = new Uint8Array(m);
  const eta = new Float32Array(m).fill(2 * o.eps);
  const history: Float32Array[] = []; // loss per iteration, by image
  const lossBest = new Float32Array(m),
    bestAtCheck = new Float32Array(m);
  const halvedAtCheck = new Uint8Array(m).fill(1);
  const startT = randomStart(x, o.norm, o.eps, seed);
  const start = Float32Array.from((await startT.data()) as Float32Array);
  startT.dispose();
  let s: State = {
    rows: Array.from({ length: m }, (_, i) => i),
    x: Float32Array.from((await x.data()) as Float32Array),
    adv: start,
    prev: start.slice(),
    grad: new Float32Array(m * d),
    best: start.slice(),
    bestGrad: new Float32Array(m * d),
  };
  let lastCheck = -1;
  for (let i = -1; i < o.steps && s.rows.length > 0; i++) {
    if (i >= 0) {
      const rowEta = Float32Array.from(s.rows, (r) => eta[r]);
      const next = apgdStep({ x: s.x, adv: s.adv, prev: s.prev, grad: s.grad, eta: rowEta, rows: s.rows.length }, o.norm, o.eps, o.momentum, i === 0);
      s.prev = s.adv;
      s.adv = next;
    }
    const r = await evaluate(model, s, x.shape, y, t, o.loss);
    s.grad = r.grad;
    const row = new Float32Array(m);
    s.rows.forEach((img, j) => {
      row[img] = r.value[j];
      if (i < 0 || r.value[j] > lossBest[img]) {
        lossBest[img] = r.value[j];
        copyRow(s.adv, s.best, j, d);
        copyRow(s.grad, s.bestGrad, j, d);
      }
    });
    if (i < 0) bestAtCheck.set(lossBest);
    else history.push(row);
    // Misclassified: this iterate is the image's adversarial; it leaves the run.
    const fooledNow = s.rows.map((img, j) => (r.pred[j] !== y[img] ? j : -1)).filter((j) => j >= 0);
    for (const j of fooledNow) {
      fooled[s.rows[j]] = 1;
      out.set(s.adv.subarray(j * d, (j + 1) * d), s.rows[j] * d);
    }
    if (i >= 0 && checkpoints.has(i + 1)) {
      const k = i - lastCheck;
      const reset = reviewStepSizes(s.rows, history, i, k, o.rho, lossBest, bestAtCheck, halvedAtCheck, eta);
      lastCheck = i;
      reset.forEach((v, j) => {
        if (!v) return;
        copyRow(s.best, s.adv, j, d);
        copyRow(s.bestGrad, s.grad, j, d);
      });
    }
    if (fooledNow.length) {
      const gone = new Set(fooledNow);
      const broken = group ? new Set(fooledNow.map((j) => group[s.rows[j]])) : null;
      const keep = s.rows.map((_, j) => j).filter((j) => !gone.has(j) && !broken?.has((group as Int32Array)[s.rows[j]]));
      s = keepRows(s, keep, d);
    }
  }
  // Not fooled: the highest-loss point found.
  s.rows.forEach((img, j) => out.set(s.best.subarray(j * d, (j + 1) * d), img * d));
  return fooled;
}

/**
 * The checkpoint rule for the images in `rows` at iteration i, k iterations after the last one:
 * halve η where the loss rose in at most ρ·k of those steps, or where the best loss has not
 * improved and η was not halved last time. Returns, per row, whether the image restarts from
 * its best point. (As in the reference, the step before the first iteration counts as loss 0.)
 */
function reviewStepSizes(
  rows: number[],
  history: Float32Array[],
  i: number,
  k: number,
  rho: number,
  lossBest: Float32Array,
  bestAtCheck: Float32Array,
  halvedAtCheck: Uint8Array,
  eta: Float32Array,
): Uint8Array {
  const reset = new Uint8Array(rows.length);
  rows.forEach((img, j) => {
    let rises = 0;
    for (let c = 0; c < k; c++) {
      const prev = i - c - 1 >= 0 ? history[i - c - 1][img] : 0;
      if (history[i - c][img] > prev) rises++;
    }
    const halve = rises <= k * rho || (!halvedAtCheck[img] && bestAtCheck[img] >= lossBest[img]);
    halvedAtCheck[img] = halve ? 1 : 0;
    bestAtCheck[img] = lossBest[img];
    if (halve) {
      eta[img] /= 2;
      reset[j] = 1;
    }
  });
  return reset;
}

/** The classes each image's clean logits rank 2nd, 3rd, … (`count` of them), as target lists. */
export async function rankedTargets(model: Classifier, x: Tensor4D, count: number): Promise<Int32Array[]> {
  const m = x.shape[0],
    k = model.numClasses;
  const z = await inferLogits(model, x);
  const v = (await z.data()) as Float32Array;
  z.dispose();
  const lists = Array.from({ length: count }, () => new Int32Array(m));
  for (let i = 0; i < m; i++) {
    const order = Array.from({ length: k }, (_, c) => c).sort((a, b) => v[i * k + b] - v[i * k + a]);
    for (let r = 0; r < count; r++) lists[r][i] = order[r + 1];
  }
  return lists;
}

/**
 * APGD over `restarts` runs (APGD-CE / APGD-DLR), or with `targetCount` > 0 over the target
 * classes ranked 2nd … (APGD-T), each on the images not yet fooled. Images the model already
 * misclassifies are left clean and count as fooled. Returns HWC floats and fooled flags.
 */
export async function apgdAttack(model: Classifier, x: Tensor4D, y: Int32Array, o: ApgdOptions, targetCount = 0): Promise<ApgdResult> {
  const m = y.length,
    d = x.size / m;
  const adversarial = Float32Array.from((await x.data()) as Float32Array);
  const fooled = new Uint8Array(m);
  const clean = await inferLogits(model, x);
  const pred = argmaxRows((await clean.data()) as Float32Array, m, model.numClasses);
  clean.dispose();
  for (let i = 0; i < m; i++) if (pred[i] !== y[i]) fooled[i] = 1;
  const targets = targetCount > 0 ? await rankedTargets(model, x, targetCount) : null;
  for (let r = 0; r < o.restarts; r++) {
    const rows = Array.from({ length: m }, (_, i) => i).filter((i) => !fooled[i]);
    if (!rows.length || !(o.eps > 0)) break;
    const idx = tf.tensor1d(rows, 'int32');
    const xs = tf.gather(x, idx) as Tensor4D;
    idx.dispose();
    const part = targets ? await targetedRun(model, xs, rows, y, targets, o, o.seed + 7919 * r) : await untargetedRun(model, xs, rows, y, o, o.seed + 7919 * r);
    xs.dispose();
    rows.forEach((img, j) => {
      if (!part.fooled[j] && r > 0) return; // keep the first run's best point for images nothing fooled
      adversarial.set(part.adversarial.subarray(j * d, (j + 1) * d), img * d);
      if (part.fooled[j]) fooled[img] = 1;
    });
  }
  return { adversarial, fooled };
}

/** One untargeted run on the images `rows` (xs holds them). */
async function untargetedRun(model: Classifier, xs: Tensor4D, rows: number[], y: Int32Array, o: ApgdOptions, seed: number): Promise<ApgdResult> {
  const adversarial = new Float32Array(xs.size);
  const fooled = await apgdRun(
    model,
    xs,
    Int32Array.from(rows, (i) => y[i]),
    null,
    o,
    seed,
    adversarial,
  );
  return { adversarial, fooled };
}

/**
 * One targeted run on the images `rows` towards all their targets at once: every (image, target)
 * pair is a row of one batch, so a native engine gets one large call per step instead of one per
 * target. The reference runs the targets one after another on the images still robust; per
 * pair the iterations are the same, so the same images are broken, and an image leaves the batch
 * (all its targets) once one target fools it. Per image: the first target's adversarial that
 * fools, else the first target's highest-loss point.
 */
async function targetedRun(
  model: Classifier,
  xs: Tensor4D,
  rows: number[],
  y: Int32Array,
  targets: Int32Array[],
  o: ApgdOptions,
  seed: number,
): Promise<ApgdResult> {
  const k = rows.length,
    d = xs.size / k,
    nt = targets.length;
  const stacked = tf.tidy(() => tf.tile(xs, [nt, 1, 1, 1]) as Tensor4D);
  const ys = new Int32Array(k * nt),
    ts = new Int32Array(k * nt),
    group = new Int32Array(k * nt);
  for (let r = 0; r < nt; r++) {
    rows.forEach((img, j) => {
      ys[r * k + j] = y[img];
      ts[r * k + j] = targets[r][img];
      group[r * k + j] = j;
    });
  }
  const out = new Float32Array(k * nt * d);
  const f = await apgdRun(model, stacked, ys, ts, o, seed, out, group).finally(() => stacked.dispose());
  const adversarial = out.slice(0, k * d);
  const fooled = new Uint8Array(k);
  for (let r = 0; r < nt; r++) {
    for (let j = 0; j < k; j++) {
      if (fooled[j] || !f[r * k + j]) continue;
      fooled[j] = 1;
      adversarial.set(out.subarray((r * k + j) * d, (r * k + j + 1) * d), j * d);
    }
  }
  return { adversarial, fooled };
}
