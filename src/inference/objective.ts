/**
 * The objectives gradient attacks climb, as cotangents on the logits (and their values).
 *
 * Every objective is written as its cotangent on the logits, c = ∂objective/∂z, and the input
 * gradient is the vector-Jacobian product ∇x = Jᵀc: one forward and one backward pass whatever the
 * loss, and a native engine can supply the same product. The cotangents:
 *
 *   ce      untargeted +CE(y): c = softmax(z) − e_y;  targeted −CE(t): c = e_t − softmax(z),
 *           with the label's entry computed as −Σ_{j≠y} p_j (p_y − 1 cancels in float32).
 *           On a confident image c is tiny (the input gradient ~1e-8 per pixel: fine, the signs
 *           are exact, see signExact). Where an image's c falls below 1e-30 (a logit gap of ≳ 69,
 *           where float32 backprop underflows to exact zeros, and softmax itself saturates at
 *           ≳ 103) it is replaced for that image by the CE direction computed without
 *           underflow: ∇CE / (1 − p_y) = softmax over the other classes − e_y (targeted: the
 *           mirror image). Same direction, so sign and normalised steps are unchanged.
 *   margin  untargeted max_{j≠y} z_j − z_y;  targeted z_t − max_{j≠t} z_j (the logit margin,
 *           scale-free: cannot saturate).
 *   dlr     Croce & Hein's (2020) difference of logits ratio, untargeted
 *           −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3), targeted −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2),
 *           π the classes sorted by logit: invariant to shifting and scaling the logits.
 */
import { tf, Tensor1D, Tensor2D, Tensor4D } from './tf';

export const ATTACK_LOSSES = ['ce', 'margin', 'dlr'] as const;
export type AttackLoss = (typeof ATTACK_LOSSES)[number];

/** Logits [n, k] and the input gradient [n, s, s, 3] of an objective; the caller owns both. */
export interface ObjectiveGradient {
  logits: Tensor2D;
  grad: Tensor4D;
}

/**
 * One L∞ sign step up `loss` from x: clip(x + step·sign(∇x), clean ± eps, [0, 1]) (FGSM is x = clean,
 * step = eps; a PGD step any point of the ball). `logits`: also return the logits of the result.
 */
export interface LinfStepRequest {
  clean: Tensor4D;
  labels: Tensor1D;
  targets: Tensor1D | null;
  loss: AttackLoss;
  eps: number;
  step: number;
  logits: boolean;
}

/** The stepped batch and, when asked, its logits; the caller owns both. */
export interface LinfStepResult {
  adv: Tensor4D;
  logits: Tensor2D | null;
}

/** What differentiating through a model needs: differentiable logits, or a native vjp. */
export interface Differentiable {
  logits(images: Tensor4D): Tensor2D;
  vjp?(x: Tensor4D, cotangent: Tensor2D | ((z: Tensor2D) => Tensor2D)): Promise<ObjectiveGradient>;
}

/** Below this an image's CE cotangent is recomputed without underflow (see the header). */
const CE_UNDERFLOW = 1e-30;

/** One-hot rows of the argmax of z with the class `exclude` (one-hot) masked out. */
function argmaxOtherOneHot(z: Tensor2D, exclude: Tensor2D): Tensor2D {
  const k = z.shape[1];
  return tf.oneHot(tf.argMax(tf.sub(z, tf.mul(exclude, 1e30)), 1), k) as Tensor2D;
}

/** softmax over the classes other than `exclude` (a one-hot row), zero at the excluded class. */
function softmaxOthers(z: Tensor2D, exclude: Tensor2D): Tensor2D {
  return tf.mul(tf.softmax(tf.sub(z, tf.mul(exclude, 1e30))), tf.sub(1, exclude)) as Tensor2D;
}

/**
 * softmax(z) − e_c with the c entry written −Σ_{j≠c} p_j: p_c − 1 cancels in float32 (p_c is 1 to
 * within an ulp on a confident image, so it came out as 0 or a rounding step of 6e-8 that swamped
 * the other entries and left the gradient's direction to chance), the sum does not.
 */
function softmaxMinusOneHot(z: Tensor2D, cls: Tensor2D): Tensor2D {
  const others = tf.mul(tf.softmax(z), tf.sub(1, cls));
  return tf.sub(others, tf.mul(cls, tf.sum(others, 1, true))) as Tensor2D;
}

