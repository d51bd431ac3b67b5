/**
 * `advsign bench`: throughput of inference, training (and attacks, when available) at batch 1
 * and 64 on the selected engine and backend, the same on the pure-JS cpu backend in the same run
 * as a ratio, and, when python3-torch is installed, PyTorch's figures for the same network taken
 * alternately with ours (bench-peer.ts). Figures are measured, never assumed.
 */
import { tf } from '../inference/tf';
import { initBackend, switchBackend, BackendName } from '../inference/backend';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildModel, Classifier, inferLogits, LayersClassifier } from '../inference/model';
import { EngineChoice, releaseClassifier, trainingEngine, useEngine } from '../inference/engine';
import { bestOf, findPeerHarness, PeerFigures, ratios, runPeer } from './bench-peer';
import { int, jsonTarget, num, parseFlags, writeJsonOutput } from './args';
import { checkOutputs } from '../util/atomic-file';
import { UserError } from '../data/types';
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
  /** Where inference and attacks ran (trainImagesPerSecond is tfjs on one thread; ortTraining the ort step). */
  engine: EngineChoice['engine'];
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
    const r = await rate(
      async () => {
        const res = await attack.run(clf, x, y, options);
        res.adversarial.dispose();
      },
      budgetMs,
      1,
    );
    tf.dispose([x, y]);
    return r * b;
  };
}
registerBenchFigure('fgsmImagesPerSecond', attackFigure('fgsm', { eps: 8 / 255 }));
registerBenchFigure('pgd10ImagesPerSecond', attackFigure('pgd', { eps: 8 / 255, steps: 10, stepSize: 2 / 255 }));

let slowBackend = false;

async function measure(backend: BackendName, budgetMs: number, engine?: string): Promise<BackendFigures> {
  await switchBackend(backend);
  slowBackend = backend === 'cpu';
  const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
  const { classifier: clf, engine: chosen } = useEngine(new LayersClassifier(model), engine);
  const optimizer = tf.train.adam(1e-3);
  const figures: Partial<BackendFigures> = { backend, engine: chosen.engine };
  const infer: Partial<Throughput> = {},
    train: Partial<Throughput> = {};
  for (const b of [1, 64] as const) {
    const x = tf.randomUniform([b, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.oneHot(tf.randomUniform([b], 0, 43, 'int32', 2), 43);
    const r = await rate(async () => {
      const z = await inferLogits(clf, x);
      await z.data();
      z.dispose();
    }, budgetMs);
    infer[b === 1 ? 'batch1' : 'batch64'] = r * b;
    const t = await rate(
      () => {
        const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, clf.logits(x, true)) as tf.Scalar, true);
        loss?.dataSync();
        loss?.dispose();
      },
      budgetMs,
      1,
    );
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
  releaseClassifier(clf);
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
    const r = await rate(
      async () => {
        const step = await pool.step(clf, x, y, 43);
        optimizer.applyGradients(step.grads);
        tf.dispose(step.grads.map((g) => g.tensor));
      },
      budgetMs,
      2,
    );
    return { threads: workers + 1, batch64: r * 64 };
  } finally {
    await pool.dispose();
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  }
}

/**
 * A training step at batch 64 where `advsign train` runs it on the engine asked for: onnxruntime's
 * training graph (ort-train.ts) with tfjs's Adam applying the gradients. Null on tfjs.
 */
