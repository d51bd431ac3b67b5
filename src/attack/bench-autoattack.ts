/**
 * The AutoAttack figure of `advsign bench`: a real standard run (APGD-CE, APGD-T, FAB-T, Square
 * with 5000 queries; L∞ 8/255) with the shipped robust model, the way `advsign evaluate --attack
 * autoattack` runs it (the same engine, onnxruntime when it loads, and its batches, one per core
 * side by side), timed end to end. Small sets understate what batching buys (the members run on
 * the still-robust images, all targets of an image in one batch) and leave a lane idle while the
 * other finishes: 256 images by default, two batches of 128 on 2 cores. (128 images as two
 * batches of 64 ran 348 s where one two-thread batch of 128 had run 308 s.) GTSRB Test
 * images when the shared copy is there, else synthetic signs (they differ in how many images stay
 * robust, which is what costs: the JSON says which were used and how many survived).
 */
import { initBackend } from '../inference/backend';
import { defaultWorkerCount } from '../inference/data-parallel';
import { loadModelOnEngine } from '../inference/load-model';
import { DEFAULT_MODEL_INPUT } from '../inference/model-input';
import { loadDataset, sharedGtsrbDir } from '../data/load';
import { evaluateRobustness } from './evaluate';
import { AUTOATTACK_BATCH } from './autoattack';

export interface AutoAttackBench {
  model: string;
  data: string;
  images: number;
  eps: number;
  /** The engine attacks ran on; `threads` batches ran side by side (on ort, sessions of one thread each). */
  engine: string;
  batchSize: number;
  threads: number;
  seconds: number;
  imagesPerSecond: number;
  /** Accuracy left, and each member's share of the time. */
  accuracy: number;
  stages: { attack: string; accuracy: number; seconds: number }[];
  /** 1000 images at this rate (a linear extrapolation of the measured run), in minutes. */
  minutesPer1000: number;
}

export async function benchAutoAttack(modelPath: string, images: number): Promise<AutoAttackBench> {
  const backend = await initBackend();
  const loaded = await loadModelOnEngine(modelPath, DEFAULT_MODEL_INPUT, undefined);
  try {
    const clf = loaded.classifier;
    const data = sharedGtsrbDir() ?? 'synthetic';
    const set = await loadDataset(data, { split: 'test', size: clf.inputSize, limit: images, progress: false });
    // As `evaluate` runs it: batches side by side on the spare cores (on onnxruntime, sessions of
    // one thread each), at most AutoAttack's batch of 128, so that every thread has one.
    const workers = defaultWorkerCount(backend.backend);
    const n = Math.min(images, set.n);
    const batchSize = Math.min(AUTOATTACK_BATCH, Math.ceil(n / (workers + 1)));
    const eps = 8 / 255;
    const t0 = performance.now();
    const r = await evaluateRobustness(clf, set, {
      attacks: ['autoattack'],
      epsList: [eps],
      limit: n,
      batchSize,
      workers,
      examplesPerAttack: 0,
      seed: 0,
    });
    const seconds = (performance.now() - t0) / 1000;
    const row = r.results[0];
    return {
      model: modelPath,
      data,
      images: n,
      eps,
      engine: loaded.engine.engine,
      batchSize,
      threads: r.threads ?? 1,
      seconds,
      imagesPerSecond: n / seconds,
      accuracy: row.accuracy,
      stages: row.stages ?? [],
      minutesPer1000: 1000 / (n / seconds) / 60,
    };
  } finally {
    loaded.dispose();
  }
}
