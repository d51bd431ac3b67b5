/**
 * `advsign bench`: throughput of inference, training (and attacks, when available) at batch 1
 * and 64 on the selected backend, and the same on the pure-JS cpu backend in the same run, as a
 * ratio. Figures are measured, never assumed; each is the best of a few timed repeats.
 */
import { tf } from '../inference/tf';
import { initBackend, switchBackend, BackendName } from '../inference/backend';
import { buildModel, Classifier, LayersClassifier } from '../inference/model';
import * as path from 'node:path';
import { int, parseFlags } from './args';
import { projectRoot } from './paths';
import { getAttack } from '../attack/registry';
import type { AttackOptions } from '../attack/types';
import { defaultWorkerCount, GradientPool } from '../inference/data-parallel';

export interface Throughput {
  batch1: number;
  batch64: number;
}

export interface BackendFigures {
  backend: BackendName;
  inferImagesPerSecond: Throughput;
  inferMsPerImageBatch1: number;
  trainImagesPerSecond: Throughput;
  [extra: string]: unknown;
}

/** Extra figures other modules add (attacks, live pipeline): name → measure(clf, batch) in images/s. */
export type BenchExtra = (clf: Classifier, batch: number, budgetMs: number) => Promise<number>;
const extras = new Map<string, BenchExtra>();
export function registerBenchFigure(name: string, f: BenchExtra): void {
  extras.set(name, f);
}

/** Runs `step` repeatedly for about `budgetMs` (after one warm-up call) and returns calls per second. */
export async function rate(step: () => Promise<void> | void, budgetMs: number, minCalls = 2): Promise<number> {
  // The warm-up (kernel setup, first allocations) is skipped where one call already takes long.
  if (!slowBackend) await step();
  const t0 = performance.now();
  let calls = 0;
  while (calls < minCalls || performance.now() - t0 < budgetMs) {
    await step();
    calls++;
  }
  return calls / ((performance.now() - t0) / 1000);
}

