/**
 * The gradient-step loop behind BIM, PGD (L∞ and L2) and MI-FGSM: one helper so the projection,
 * clipping and tensor bookkeeping are written (and tested) once.
 */
import { tf, signExact, Tensor1D, Tensor2D, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import type { Attack, MomentumAttackOptions } from './types';
import { inputGradient, AttackLoss } from './loss';
import { epsAttack, MeasuredBatch, intOption, l2PerImage, marginsFromLogits, numberOption, projectL2, projectLinf, seedOption, selectRows } from './common';

export interface IterateOptions {
  norm: 'linf' | 'l2';
  eps: number;
  steps: number;
  stepSize: number;
  /** Starting point (already inside the ball); defaults to the clean images. */
  start?: Tensor4D;
  /** MI-FGSM decay factor μ; 0 (default) = plain BIM/PGD. */
  momentum?: number;
  /** The objective climbed (default 'ce'). */
  loss?: AttackLoss;
}

/** Runs the iterations and returns the final adversarial batch (caller disposes). */
export async function iterateAttack(model: Classifier, x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, o: IterateOptions): Promise<Tensor4D> {
  const r = await iterate(model, x, labels, targets, o, false);
  return r.adversarial;
}

/** An iterated batch and, when the native step measured them, its logits. */
interface Iterated {
  adversarial: Tensor4D;
  logits: Tensor2D | null;
}

/**
 * The iterations; `wantLogits`: also the logits of the result when the native step measured them
 * (its last call runs the forward of the result too), else null.
 */
async function iterate(model: Classifier, x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, o: IterateOptions, wantLogits: boolean): Promise<Iterated> {
  if (o.norm === 'linf' && !o.momentum && model.linfStep) return nativeLinfSteps(model.linfStep.bind(model), x, labels, targets, o, wantLogits);
  const project = o.norm === 'linf' ? projectLinf : projectL2;
  let adv = o.start ? o.start.clone() : x.clone();
  let g: Tensor4D | null = null; // momentum accumulator
  for (let s = 0; s < o.steps; s++) {
    const raw = await inputGradient(model, adv, labels, targets, o.loss);
    const next = tf.tidy(() => {
      let grad: Tensor4D = raw;
      if (o.momentum) {
        // MI-FGSM: normalise by the mean |grad| (L1 up to a constant) so old and new gradients
        // are on the same scale, then accumulate with decay μ.
        const l1 = tf.maximum(tf.mean(tf.abs(grad), [1, 2, 3], true), 1e-12);
        const acc: Tensor4D = g ? tf.add(tf.mul(g, o.momentum), tf.div(grad, l1)) : tf.div(grad, l1);
        grad = acc;
      }
      let step: Tensor4D;
      if (o.norm === 'linf') {
        step = tf.mul(signExact(grad), o.stepSize);
      } else {
        // L2 steepest ascent: the gradient direction with L2 length stepSize.
        step = tf.mul(grad, tf.div(o.stepSize, tf.maximum(l2PerImage(grad), 1e-12)));
      }
      return { adv: project(tf.add(adv, step), x, o.eps), g: o.momentum ? grad : undefined };
    });
    raw.dispose();
    adv.dispose();
    g?.dispose();
    adv = next.adv;
    g = next.g ?? null;
  }
  g?.dispose();
  return { adversarial: adv, logits: null };
}

/** The L∞ steps on a native engine: each one session call (the same float32 step as above, in the graph). */
async function nativeLinfSteps(
  linfStep: NonNullable<Classifier['linfStep']>,
  x: Tensor4D,
  labels: Tensor1D,
  targets: Tensor1D | null,
  o: IterateOptions,
  wantLogits: boolean,
): Promise<Iterated> {
  let adv = o.start ? o.start.clone() : x.clone();
  let logits: Tensor2D | null = null;
  for (let s = 0; s < o.steps; s++) {
    const last = s === o.steps - 1;
    const r = await linfStep(adv, { clean: x, labels, targets, loss: o.loss ?? 'ce', eps: o.eps, step: o.stepSize, logits: wantLogits && last });
    adv.dispose();
    adv = r.adv;
    logits = r.logits;
  }
  return { adversarial: adv, logits };
}

/** Margins (lower = better for the attacker, < 0 = success) of a batch; see marginsFromLogits. */
export async function batchMargins(model: Classifier, adv: Tensor4D, cls: Int32Array, targeted: boolean, known: Tensor2D | null = null): Promise<Float32Array> {
  const lg = known ?? (await inferLogits(model, adv));
  const z = (await lg.data()) as Float32Array;
  if (!known) lg.dispose();
  return marginsFromLogits(z, cls.length, model.numClasses, cls, targeted);
}

export interface RestartOptions {
  norm: 'linf' | 'l2';
  eps: number;
  steps: number;
  stepSize: number;
  randomStart: boolean;
  restarts: number;
  seed: number;
  loss: AttackLoss;
}

/** A uniformly random point of the L∞ ball, or a random direction at a random radius of the L2 ball. */
export function randomStart(x: Tensor4D, norm: 'linf' | 'l2', eps: number, seed: number): Tensor4D {
  return tf.tidy(() => {
    if (norm === 'linf') return projectLinf(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', seed)), x, eps);
    const dir = tf.randomNormal(x.shape, 0, 1, 'float32', seed) as Tensor4D;
    const radius = tf.randomUniform([x.shape[0], 1, 1, 1], 0, eps, 'float32', seed + 7919);
    return projectL2(tf.add(x, tf.mul(dir, tf.div(radius, l2PerImage(dir)))), x, eps);
  });
}

/**
 * PGD with restarts: each restart starts afresh (randomly when asked) and, per image, the result
 * with the lowest margin so far is kept, so a later unlucky restart never undoes a success. On a
 * native engine the result comes with its logits (measured by the last step's call).
 */
export async function pgdWithRestarts(
  model: Classifier,
  x: Tensor4D,
  labels: Tensor1D,
  y: Int32Array,
  targets: Int32Array | null,
  o: RestartOptions,
): Promise<Tensor4D | MeasuredBatch> {
  const t = targets ? tf.tensor1d(targets, 'int32') : null;
  const cls = targets ?? y;
  let best: Iterated | null = null;
  let bestMargin: Float32Array | null = null;
  try {
    // Without a random start every restart would repeat the first run exactly.
    const restarts = o.randomStart ? Math.max(1, o.restarts) : 1;
    for (let r = 0; r < restarts; r++) {
      const start = o.randomStart ? randomStart(x, o.norm, o.eps, o.seed + 1000 * r) : undefined;
      const run = await iterate(model, x, labels, t, { ...o, start }, true);
      start?.dispose();
      const m = await batchMargins(model, run.adversarial, cls, targets != null, run.logits);
      if (!best || !bestMargin) {
        best = run;
        bestMargin = m;
      } else {
        const better = new Uint8Array(m.length);
        for (let i = 0; i < m.length; i++)
          if (m[i] < bestMargin[i]) {
            better[i] = 1;
            bestMargin[i] = m[i];
          }
        const prev: Iterated = best;
        const cond = tf.tensor1d(better, 'bool');
        const logits = run.logits && prev.logits ? selectRows(cond, run.logits, prev.logits) : null;
        best = { adversarial: selectRows(cond, run.adversarial, prev.adversarial), logits };
        cond.dispose();
        tf.dispose([prev.adversarial, prev.logits ?? [], run.adversarial, run.logits ?? []]);
      }
      if (bestMargin.every((v) => v < 0)) break;
    }
    const done = best as Iterated;
    return done.logits ? { adversarial: done.adversarial, logits: done.logits } : done.adversarial;
  } finally {
    t?.dispose();
  }
}

/**
 * A PGD attack in one norm (random start, best of `restarts`, step 2.5·eps/steps by default):
 * the L∞ and L2 attacks differ only in the norm.
 */
export function pgdAttack(name: string, title: string, norm: 'linf' | 'l2'): Attack {
  return epsAttack(
    name,
    title,
    norm,
    ({ model, images, labels, y, targets, eps, loss, options }) => {
      const steps = intOption(options, 'steps', 10, 1);
      return pgdWithRestarts(model, images, labels, y, targets, {
        norm,
        eps,
        steps,
        loss,
        stepSize: numberOption(options, 'stepSize', (2.5 * eps) / steps),
        randomStart: options.randomStart ?? true,
        restarts: intOption(options, 'restarts', 1, 1),
        seed: seedOption(options),
      });
    },
    (options) => {
      const steps = intOption(options, 'steps', 10, 1);
      return {
        steps,
        restarts: intOption(options, 'restarts', 1, 1),
        randomStart: options.randomStart ?? true,
        ...(options.eps !== undefined ? { stepSize: numberOption(options, 'stepSize', (2.5 * options.eps) / steps) } : {}),
      };
    },
  );
}

/**
 * An iterated L∞ attack from the clean images (no random start): BIM, and with momentum MI-FGSM.
 * `defaultStep` gives the step size when the caller sets none; only an attack given a
 * `defaultMomentum` reads the momentum option.
 */
export function iteratedLinfAttack(name: string, title: string, defaultStep: (eps: number, steps: number) => number, defaultMomentum?: number): Attack {
  const attack = epsAttack(
    name,
    title,
    'linf',
    async ({ model, images, labels, targets, eps, loss, options }) => {
      const steps = intOption(options, 'steps', 10, 1);
      const stepSize = numberOption(options, 'stepSize', defaultStep(eps, steps));
      const momentum = defaultMomentum === undefined ? 0 : numberOption(options as MomentumAttackOptions, 'momentum', defaultMomentum);
      const t = targets ? tf.tensor1d(targets, 'int32') : null;
      try {
        // On a native engine the last step measures the result's logits: no forward after it.
        const r = await iterate(model, images, labels, t, { norm: 'linf', eps, steps, stepSize, momentum, loss }, true);
        return r.logits ? { adversarial: r.adversarial, logits: r.logits } : r.adversarial;
      } finally {
        t?.dispose();
      }
    },
    (options) => {
      const steps = intOption(options, 'steps', 10, 1);
      return {
        steps,
        momentum: defaultMomentum === undefined ? 0 : numberOption(options as MomentumAttackOptions, 'momentum', defaultMomentum),
        ...(options.eps !== undefined ? { stepSize: numberOption(options, 'stepSize', defaultStep(options.eps, steps)) } : {}),
      };
    },
  );
  return defaultMomentum === undefined ? attack : { ...attack, extraOptions: ['momentum'] satisfies (keyof MomentumAttackOptions)[] };
}

/**
 * BIM / I-FGSM (Kurakin et al. 2017): repeated FGSM steps of size `stepSize`, clipped back into
 * the eps ball and [0, 1] after every step. No random start (that is PGD).
 */
// Madry et al.'s 2.5·eps/steps lets a step sequence reach the boundary with slack to turn.
export const bim: Attack = iteratedLinfAttack('bim', 'BIM / I-FGSM', (eps, steps) => (2.5 * eps) / steps);

/**
 * MI-FGSM (Dong et al. 2018): I-FGSM whose step follows a decayed sum of L1-normalised
 * gradients; the momentum smooths the direction, which mostly helps transfer to other models.
 */
// The paper's α = eps/steps (all steps together can just reach the boundary) and μ = 1.
export const mifgsm: Attack = iteratedLinfAttack('mifgsm', 'MI-FGSM (momentum iterative FGSM)', (eps, steps) => eps / steps, 1.0);

/**
 * PGD, L∞ (Madry et al. 2018): BIM from a uniformly random start inside the eps ball, with
 * optional restarts; per image the best (lowest-margin) restart is returned.
 */
export const pgd: Attack = pgdAttack('pgd', 'PGD (L∞, random start, restarts)', 'linf');

/**
 * PGD, L2: steps along the L2-normalised gradient, projection onto the L2 ball of radius eps
 * (then [0, 1], which can only shrink the norm). eps is an L2 radius over all 3·s² values,
 * so useful values are much larger than L∞ ones (e.g. 0.5 rather than 8/255).
 */
export const pgdL2: Attack = pgdAttack('pgd-l2', 'PGD (L2, random start, restarts)', 'l2');
