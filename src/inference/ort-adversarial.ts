/**
 * Adversarial training's examples from a native sign step: the FGSM, FGSM-RS and PGD of
 * adversarial-plan.ts (same share of the batch, random start, step sizes) with each step one
 * onnxruntime call (ort-train.ts's attack graph with the current weights: the gradient, the exact
 * sign and the projection in the graph, export.ts's linfStep head). The random start is tfjs's,
 * with the plan's seed, so a batch starts where the single-thread tfjs path starts it. TRADES
 * stays on tfjs.
 */
import { tf, projectLinf, Tensor1D, Tensor4D } from './tf';
import type { AdversarialMethod, AdversarialPlan } from './adversarial-plan';

/** The methods this module runs; the others (TRADES) take the tfjs path. */
export const NATIVE_ADVERSARIAL_METHODS: readonly AdversarialMethod[] = ['fgsm', 'fgsm-rs', 'pgd'];

/**
 * One step of the attack's CE at images adv [n, s, s, 3] (flat) for labels: adv + step·sign(∇),
 * projected on the eps ball around clean and on [0, 1] (a new array).
 */
export type LinfStep = (adv: Float32Array, clean: Float32Array, labels: Int32Array, eps: number, step: number) => Promise<Float32Array>;

/** x projected from a uniform start in the eps ball, seeded as adversarial-plan.ts seeds it. */
async function randomStart(x: Tensor4D, eps: number, seed: number): Promise<Float32Array> {
  const start = tf.tidy(() => projectLinf(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', seed)) as Tensor4D, x, eps));
  const data = (await start.data()) as Float32Array;
  start.dispose();
  return data;
}

/** adversarialExamples of adversarial-plan.ts for fgsm | fgsm-rs | pgd, on flat images. */
async function nativeExamples(linfStep: LinfStep, x: Tensor4D, clean: Float32Array, labels: Int32Array, p: AdversarialPlan): Promise<Float32Array> {
  const eps = p.eps;
  if (eps === 0) return clean.slice();
  if (p.method === 'fgsm') return linfStep(clean, clean, labels, eps, eps);
  let adv = await randomStart(x, eps, p.seed);
  if (p.method === 'fgsm-rs') return linfStep(adv, clean, labels, eps, (p.fgsmRsAlpha ?? 1.25) * eps);
  if (p.method !== 'pgd') throw new Error(`${p.method} has no native adversarial examples`);
  const steps = p.pgdSteps ?? 7;
  for (let k = 0; k < steps; k++) adv = await linfStep(adv, clean, labels, eps, (2.5 * eps) / steps);
  return adv;
}

/** applyAdversarialPlan with a native step: the first ⌈ratio·n⌉ images replaced by their adversarial versions. */
export async function applyNativeAdversarialPlan(linfStep: LinfStep, x: Tensor4D, y: Tensor1D, p: AdversarialPlan): Promise<Tensor4D> {
  const n = x.shape[0];
  const m = Math.min(n, Math.ceil(p.ratio * n));
  if (m === 0) return x.clone();
  const px = x.size / n;
  const all = (await x.data()) as Float32Array;
  const labels = Int32Array.from((await y.data()).subarray(0, m));
  const xa = m === n ? x : (x.slice([0, 0, 0, 0], [m, -1, -1, -1]) as Tensor4D);
  try {
    const adv = await nativeExamples(linfStep, xa, all.subarray(0, m * px), labels, p);
    const out = all.slice();
    out.set(adv, 0);
    return tf.tensor4d(out, x.shape);
  } finally {
    if (xa !== x) xa.dispose();
  }
}