function ceCotangent(z: Tensor2D, cls: Tensor2D, targeted: boolean): Tensor2D {
  const plain = targeted ? tf.neg(softmaxMinusOneHot(z, cls)) : softmaxMinusOneHot(z, cls);
  const rescaled = targeted ? tf.sub(cls, softmaxOthers(z, cls)) : tf.sub(softmaxOthers(z, cls), cls);
  const under = tf.less(tf.max(tf.abs(plain), 1, true), CE_UNDERFLOW);
  return tf.where(tf.tile(under, [1, z.shape[1]]), rescaled, plain) as Tensor2D;
}

function marginCotangent(z: Tensor2D, cls: Tensor2D, targeted: boolean): Tensor2D {
  const other = argmaxOtherOneHot(z, cls);
  return (targeted ? tf.sub(cls, other) : tf.sub(other, cls)) as Tensor2D;
}

/** The one-hot rows of the classes ranked r (0 = largest logit), for each r asked. */
function rankedOneHots(z: Tensor2D, ranks: number[]): Tensor2D[] {
  const k = z.shape[1];
  const { indices } = tf.topk(z, Math.min(k, Math.max(...ranks) + 1));
  const last = indices.shape[1] - 1;
  return ranks.map((r) => tf.oneHot(tf.squeeze(tf.slice(indices, [0, Math.min(r, last)], [-1, 1]), [1]), k) as Tensor2D);
}

function dlrCotangent(z: Tensor2D, y: Tensor2D, t: Tensor2D | null): Tensor2D {
  const zy = tf.sum(tf.mul(z, y), 1, true);
  let num: tf.Tensor, dNum: tf.Tensor, den: tf.Tensor, dDen: tf.Tensor;
  if (t) {
    const [p1, p3, p4] = rankedOneHots(z, [0, 2, 3]);
    const dir = tf.sub(p1, tf.div(tf.add(p3, p4), 2));
    num = tf.sub(zy, tf.sum(tf.mul(z, t), 1, true));
    dNum = tf.sub(y, t);
    den = tf.sum(tf.mul(z, dir), 1, true);
    dDen = dir;
  } else {
    const [p1, p3] = rankedOneHots(z, [0, 2]);
    const other = argmaxOtherOneHot(z, y);
    num = tf.sub(zy, tf.sum(tf.mul(z, other), 1, true));
    dNum = tf.sub(y, other);
    den = tf.sum(tf.mul(z, tf.sub(p1, p3)), 1, true);
    dDen = tf.sub(p1, p3);
  }
  const d = tf.add(den, 1e-12);
  // objective = −num/d  ⇒  ∂ = −∂num/d + num·∂d/d²
  return tf.add(tf.neg(tf.div(dNum, d)), tf.mul(tf.div(num, tf.square(d)), dDen)) as Tensor2D;
}

/**
 * ∂objective/∂logits [n, k] for labels (and, targeted, targets) given as int32 class ids.
 * Not differentiable itself: it is the constant a vector-Jacobian product is taken with.
 */
export function objectiveCotangent(z: Tensor2D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss): Tensor2D {
  return tf.tidy(() => {
    const k = z.shape[1];
    const y = tf.oneHot(tf.cast(labels, 'int32'), k) as Tensor2D;
    const t = targets ? (tf.oneHot(tf.cast(targets, 'int32'), k) as Tensor2D) : null;
    if (loss === 'dlr') return dlrCotangent(z, y, t);
    if (loss === 'margin') return marginCotangent(z, t ?? y, t !== null);
    return ceCotangent(z, t ?? y, t !== null);
  });
}

/**
 * The objective's value per image [n] (higher = better for the attacker), for the same losses.
 * CE here is the plain per-image cross-entropy (−CE targeted).
 */
export function objectiveValue(z: Tensor2D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss): Tensor1D {
  return tf.tidy(() => {
    const k = z.shape[1];
    const y = tf.oneHot(tf.cast(labels, 'int32'), k) as Tensor2D;
    const t = targets ? (tf.oneHot(tf.cast(targets, 'int32'), k) as Tensor2D) : null;
    const at = (oh: tf.Tensor) => tf.sum(tf.mul(z, oh), 1);
    if (loss === 'ce') {
      const logp = tf.sub(z, tf.logSumExp(z, 1, true));
      return (t ? tf.sum(tf.mul(logp, t), 1) : tf.neg(tf.sum(tf.mul(logp, y), 1))) as Tensor1D;
    }
    if (loss === 'margin') {
      const c = t ?? y;
      const other = at(argmaxOtherOneHot(z, c));
      return (t ? tf.sub(at(c), other) : tf.sub(other, at(c))) as Tensor1D;
    }
    const zy = at(y);
    if (t) {
      const [p1, p3, p4] = rankedOneHots(z, [0, 2, 3]);
      return tf.neg(tf.div(tf.sub(zy, at(t)), tf.add(tf.sub(at(p1), tf.div(tf.add(at(p3), at(p4)), 2)), 1e-12))) as Tensor1D;
    }
    const [p1, p3] = rankedOneHots(z, [0, 2]);
    return tf.neg(tf.div(tf.sub(zy, at(argmaxOtherOneHot(z, y))), tf.add(tf.sub(at(p1), at(p3)), 1e-12))) as Tensor1D;
  });
}

