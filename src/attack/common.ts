/**
 * Helpers shared by the attacks: option parsing, targets, gradients of logit-based losses,
 * projections onto norm balls, and success checks. Everything that returns a tensor runs in
 * tf.tidy so callers only own what they get back.
 */
import { tf, projectLinf, Tensor1D, Tensor2D, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { UserError } from '../data/types';
import { createRng } from '../data/random';
import type { Attack, AttackOptions, AttackSettings, Norm } from './types';
import { ATTACK_LOSSES, AttackLoss } from './loss';

/** The names every attack takes: the fields of AttackOptions (a Record, so none is forgotten). */
const COMMON_OPTIONS: Record<keyof AttackOptions, true> = {
  eps: true,
  targeted: true,
  target: true,
  targets: true,
  steps: true,
  stepSize: true,
  randomStart: true,
  restarts: true,
  seed: true,
  loss: true,
  eightBit: true,
  maxQueries: true,
  rescaleSchedule: true,
  targetClasses: true,
};

/**
 * Refuses option names the attack does not know (a misspelt one would silently fall back to its
 * default), listing the known ones. The registry's attacks call it on every run.
 */
export function checkOptionNames(attack: Pick<Attack, 'name' | 'extraOptions'>, o: object): void {
  const known = [...Object.keys(COMMON_OPTIONS), ...(attack.extraOptions ?? [])];
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length) {
    throw new UserError(
      `${attack.name}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}; known options are ${known.join(', ')}`,
    );
  }
}

/** Adam-based attacks (C&W, L-BFGS) step by `learningRate`; `stepSize` means a sign step. */
export function rejectStepSize(o: AttackOptions, attack: string): void {
  if (o.stepSize !== undefined) throw new UserError(`${attack}: stepSize is a sign step; ${attack}'s Adam step is learningRate`);
}

/** A finite number option. */
export function numberOption<O extends AttackOptions>(o: O, key: keyof O & string, def: number): number {
  const v: unknown = o[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`option '${key}' must be a finite number, got ${String(v)}`);
  return v;
}

export function intOption<O extends AttackOptions>(o: O, key: keyof O & string, def: number, min = 0): number {
  const v = numberOption(o, key, def);
  if (!Number.isInteger(v) || v < min) throw new UserError(`option '${key}' must be an integer ≥ ${min}, got ${v}`);
  return v;
}

export function stringOption<T extends string, O extends AttackOptions = AttackOptions>(o: O, key: keyof O & string, allowed: readonly T[], def: T): T {
  const v: unknown = o[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new UserError(`option '${key}' must be one of ${allowed.join(', ')}, got ${String(v)}`);
  }
  return v as T;
}

/** The budget of an eps-bounded attack: required, finite, ≥ 0. */
export function requireEps(o: AttackOptions, attack: string): number {
  const eps = o.eps;
  if (eps === undefined) throw new UserError(`attack '${attack}' needs eps`);
  if (!Number.isFinite(eps) || eps < 0) throw new UserError(`attack '${attack}': eps must be a finite number ≥ 0, got ${eps}`);
  return eps;
}

/** Class ids of a label tensor as an Int32Array (labels may arrive as int32 or float32). */
export function labelArray(labels: Tensor1D): Int32Array {
  return Int32Array.from(labels.dataSync() as ArrayLike<number>);
}

/**
 * Per-image targets when `targeted`, else null. `target` applies to every image, `targets`
 * gives one per image. Out-of-range ids are a UserError (not silently wrapped by oneHot).
 */
export function resolveTargets(o: AttackOptions, n: number, numClasses: number, attack: string): Int32Array | null {
  if (!o.targeted) return null;
  let t: Int32Array;
  if (o.targets) {
    if (o.targets.length !== n) throw new UserError(`attack '${attack}': targets has ${o.targets.length} entries for ${n} images`);
    t = o.targets;
  } else if (o.target !== undefined) {
    t = new Int32Array(n).fill(o.target);
  } else {
    throw new UserError(`attack '${attack}': targeted mode needs target or targets`);
  }
  for (const v of t) {
    if (!Number.isInteger(v) || v < 0 || v >= numClasses) {
      throw new UserError(`attack '${attack}': target class ${v} is outside 0..${numClasses - 1}`);
    }
  }
  return t;
}

/**
 * The loss an attack is to climb: 'ce' unless set; an attack with an objective of its own
 * (DeepFool, C&W, JSMA…) refuses any loss rather than silently ignoring it.
 */
export function lossOption(o: AttackOptions, attack: Pick<Attack, 'name' | 'takesLoss'>): AttackLoss {
  if (o.loss === undefined) return 'ce';
  if (!attack.takesLoss) throw new UserError(`attack '${attack.name}' has its own objective: a loss (${o.loss}) does not apply to it`);
  if (!(ATTACK_LOSSES as readonly string[]).includes(o.loss)) throw new UserError(`unknown loss '${String(o.loss)}': use one of ${ATTACK_LOSSES.join(', ')}`);
  return o.loss;
}

