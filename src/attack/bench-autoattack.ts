/**
 * The AutoAttack figure of `advsign bench`: a real standard run (APGD-CE, APGD-T, FAB-T, Square
 * with 5000 queries; L∞ 8/255) on a few images with the shipped robust model, through the same
 * data-parallel evaluation `advsign evaluate` uses, timed end to end. GTSRB Test images when the
 * shared copy is there, else synthetic signs (they differ in how many images stay robust, which
 * is what costs: the JSON says which were used and how many survived).
 */
import { initBackend } from '../inference/backend';
import { defaultWorkerCount } from '../inference/data-parallel';
import { loadClassifier } from '../inference/model-io';
import { loadDataset, sharedGtsrbDir } from '../data/load';
import { evaluateRobustness } from './evaluate';

export interface AutoAttackBench {
  model: string;
  data: string;
  images: number;
  eps: number;
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
  const clf = await loadClassifier(modelPath);
  const data = sharedGtsrbDir() ?? 'synthetic';
  const set = await loadDataset(data, { split: 'test', size: clf.inputSize, limit: images, progress: false });
  const workers = defaultWorkerCount(backend.backend);
  const n = Math.min(images, set.n);
  const eps = 8 / 255;
  const t0 = performance.now();
  const r = await evaluateRobustness(clf, set, {
    attacks: ['autoattack'], epsList: [eps], limit: n, batchSize: Math.ceil(n / (workers + 1)), workers, examplesPerAttack: 0, seed: 0,
  });
  const seconds = (performance.now() - t0) / 1000;
  const row = r.results[0];
  return {
    model: modelPath, data, images: n, eps, threads: r.threads ?? 1, seconds, imagesPerSecond: n / seconds,
    accuracy: row.accuracy, stages: row.stages ?? [], minutesPer1000: 1000 / (n / seconds) / 60,
  };
}
