/**
 * Where the tfjs path spends its time: tf.profile over one inference and one attack gradient
 * (logits and the CE input gradient, as FGSM takes it), per kernel, split into the plain forward
 * pass, the forward pass under the gradient tape and the backward pass. `advsign bench --profile`
 * prints it; docs/performance.md discusses it. advsign's composite wasm kernels (wasm-grad-kernels)
 * are listed with their own time, which includes the inner kernels listed beside them.
 */
import { tf, Tensor4D } from './tf';
import type { Classifier } from './model';
import { tfObjectiveGradient } from './objective';

export interface KernelRow {
  kernel: string;
  calls: number;
  ms: number;
}

export interface PhaseProfile {
  /** Sum of the kernels' own times. */
  kernelMs: number;
  kernels: KernelRow[];
}

export interface TfjsProfile {
  backend: string;
  batch: number;
  /** Wall time of one call, best of the repeats (kernels plus everything around them). */
  wallMs: { inference: number; gradient: number };
  inference: PhaseProfile;
  /** The gradient call's forward pass (on the tape: tfjs does not fuse bias and ReLU there). */
  gradientForward: PhaseProfile;
  backward: PhaseProfile;
}

function phase(kernels: { name: string; kernelTimeMs: number | { error: string } }[]): PhaseProfile {
  const rows = new Map<string, KernelRow>();
  let total = 0;
  for (const k of kernels) {
    if (k.name.endsWith('__op')) continue; // an op's wrapper: its time is its kernel's, listed too
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const r = rows.get(k.name) ?? { kernel: k.name, calls: 0, ms: 0 };
    r.calls++;
    r.ms += ms;
    total += ms;
    rows.set(k.name, r);
  }
  return { kernelMs: total, kernels: [...rows.values()].sort((a, b) => b.ms - a.ms) };
}

async function bestWall(f: () => void, repeats: number): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Profiles inference and the FGSM gradient of `clf` (its tfjs path) at one batch size. */
export async function profileTfjs(clf: Classifier, batch: number, repeats = 5): Promise<TfjsProfile> {
  const s = clf.inputSize;
  const x = tf.randomUniform([batch, s, s, 3], 0, 1, 'float32', 1) as Tensor4D;
  const y = tf.tensor1d(
    Array.from({ length: batch }, (_, i) => i % clf.numClasses),
    'int32',
  );
  const infer = () => tf.tidy(() => clf.logits(x)).dataSync();
  const grad = () => {
    const r = tfObjectiveGradient(clf, x, y, null, 'ce');
    r.grad.dataSync();
    tf.dispose([r.grad, r.logits]);
  };
  try {
    infer();
    grad(); // warm-up: kernel set-up and first allocations are not what is measured
    // (tf.profile hands back the same object every call: read each before the next.)
    const inference = phase((await tf.profile(infer)).kernels as unknown as { name: string; kernelTimeMs: number }[]);
    const p2 = await tf.profile(grad);
    // The tape's forward pass ends with the objective's scalar (Σ z ⊙ c); the backward follows.
    const kernels = p2.kernels as unknown as { name: string; kernelTimeMs: number | { error: string }; outputShapes: number[][] }[];
    const split = kernels.findIndex((k) => k.name === 'Sum' && k.outputShapes[0]?.length === 0) + 1;
    return {
      backend: tf.getBackend(),
      batch,
      wallMs: { inference: await bestWall(infer, repeats), gradient: await bestWall(grad, repeats) },
      inference,
      gradientForward: phase(kernels.slice(0, split)),
      backward: phase(kernels.slice(split)),
    };
  } finally {
    tf.dispose([x, y]);
  }
}

/** A plain-text table of one profile. */
export function formatProfile(p: TfjsProfile, top = 8): string {
  const lines = [`batch ${p.batch} (${p.backend}): inference ${p.wallMs.inference.toFixed(2)} ms, gradient ${p.wallMs.gradient.toFixed(2)} ms wall`];
  for (const [name, ph] of [
    ['inference', p.inference],
    ['gradient: forward on the tape', p.gradientForward],
    ['gradient: backward', p.backward],
  ] as const) {
    lines.push(`  ${name}: ${ph.kernelMs.toFixed(2)} ms in kernels`);
    for (const k of ph.kernels.slice(0, top)) lines.push(`    ${k.kernel.padEnd(26)} ${String(k.calls).padStart(3)}×  ${k.ms.toFixed(3).padStart(8)} ms`);
  }
  return lines.join('\n');
}