/** Rejects targeted mode for attacks that have none (rather than silently running untargeted). */
export function rejectTargeted(o: AttackOptions, attack: string): void {
  if (o.targeted) throw new UserError(`attack '${attack}' has no targeted mode`);
}

/** Row-wise argmax of a [n, k] logits array. */
export function argmaxRows(logits: Float32Array | Int32Array, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/**
 * Margin on logits: untargeted Z_y − max_{j≠y} Z_j, targeted max_{j≠t} Z_j − Z_t.
 * Negative exactly when the attack has succeeded, so "lower is better" in both modes.
 */
export function marginsFromLogits(logits: Float32Array, n: number, k: number, cls: Int32Array, targeted: boolean): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = cls[i];
    let other = -Infinity;
    for (let j = 0; j < k; j++) if (j !== c && logits[i * k + j] > other) other = logits[i * k + j];
    const zc = logits[i * k + c];
    out[i] = targeted ? other - zc : zc - other;
  }
  return out;
}

/** The same margin as a differentiable tensor [n]. */
export function marginTensor(logits: Tensor2D, cls: Tensor1D, targeted: boolean): Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const oh = tf.oneHot(tf.cast(cls, 'int32'), k);
    const zc = tf.sum(tf.mul(logits, oh), 1);
    // Push the class itself far down so max picks the best other class.
    const other = tf.max(tf.sub(logits, tf.mul(oh, 1e9)), 1);
    return (targeted ? tf.sub(other, zc) : tf.sub(zc, other)) as Tensor1D;
  });
}

/** Summed (not averaged) cross-entropy on logits: each image's gradient keeps its own scale. */
export function ceSum(logits: Tensor2D, cls: Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const oh = tf.oneHot(tf.cast(cls, 'int32'), logits.shape[1]);
    return tf.losses.softmaxCrossEntropy(oh, logits, undefined, undefined, tf.Reduction.SUM) as tf.Scalar;
  });
}

// projectLinf lives with the tensors (inference/tf.ts): adversarial training uses it too.
export { projectLinf };

/** Per-image L2 norm as [n, 1, 1, 1] (broadcasts against images). */
export function l2PerImage(d: Tensor4D): Tensor4D {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(d), [1, 2, 3], true)) as Tensor4D);
}

/**
 * Projects `adv` onto the L2 ball of radius eps around `clean`, then clips to [0, 1]. Clipping
 * after projecting is safe: it moves every coordinate towards `clean`, so the norm only shrinks.
 * The 1e-6 shrink absorbs float32 rounding so the bound holds when measured afterwards.
 */
export function projectL2(adv: Tensor4D, clean: Tensor4D, eps: number): Tensor4D {
  return tf.tidy(() => {
    const d: Tensor4D = tf.sub(adv, clean);
    const norm = l2PerImage(d);
    const scale = tf.minimum(1, tf.div(eps * (1 - 1e-6), tf.maximum(norm, 1e-12)));
    return tf.clipByValue(tf.add(clean, tf.mul(d, scale)), 0, 1) as Tensor4D;
  });
}

/** Predicted class per image, and the logits it came from ([n, k] row-major). */
export async function predictWithLogits(model: Classifier, x: Tensor4D): Promise<{ pred: Int32Array; logits: Float32Array }> {
  const z = await inferLogits(model, x);
  const p = tf.argMax(z, 1);
  const [pred, logits] = [Int32Array.from(await p.data()), Float32Array.from(await z.data())];
  tf.dispose([z, p]);
  return { pred, logits };
}

/** Predicted class per image. */
export async function predictBatch(model: Classifier, x: Tensor4D): Promise<Int32Array> {
  return (await predictWithLogits(model, x)).pred;
}

/** 1 where the prediction is the target (targeted) or differs from the label (untargeted). */
export function successFromPredictions(pred: Int32Array, labels: Int32Array, targets: Int32Array | null): Uint8Array {
  const s = new Uint8Array(pred.length);
  for (let i = 0; i < pred.length; i++) s[i] = (targets ? pred[i] === targets[i] : pred[i] !== labels[i]) ? 1 : 0;
  return s;
}

export async function successOf(model: Classifier, adv: Tensor4D, labels: Int32Array, targets: Int32Array | null): Promise<Uint8Array> {
  return successFromPredictions(await predictBatch(model, adv), labels, targets);
}

/**
 * For attacks that need a target even when untargeted (JSMA, L-BFGS): the runner-up class by
 * clean logits, or a random class other than the label.
 */
