/**
 * Cost of adversarial training relative to clean training: one clean training step against one
 * FGSM-RS step (the batch hook + the same training step) at batch 64, on the current backend.
 * FGSM-RS adds one input-gradient pass over the adversarial share of the batch, so the ratio should
 * be ≤ 2 at ratio 1 (Wong et al.'s point: "fast" adversarial training), ~1.5 at the default 0.5.
 */
import { tf, Tensor4D } from '../inference/tf';
import { Architecture, buildModel, LayersClassifier } from '../inference/model';
import type { BatchHook } from '../inference/train';
import { adversarialBatchHook } from './adversarial';

export interface AdversarialEpochRatio {
  arch: Architecture;
  batchSize: number;
  backend: string;
  cleanStepMs: number;
  /** Per mix ratio (share of the batch made adversarial): ms per step and cost relative to clean. */
  fgsmRs: { ratio: number; stepMs: number; relativeCost: number }[];
}

export async function benchAdversarialEpochRatio(
  o: { arch?: Architecture; batchSize?: number; repeats?: number; ratios?: number[] } = {},
): Promise<AdversarialEpochRatio> {
  const arch = o.arch ?? 'cnn4';
  const bs = o.batchSize ?? 64;
  const repeats = o.repeats ?? 5;
  const model = buildModel({ arch, inputSize: 32, numClasses: 43, seed: 1 });
  const clf = new LayersClassifier(model);
  const optimizer = tf.train.adam(1e-3);
  const x = tf.randomUniform([bs, 32, 32, 3], 0, 1, 'float32', 1) as Tensor4D;
  const y = tf.tensor1d(
    Array.from({ length: bs }, (_, i) => i % 43),
    'int32',
  );
  const step = async (hook?: BatchHook) => {
    const loss = tf.tidy(() => {
      const b = hook ? hook(clf, x, y, 2) : { x, y };
      return optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(tf.oneHot(b.y, 43), clf.logits(b.x, true)) as tf.Scalar,
        true,
        clf.trainableWeights,
      ) as tf.Scalar;
    });
    await loss.data();
    loss.dispose();
  };
  const timed = async (hook?: BatchHook) => {
    const t0 = performance.now();
    await step(hook);
    return performance.now() - t0;
  };
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  try {
    const hooks = (o.ratios ?? [1, 0.5]).map((ratio) => ({
      ratio,
      hook: adversarialBatchHook({ method: 'fgsm-rs', eps: 8 / 255, ratio, rampEpochs: 0 }).hook,
    }));
    await step();
    for (const h of hooks) await step(h.hook); // warm-up (kernel set-up, allocation)
    // Interleaved, medians: on a shared machine load changes between runs would swamp the ratio.
    const clean: number[] = [];
    const adv: number[][] = hooks.map(() => []);
    for (let i = 0; i < repeats; i++) {
      clean.push(await timed());
      for (let k = 0; k < hooks.length; k++) adv[k].push(await timed(hooks[k].hook));
    }
    const cleanStepMs = median(clean);
    const fgsmRs = hooks.map((h, k) => ({ ratio: h.ratio, stepMs: median(adv[k]), relativeCost: median(adv[k]) / cleanStepMs }));
    return { arch, batchSize: bs, backend: tf.getBackend(), cleanStepMs, fgsmRs };
  } finally {
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  }
}