async function benchOrtTraining(budgetMs: number, engine?: string): Promise<{ threads: number; batch64: number } | null> {
  const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
  const { trainer, engine: chosen } = await trainingEngine(new LayersClassifier(model), engine);
  const optimizer = tf.train.adam(1e-3);
  const x = tf.randomUniform([64, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.randomUniform([64], 0, 43, 'int32', 2) as tf.Tensor1D;
  try {
    if (!trainer) return null;
    let seed = 0;
    const r = await rate(
      async () => {
        const step = await trainer.step(x, y, 43, { dropoutSeed: seed++ });
        optimizer.applyGradients(step.grads);
        tf.dispose(step.grads.map((g) => g.tensor));
      },
      budgetMs,
      2,
    );
    return { threads: chosen.ort?.threads ?? 1, batch64: r * 64 };
  } finally {
    await trainer?.dispose();
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  }
}

type PeerReport =
  | { available: false; reason: string }
  | { available: true; framework: 'pytorch'; threads: number; rounds: number; pytorch: PeerFigures; advsign: PeerFigures; ratio: PeerFigures };

function peerFigures(f: BackendFigures, parallel: { batch64: number } | null, ortTraining: { batch64: number } | null): PeerFigures {
  const t = (k: string) => f[k] as Throughput;
  return {
    inferBatch1: f.inferImagesPerSecond.batch1,
    inferBatch64: f.inferImagesPerSecond.batch64,
    fgsmBatch1: t('fgsmImagesPerSecond').batch1,
    fgsmBatch64: t('fgsmImagesPerSecond').batch64,
    pgd10Batch1: t('pgd10ImagesPerSecond').batch1,
    pgd10Batch64: t('pgd10ImagesPerSecond').batch64,
    // What `advsign train` reaches: on ort when its training graph runs, else the tfjs pool.
    trainBatch64: ortTraining?.batch64 ?? Math.max(f.trainImagesPerSecond.batch64, parallel?.batch64 ?? 0),
  };
}

export const BENCH_HELP = `advsign bench [options]

  --json FILE|-          write the figures as JSON to FILE; '-' or a bare --json (npm run bench): stdout only
  --quick                short timings (a smoke test, not a measurement)
  --no-cpu               skip the pure-JS cpu backend comparison
  --backend NAME         tensorflow | wasm | cpu
  --engine ort|tfjs      what inference, attacks and the training step run on (default: ort when it loads)
  --rounds N             rounds alternated with PyTorch, best of each side kept (default 3)
  --no-peer              skip PyTorch (../shared/bench/peer/torch_bench.py, or ADVSIGN_PEER_BENCH)
  --peer-threads N       PyTorch's threads (default 2)
  --profile              the tfjs path per kernel at batch 1 and 64 (docs/performance.md)
  --autoattack-images N  images of the AutoAttack run on gtsrb-cnn-robust (default 256: evaluate's batches of 128,
                         side by side on 2 cores; 0 with --quick)
  --live                 the live daemon end to end instead, at its defaults: one full cycle of the
                         synthetic scene, a socket client acking frames (JSON: frames/s, latency,
                         CPU per frame, fooled rate overall and per sign class, frames with no
                         perturbation, memory samples, numTensors). One core: taskset -c 0 advsign …
  --seconds N            how long --live measures (default: one scene cycle, 172 s; npm run soak: 600)
  --frames N             with --live: measure N frames instead (e.g. 10000 for the tensor-leak check)
  --sticker RUN.json     with --live: draw a sticker run's virtual sticker on every frame
  --source SPEC          with --live: another source (e.g. ffmpeg:testsrc)
  --model DIR            with --live: another model
  --unauthenticated N    with --live: N token-less sessions held open on the port meanwhile`;

export async function benchCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      json: { type: 'string' },
      backend: { type: 'string' },
      'no-cpu': { type: 'boolean' },
      quick: { type: 'boolean' },
      live: { type: 'boolean' },
      seconds: { type: 'string' },
      unauthenticated: { type: 'string' },
      frames: { type: 'string' },
      'autoattack-images': { type: 'string' },
      sticker: { type: 'string' },
      source: { type: 'string' },
      model: { type: 'string' },
      engine: { type: 'string' },
      'no-peer': { type: 'boolean' },
      rounds: { type: 'string' },
      profile: { type: 'boolean' },
      'peer-threads': { type: 'string' },
    },
    'bench',
  );
  if (f.unauthenticated !== undefined && !f.live) throw new UserError('bench: --unauthenticated applies to --live');
  checkOutputs(jsonTarget(f));
  const choice = await initBackend(f.backend as string | undefined);
  const engine = f.engine as string | undefined;
  if (f.profile) {
    // Per-kernel time of the tfjs path (docs/performance.md): inference and the FGSM gradient.
    const { profileTfjs, formatProfile } = await import('../inference/profile');
    const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
    const profiles = [await profileTfjs(new LayersClassifier(model), 1), await profileTfjs(new LayersClassifier(model), 64)];
    model.dispose();
    const json = jsonTarget(f);
    if (json) writeJsonOutput(json, { backend: choice.backend, profiles });
    if (json !== '-') process.stdout.write(profiles.map((p) => formatProfile(p)).join('\n') + '\n');
    return;
  }
  if (f.live) {
    // The live daemon end to end at its defaults: one cycle of the synthetic scene, a socket client
    // acking (with --unauthenticated N, while N token-less sessions crowd the port).
    const { benchLive } = await import('../server/bench-live');
    const live = await benchLive({
      ...(f.seconds !== undefined ? { seconds: num(f, 'seconds', 10, 1, 86_400) } : {}),
      ...(f.frames !== undefined ? { frames: int(f, 'frames', 1000, 1, 10_000_000) } : {}),
      ...(typeof f.sticker === 'string' ? { sticker: f.sticker } : {}),
      ...(typeof f.source === 'string' ? { source: f.source } : {}),
      ...(typeof f.model === 'string' ? { modelDir: f.model } : {}),
      unauthenticated: int(f, 'unauthenticated', 0, 0, 10_000),
      engine,
    });
    process.stdout.write(JSON.stringify({ backend: choice.backend, live }, null, 2) + '\n');
    return;
  }
  const budget = f.quick ? 300 : 3000;
  const rounds = f.rounds !== undefined ? int(f, 'rounds', 3, 1, 20) : f.quick ? 1 : 3;
  const harness = f['no-peer'] ? 'skipped (--no-peer)' : findPeerHarness(int(f, 'peer-threads', 2, 1, 64));
  const load = [os.loadavg()[0]];
  // Ours and PyTorch's alternately, each side's best round kept: only that is comparable on a shared machine.
  const ourRounds: BackendFigures[] = [],
    parallelRounds: ({ threads: number; batch64: number } | null)[] = [];
  const ortTrainRounds: ({ threads: number; batch64: number } | null)[] = [];
  const peerRounds: PeerFigures[] = [];
  for (let r = 0; r < (typeof harness === 'string' ? 1 : rounds); r++) {
    ourRounds.push(await measure(choice.backend, budget, engine));
    parallelRounds.push(await benchParallelTraining(choice.backend, budget));
    ortTrainRounds.push(await benchOrtTraining(budget, engine));
    if (typeof harness !== 'string') peerRounds.push(await runPeer(harness));
    load.push(os.loadavg()[0]);
  }
  const main = bestRound(ourRounds);
  const bestTraining = (rs: ({ threads: number; batch64: number } | null)[]) =>
    rs.reduce((a, b) => (b && (!a || b.batch64 > a.batch64) ? b : a), null as { threads: number; batch64: number } | null);
  const parallelTraining = bestTraining(parallelRounds),
    ortTraining = bestTraining(ortTrainRounds);
  let cpu: BackendFigures | null = null;
  if (!f['no-cpu'] && choice.backend !== 'cpu') cpu = await measure('cpu', f.quick ? 200 : 1500, 'tfjs');
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
  // Issue target: an FGSM-RS adversarial-training step costs at most 2× a clean one.
  const { benchAdversarialEpochRatio } = await import('../defense/bench');
  const adversarialTraining = await benchAdversarialEpochRatio({ repeats: f.quick ? 2 : 5 });
  // A real AutoAttack run (issue target: 1000 images on gtsrb-cnn-robust in ≤ 20 min on 2 cores).
  // --quick skips it: even a few robust images take minutes (5000 Square queries each).
  const aaImages = f['autoattack-images'] !== undefined ? int(f, 'autoattack-images', 256, 0, 100000) : f.quick ? 0 : 256;
  const { benchAutoAttack } = await import('../attack/bench-autoattack');
  const autoattack = aaImages > 0 ? await benchAutoAttack(path.join(projectRoot(), 'models', 'gtsrb-cnn-robust'), aaImages) : null;
  // Issue targets: TFLite inference ≤ 3 ms/image, Square ≥ 500 queries/s, rebuilt FGSM ≤ 1.5× the tfjs cost.
  const { benchTflite } = await import('../tflite/bench');
  const tflite = await benchTflite({ quick: f.quick === true });
  const ours = peerFigures(main, parallelTraining, ortTraining);
  const peer: PeerReport =
    typeof harness === 'string'
      ? { available: false, reason: harness }
      : {
          available: true,
          framework: 'pytorch' as const,
          threads: harness.threads,
          rounds,
          pytorch: bestOf(peerRounds),
          advsign: ours,
          ratio: ratios(ours, bestOf(peerRounds)),
        };
  const out = {
    ...main,
    parallelTraining,
    ortTraining,
    adversarialTraining,
    autoattack,
    tflite,
    cpu,
    ratioToCpu: ratio,
    peer,
    model: 'cnn4 32×32, 43 classes',
    machine: {
      cpus: os.cpus().length,
      platform: process.platform,
      arch: process.arch,
      node: process.version,
      loadAverage: load.map((l) => Math.round(l * 100) / 100),
    },
    measuredAt: new Date().toISOString(),
  };
  const json = jsonTarget(f);
  if (json) writeJsonOutput(json, out);
  if (json === '-') return;
  const fmt = (t: Throughput) => `batch 1: ${t.batch1.toFixed(1)} img/s, batch 64: ${t.batch64.toFixed(1)} img/s`;
  console.log(`engine ${main.engine}, backend ${main.backend}`);
  for (const [k, v] of Object.entries(main)) {
    if (v && typeof v === 'object') console.log(`  ${k}: ${fmt(v as Throughput)}${ratio[k] ? `  (×${ratio[k].batch64.toFixed(0)} cpu at 64)` : ''}`);
  }
  console.log(`  inference at batch 1: ${main.inferMsPerImageBatch1.toFixed(2)} ms/image`);
  if (parallelTraining) console.log(`  training with ${parallelTraining.threads} threads: batch 64: ${parallelTraining.batch64.toFixed(1)} img/s`);
  if (ortTraining) console.log(`  training on ort, ${ortTraining.threads} threads: batch 64: ${ortTraining.batch64.toFixed(1)} img/s`);
  if (autoattack) {
    console.log(
      `  autoattack (standard, 8/255, ${autoattack.images} images of ${autoattack.data}, ${autoattack.engine}, batch ${autoattack.batchSize}, ${autoattack.threads} threads): ` +
        `${autoattack.imagesPerSecond.toFixed(3)} img/s, ${autoattack.minutesPer1000.toFixed(0)} min per 1000 images`,
    );
  }
  console.log(
    `  TFLite interpreter: ${tflite.floatMsPerImage.toFixed(2)} ms/image float32, ${tflite.int8MsPerImage.toFixed(2)} int8; ` +
      `Square ${tflite.squareQueriesPerSecondBatch64.float.toFixed(0)} queries/s (float), ${tflite.squareQueriesPerSecondBatch64.int8.toFixed(0)} (int8); ` +
      `FGSM through the rebuilt graph costs ×${tflite.fgsmBatch64.costRatioFloat.toFixed(2)} (float), ×${tflite.fgsmBatch64.costRatioInt8.toFixed(2)} (int8) the tfjs model's`,
  );
  const fg = tflite.fgsmBatch64;
  if (fg.ortFloat !== null && fg.ortInt8 !== null) {
    console.log(
      `  FGSM b64 through a .tflite: ${fg.rebuiltFloat.toFixed(0)} → ${fg.ortFloat.toFixed(0)} img/s (float), ${fg.rebuiltInt8.toFixed(0)} → ${fg.ortInt8.toFixed(0)} (int8), tfjs → onnxruntime`,
    );
  }
  if (peer.available) {
    console.log(`PyTorch ${peer.threads} threads, best of ${rounds} alternated rounds (load average ${load.map((l) => l.toFixed(1)).join(' → ')}):`);
    for (const k of Object.keys(peer.ratio) as (keyof PeerFigures)[]) {
      console.log(
        `  ${k.padEnd(13)} advsign ${ours[k].toFixed(1).padStart(8)} img/s  PyTorch ${peer.pytorch[k].toFixed(1).padStart(8)} img/s  ×${peer.ratio[k].toFixed(2)}`,
      );
    }
  } else {
    console.log(`PyTorch: not compared (${peer.reason})`);
  }
}

/** Per figure, the best of the rounds (each figure a throughput: higher is better). */
function bestRound(rounds: BackendFigures[]): BackendFigures {
  const best = { ...rounds[0] } as BackendFigures;
  for (const r of rounds.slice(1)) {
    for (const [k, v] of Object.entries(r)) {
      const b = best[k] as Throughput | undefined;
      if (v && typeof v === 'object' && b && 'batch1' in b) {
        const t = v as Throughput;
        best[k] = { batch1: Math.max(b.batch1, t.batch1), batch64: Math.max(b.batch64, t.batch64) };
      }
    }
  }
  best.inferMsPerImageBatch1 = 1000 / best.inferImagesPerSecond.batch1;
  const fg = best.fgsmImagesPerSecond as Throughput | undefined;
  if (fg) best.fgsmMsPerImageBatch1 = 1000 / fg.batch1;
  return best;
}