/** Attack throughput: images attacked per second (the attack's own gradient steps included). */
function attackFigure(name: string, options: AttackOptions): BenchExtra {
  return async (clf, b, budgetMs) => {
    const attack = getAttack(name);
    const x = tf.randomUniform([b, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const y = tf.randomUniform([b], 0, 43, 'int32', 4) as tf.Tensor1D;
    const r = await rate(async () => {
      const res = await attack.run(clf, x, y, options);
      res.adversarial.dispose();
    }, budgetMs, 1);
    tf.dispose([x, y]);
    return r * b;
  };
}
registerBenchFigure('fgsmImagesPerSecond', attackFigure('fgsm', { eps: 8 / 255 }));
registerBenchFigure('pgd10ImagesPerSecond', attackFigure('pgd', { eps: 8 / 255, steps: 10, stepSize: 2 / 255 }));

let slowBackend = false;

async function measure(backend: BackendName, budgetMs: number): Promise<BackendFigures> {
  await switchBackend(backend);
  slowBackend = backend === 'cpu';
  const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
  const clf = new LayersClassifier(model);
  const optimizer = tf.train.adam(1e-3);
  const figures: Partial<BackendFigures> = { backend };
  const infer: Partial<Throughput> = {}, train: Partial<Throughput> = {};
  for (const b of [1, 64] as const) {
    const x = tf.randomUniform([b, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.oneHot(tf.randomUniform([b], 0, 43, 'int32', 2), 43);
    const r = await rate(() => { tf.tidy(() => clf.logits(x)).dataSync(); }, budgetMs);
    infer[b === 1 ? 'batch1' : 'batch64'] = r * b;
    const t = await rate(() => {
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, clf.logits(x, true)) as tf.Scalar, true);
      loss?.dataSync();
      loss?.dispose();
    }, budgetMs, 1);
    train[b === 1 ? 'batch1' : 'batch64'] = t * b;
    for (const [name, f] of extras) {
      const cur = (figures[name] as Partial<Throughput> | undefined) ?? {};
      cur[b === 1 ? 'batch1' : 'batch64'] = await f(clf, b, budgetMs);
      figures[name] = cur;
    }
    tf.dispose([x, y]);
  }
  figures.inferImagesPerSecond = infer as Throughput;
  figures.inferMsPerImageBatch1 = 1000 / (infer.batch1 as number);
  const fg = figures.fgsmImagesPerSecond as Throughput | undefined;
  if (fg) figures.fgsmMsPerImageBatch1 = 1000 / fg.batch1;
  figures.trainImagesPerSecond = train as Throughput;
  optimizer.dispose();
  model.dispose();
  return figures as BackendFigures;
}

/**
 * Training at batch 64 with the data-parallel pool (one worker per spare core): the figure
 * `advsign train` actually reaches, next to the one-thread figure above.
 */
async function benchParallelTraining(backend: BackendName, budgetMs: number): Promise<{ threads: number; batch64: number } | null> {
  const workers = defaultWorkerCount(backend);
  if (workers === 0) return null;
  const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
  const clf = new LayersClassifier(model);
  const optimizer = tf.train.adam(1e-3);
  const pool = await GradientPool.create(clf, workers);
  const x = tf.randomUniform([64, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.randomUniform([64], 0, 43, 'int32', 2) as tf.Tensor1D;
  try {
    const r = await rate(async () => {
      const step = await pool.step(clf, x, y, 43);
      optimizer.applyGradients(step.grads);
      tf.dispose(step.grads.map((g) => g.tensor));
    }, budgetMs, 2);
    return { threads: workers + 1, batch64: r * 64 };
  } finally {
    await pool.dispose();
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  }
}

export async function benchCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    json: { type: 'boolean' }, backend: { type: 'string' }, 'no-cpu': { type: 'boolean' }, quick: { type: 'boolean' },
    live: { type: 'boolean' }, seconds: { type: 'string' }, 'autoattack-images': { type: 'string' },
  }, 'bench');
  const choice = await initBackend(f.backend as string | undefined);
  if (f.live) {
    // The live pipeline end to end: 640×480 ffmpeg test source, FGSM on, a socket client acking.
    const { benchLive } = await import('../server/bench-live');
    const live = await benchLive({ seconds: f.seconds ? Number(f.seconds) : 10 });
    process.stdout.write(JSON.stringify({ backend: choice.backend, live }, null, 2) + '\n');
    return;
  }
  const budget = f.quick ? 300 : 3000;
  const main = await measure(choice.backend, budget);
  let cpu: BackendFigures | null = null;
  if (!f['no-cpu'] && choice.backend !== 'cpu') cpu = await measure('cpu', f.quick ? 200 : 1500);
  await switchBackend(choice.backend);
  const ratio: Record<string, Throughput> = {};
  if (cpu) {
    for (const [k, v] of Object.entries(main)) {
      const c = cpu[k] as Throughput | undefined;
      if (v && typeof v === 'object' && c) {
        const t = v as Throughput;
        ratio[k] = { batch1: t.batch1 / c.batch1, batch64: t.batch64 / c.batch64 };
      }
    }
  }
  const parallelTraining = await benchParallelTraining(choice.backend, budget);
  // Issue target: an FGSM-RS adversarial-training step costs at most 2× a clean one.
  const { benchAdversarialEpochRatio } = await import('../defense/bench');
  const adversarialTraining = await benchAdversarialEpochRatio({ repeats: f.quick ? 2 : 5 });
  // A real AutoAttack run (issue target: 1000 images on gtsrb-cnn-robust in ≤ 20 min on 2 cores).
  // --quick skips it: even a few robust images take minutes (5000 Square queries each).
  const aaImages = f['autoattack-images'] !== undefined ? int(f, 'autoattack-images', 32, 0, 100000) : f.quick ? 0 : 32;
  const { benchAutoAttack } = await import('../attack/bench-autoattack');
  const autoattack = aaImages > 0 ? await benchAutoAttack(path.join(projectRoot(), 'models', 'gtsrb-cnn-robust'), aaImages) : null;
  const out = {
    ...main, parallelTraining, adversarialTraining, autoattack, cpu, ratioToCpu: ratio, model: 'cnn4 32×32, 43 classes',
    machine: { cpus: require('node:os').cpus().length as number, platform: process.platform, arch: process.arch, node: process.version },
    measuredAt: new Date().toISOString(),
  };
  if (f.json) {
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return;
  }
  const fmt = (t: Throughput) => `batch 1: ${t.batch1.toFixed(1)} img/s, batch 64: ${t.batch64.toFixed(1)} img/s`;
  console.log(`backend ${main.backend}`);
  for (const [k, v] of Object.entries(main)) {
    if (v && typeof v === 'object') console.log(`  ${k}: ${fmt(v as Throughput)}${ratio[k] ? `  (×${ratio[k].batch64.toFixed(0)} cpu at 64)` : ''}`);
  }
  console.log(`  inference at batch 1: ${main.inferMsPerImageBatch1.toFixed(2)} ms/image`);
  if (parallelTraining) console.log(`  training with ${parallelTraining.threads} threads: batch 64: ${parallelTraining.batch64.toFixed(1)} img/s`);
  if (autoattack) {
    console.log(`  autoattack (standard, 8/255, ${autoattack.images} images of ${autoattack.data}, ${autoattack.threads} threads): ` +
      `${autoattack.imagesPerSecond.toFixed(3)} img/s, ${autoattack.minutesPer1000.toFixed(0)} min per 1000 images`);
  }
}
