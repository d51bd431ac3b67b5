/**
 * Adversarial training's examples from a native input gradient: the FGSM, FGSM-RS and PGD of
 * adversarial-plan.ts (same share of the batch, random start, step sizes, exact sign, projection)
 * with the steps done on plain arrays and each gradient one onnxruntime call (ort-train.ts's
 * attack graph with the current weights). The random start is tfjs's, with the plan's seed, so a
 * batch starts where the single-thread tfjs path starts it. TRADES stays on tfjs.
 */
import { tf, projectLinf, Tensor1D, Tensor4D } from './tf';
import type { AdversarialMethod, AdversarialPlan } from './adversarial-plan';

/** The methods this module runs; the others (TRADES) take the tfjs path. */
export const NATIVE_ADVERSARIAL_METHODS: readonly AdversarialMethod[] = ['fgsm', 'fgsm-rs', 'pgd'];

/** The input gradient of the attack's CE at images x [n, s, s, 3] (flat) for labels. */
export type InputGradient = (x: Float32Array, labels: Int32Array) => Promise<Float32Array>;

/** adv ← Π(adv + step·sign(g)): the L∞ ball around clean, then [0, 1], in float32 as tfjs's projectLinf. */
function signStep(adv: Float32Array, g: Float32Array, clean: Float32Array, step: number, eps: number): void {
  const s = Math.fround(step),
    e = Math.fround(eps);
  for (let i = 0; i < adv.length; i++) {
    // Exact sign (signExact): a tiny gradient still moves the pixel.
    const moved = Math.fround(adv[i] + (g[i] > 0 ? s : g[i] < 0 ? -s : 0));
    const d = Math.min(e, Math.max(-e, Math.fround(moved - clean[i])));
    adv[i] = Math.min(1, Math.max(0, Math.fround(clean[i] + d)));
  }
}

/** x projected from a uniform start in the eps ball, seeded as adversarial-plan.ts seeds it. */
async function randomStart(x: Tensor4D, eps: number, seed: number): Promise<Float32Array> {
  const start = tf.tidy(() => projectLinf(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', seed)) as Tensor4D, x, eps));
  const data = (await start.data()) as Float32Array;
  start.dispose();
  return data;
}

/** adversarialExamples of adversarial-plan.ts for fgsm | fgsm-rs | pgd, on flat images. */
async function nativeExamples(grad: InputGradient, x: Tensor4D, clean: Float32Array, labels: Int32Array, p: AdversarialPlan): Promise<Float32Array> {
  const eps = p.eps;
  if (eps === 0) return clean.slice();
  if (p.method === 'fgsm') {
    const adv = clean.slice();
    signStep(adv, await grad(clean, labels), clean, eps, eps);
    return adv;
  }
  const adv = await randomStart(x, eps, p.seed);
  if (p.method === 'fgsm-rs') {
    signStep(adv, await grad(adv, labels), clean, (p.fgsmRsAlpha ?? 1.25) * eps, eps);
    return adv;
  }
  if (p.method !== 'pgd') throw new Error(`${p.method} has no native adversarial examples`);
  const steps = p.pgdSteps ?? 7;
  for (let k = 0; k < steps; k++) signStep(adv, await grad(adv, labels), clean, (2.5 * eps) / steps, eps);
  return adv;
}

/** applyAdversarialPlan with a native gradient: the first ⌈ratio·n⌉ images replaced by their adversarial versions. */
export async function applyNativeAdversarialPlan(grad: InputGradient, x: Tensor4D, y: Tensor1D, p: AdversarialPlan): Promise<Tensor4D> {
  const n = x.shape[0];
  const m = Math.min(n, Math.ceil(p.ratio * n));
  if (m === 0) return x.clone();
  const px = x.size / n;
  const all = (await x.data()) as Float32Array;
  const labels = Int32Array.from((await y.data()).subarray(0, m));
  const xa = m === n ? x : (x.slice([0, 0, 0, 0], [m, -1, -1, -1]) as Tensor4D);
  try {
    const adv = await nativeExamples(grad, xa, all.subarray(0, m * px), labels, p);
    const out = all.slice();
    out.set(adv, 0);
    return tf.tensor4d(out, x.shape);
  } finally {
    if (xa !== x) xa.dispose();
  }
}