export async function fallbackTargets(model: Classifier, x: Tensor4D, labels: Int32Array, mode: 'second' | 'random', seed: number): Promise<Int32Array> {
  const n = labels.length,
    k = model.numClasses;
  const out = new Int32Array(n);
  if (mode === 'random') {
    const rand = createRng(seed);
    for (let i = 0; i < n; i++) {
      let t = Math.floor(rand() * (k - 1));
      if (t >= labels[i]) t++;
      out[i] = t;
    }
    return out;
  }
  const lg = await inferLogits(model, x);
  const z = (await lg.data()) as Float32Array;
  lg.dispose();
  for (let i = 0; i < n; i++) {
    let best = -1;
    for (let j = 0; j < k; j++) if (j !== labels[i] && (best < 0 || z[i * k + j] > z[i * k + best])) best = j;
    out[i] = best;
  }
  return out;
}

/** A seed for tf random ops derived from the options (tf wants a number; undefined = random). */
export function seedOption(o: AttackOptions, def = 0): number {
  return o.seed ?? def;
}

/** Per-image select: rows of `a` where cond[i], else rows of `b` (cond is [n] bool). */
export function selectRows<T extends tf.Tensor>(cond: tf.Tensor, a: T, b: T): T {
  return tf.tidy(() => {
    const shape = [cond.shape[0], ...a.shape.slice(1).map(() => 1)];
    return tf.where(tf.reshape(cond, shape), a, b) as T;
  });
}

/**
 * One Adam update with bias correction, kept per tensor element so every image in a batch has its
 * own state (C&W and L-BFGS search a separate constant per image). `s` counts steps from 1.
 * Returns the new moments and the step direction m̂ / (√v̂ + 1e-8), to be scaled by the learning rate.
 */
export function adamUpdate(g: Tensor4D, m: Tensor4D, v: Tensor4D, s: number, b1 = 0.9, b2 = 0.999): { m: Tensor4D; v: Tensor4D; step: Tensor4D } {
  const m2 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)) as Tensor4D;
  const v2 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)) as Tensor4D;
  const step = tf.div(tf.div(m2, 1 - Math.pow(b1, s)), tf.add(tf.sqrt(tf.div(v2, 1 - Math.pow(b2, s))), 1e-8)) as Tensor4D;
  return { m: m2, v: v2, step };
}

/**
 * One step of the per-image binary search on the constant c that C&W and L-BFGS trade distance
 * against misclassification with. Each image either raises its c (doubling tenfold until an upper
 * bound is known, then bisecting) or lowers it (bisecting). C&W raises c when no adversarial was
 * found (weigh the misclassification term more); L-BFGS, whose c weighs the distance, raises it on
 * success. `raise[i]` says which way image i goes.
 */
export function bisectConstants(c: Float32Array, lower: Float32Array, upper: Float32Array, raise: (i: number) => boolean): void {
  for (let i = 0; i < c.length; i++) {
    if (raise(i)) {
      lower[i] = Math.max(lower[i], c[i]);
      c[i] = Number.isFinite(upper[i]) ? (lower[i] + upper[i]) / 2 : c[i] * 10;
    } else {
      upper[i] = Math.min(upper[i], c[i]);
      c[i] = (lower[i] + upper[i]) / 2;
    }
  }
}

/** The parsed inputs every eps-bounded gradient attack starts from. */
export interface EpsAttackInput {
  model: Classifier;
  images: Tensor4D;
  labels: Tensor1D;
  y: Int32Array;
  targets: Int32Array | null;
  eps: number;
  loss: AttackLoss;
  options: AttackOptions;
}

/** An adversarial batch with its logits already measured (by the native step that made it). */
export interface MeasuredBatch {
  adversarial: Tensor4D;
  logits: Tensor2D;
}

/**
 * The shell shared by the eps-bounded gradient attacks (FGSM, FGV, BIM, MI-FGSM, PGD): it parses
 * eps and targets, lets `make` build the adversarial batch, and measures success (on the logits
 * `make` returns with it, else by a forward pass).
 */
export function epsAttack(
  name: string,
  title: string,
  norm: Norm,
  make: (a: EpsAttackInput) => Tensor4D | MeasuredBatch | Promise<Tensor4D | MeasuredBatch>,
  settings: (options: AttackOptions) => AttackSettings = () => ({}),
): Attack {
  return {
    name,
    title,
    norm,
    usesEps: true,
    supportsTargeted: true,
    takesLoss: true,
    settings: (options) => ({ loss: options.loss ?? 'ce', ...settings(options) }),
    async run(model, images, labels, options) {
      const eps = requireEps(options, name);
      const loss = lossOption(options, { name, takesLoss: true });
      const y = labelArray(labels);
      const targets = resolveTargets(options, y.length, model.numClasses, name);
      const made = await make({ model, images, labels, y, targets, eps, loss, options });
      if (made instanceof tf.Tensor) {
        const { pred, logits } = await predictWithLogits(model, made);
        return { adversarial: made, success: successFromPredictions(pred, y, targets), logits };
      }
      const logits = Float32Array.from(await made.logits.data());
      made.logits.dispose();
      const pred = argmaxRows(logits, y.length, model.numClasses);
      return { adversarial: made.adversarial, success: successFromPredictions(pred, y, targets), logits };
    },
  };
}