/**
 * The logits z = model(x) and Jᵀc for a cotangent c computed from z: one forward and one
 * backward pass. The caller owns both tensors.
 */
export function logitsAndVjp(model: Differentiable, x: Tensor4D, cotangent: Tensor2D | ((z: Tensor2D) => Tensor2D)): ObjectiveGradient {
  let logits: Tensor2D | null = null;
  const grad = tf.tidy(
    () =>
      tf.grad((xx) => {
        const z = model.logits(xx as Tensor4D);
        // c is a constant of the product: computed from a copy of z made off the gradient tape (so a
        // cotangent may itself use tf.grad), and ∂Σ(z ⊙ c)/∂z = c exactly.
        const zc = tf.keep(tf.tensor2d(z.dataSync() as Float32Array, z.shape));
        logits = zc;
        const c = typeof cotangent === 'function' ? cotangent(zc) : cotangent;
        return tf.sum(tf.mul(z, c)) as tf.Scalar;
      })(x) as Tensor4D,
  );
  return { grad, logits: logits as unknown as Tensor2D };
}

/** Logits and the input gradient of a loss with tfjs's own autodiff (synchronous, tidy-safe). */
export function tfObjectiveGradient(model: Differentiable, x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss): ObjectiveGradient {
  return logitsAndVjp(model, x, (z) => objectiveCotangent(z, labels, targets, loss));
}

/**
 * Which logits the tfjs fallback of vjp returns: 'plain', a separate forward pass off the tape
 * (what inference gives: tfjs fuses bias and ReLU there, so they differ from the taped ones in
 * the last bits), or 'tape', those of the differentiated pass (free). A native vjp has one kind.
 */
export type VjpLogits = 'plain' | 'tape';

/**
 * The logits z = model(x) and Jᵀc, where the cotangent c is given or computed from z: the
 * classifier's native vjp when it has one, else tfjs autodiff (logitsAndVjp). The caller owns both.
 */
export async function vjp(
  model: Differentiable,
  x: Tensor4D,
  cotangent: Tensor2D | ((z: Tensor2D) => Tensor2D),
  logits: VjpLogits = 'plain',
): Promise<ObjectiveGradient> {
  if (model.vjp) return model.vjp(x, cotangent);
  const r = logitsAndVjp(model, x, cotangent);
  if (logits === 'tape') return r;
  r.logits.dispose();
  return { grad: r.grad, logits: tf.tidy(() => model.logits(x)) };
}

/**
 * ∇w of objective(w, a, z), where a = input(w) (tfjs ops; the identity when null) and z the
 * model's logits at a: the model's part through vjp (native when it has one), the rest by tfjs
 * autodiff of the surrogate objective(w, a, z held fixed) + Σ a ⊙ Jᵀc, whose gradient is the
 * whole objective's (with tfjs the very same float operations as one tf.grad over all of it).
 * Returns the gradient, the logits at a and a itself (the caller owns all three).
 */
export async function gradThroughModel(
  model: Differentiable,
  w: Tensor4D,
  input: ((w: Tensor4D) => Tensor4D) | null,
  objective: (w: Tensor4D, a: Tensor4D, z: Tensor2D) => tf.Scalar,
  logitsKind: VjpLogits = 'plain',
): Promise<{ grad: Tensor4D; logits: Tensor2D; input: Tensor4D }> {
  const a = input ? tf.tidy(() => input(w)) : w.clone();
  const cotangent = (z: Tensor2D) => tf.grad((zz) => objective(w, a, zz as Tensor2D))(z) as Tensor2D;
  const { logits, grad: ja } = await vjp(model, a, cotangent, logitsKind);
  const grad = tf.tidy(
    () =>
      tf.grad((ww) => {
        const aa = input ? input(ww as Tensor4D) : (ww as Tensor4D);
        return tf.add(objective(ww as Tensor4D, aa, logits), tf.sum(tf.mul(aa, ja))) as tf.Scalar;
      })(w) as Tensor4D,
  );
  ja.dispose();
  return { grad, logits, input: a };
}
