/**
 * The training loop: Adam, on-the-fly augmentation, learning-rate halving on plateaus, early
 * stopping on validation accuracy, per-epoch checkpoints written atomically. A `batchHook` lets
 * defenses (adversarial training) replace or extend each batch without a second loop.
 */
import * as path from 'node:path';
import { tf, Tensor2D, Tensor4D } from './tf';
import { Architecture, buildModel, Classifier, LayersClassifier, predictClasses, setDropoutSeeds, unseedDropout } from './model';
import { saveModel } from './model-io';
import { augmentBatch } from './augment';
import { ImageSet } from '../data/types';
import { createRng } from '../data/random';
import { progressBar } from '../util/progress';
import { GradientPool, LossPlan, PoolStep, shardGradients } from './data-parallel';
import { AdversarialPlanner, applyAdversarialPlan } from './adversarial-plan';
import { EngineChoice, trainingEngine } from './engine';
import type { OrtTrainer } from './ort-train';
import { WeightAverage } from './weight-average';
import { EvaluationInterrupted, StopCheck, yieldUnlessStopped } from '../util/interrupt';

export interface EpochStats {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  valAccuracy: number;
  /** The selection score when it is not clean validation accuracy (e.g. PGD accuracy). */
  valScore?: number;
  learningRate: number;
  seconds: number;
  imagesPerSecond: number;
}

/** Lets a caller transform each training batch (e.g. add adversarial examples); returns new x and labels. */
export type BatchHook = (clf: Classifier, x: Tensor4D, y: tf.Tensor1D, epoch: number) => { x: Tensor4D; y: tf.Tensor1D };

export interface TrainOptions {
  arch: Architecture;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  /** Epochs without validation improvement before stopping. */
  patience: number;
  augment: boolean;
  /** Where per-epoch checkpoints go (`<dir>/checkpoint`); none when omitted. */
  checkpointDir?: string;
  /** Stop after this much wall time (seconds), keeping the best epoch so far. */
  maxSeconds?: number;
  batchHook?: BatchHook;
  /**
   * Adversarial training: called once per batch on this thread (after batchHook); each thread
   * then replaces part of its shard with adversarial examples as the plan says.
   */
  adversarial?: AdversarialPlanner;
  onEpoch?: (s: EpochStats) => void;
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /**
   * Polled between batches, validation batches included: true ends training after the current
   * batch (that partial epoch is still validated), or, if it turns true during validation,
   * abandons that validation (the epoch is then not kept).
   */
  shouldStop?: () => boolean;
  /**
   * 'cosine': the learning rate falls from `learningRate` to 1 % of it along a half cosine over the
   * run — over the epochs, or over `maxSeconds` if that runs out first (so a time-boxed run still
   * ends at a low rate). 'plateau': constant, halved after two epochs without validation gain.
   */
  schedule?: 'cosine' | 'plateau';
  /**
   * Class balancing: each epoch draws images with probability ∝ (class frequency)^-balance, so
   * rare classes (GTSRB has 10× fewer "20 km/h" than "50 km/h" images) are seen more often.
   * 0 (default) is a plain shuffle; 0.5 is inverse square root; 1 fully balanced.
   */
  balance?: number;
  /** Start from this model instead of a fresh one (fine-tuning). */
  initialModel?: tf.LayersModel;
  /**
   * What picks the kept epoch and drives early stopping; clean validation accuracy by default.
   * Adversarial training passes PGD accuracy on validation images: by clean accuracy it would keep
   * its least robust epoch.
   */
  validationScore?: {
    name: string;
    /** Should call yieldUnlessStopped(shouldStop) between batches, so Ctrl-C can cut it short. */
    score: (clf: Classifier, shouldStop: StopCheck) => Promise<number>;
    /** Epochs failing this (given clean validation accuracy) are kept only while no epoch passes it. */
    eligible?: (valAccuracy: number) => boolean;
  };
  /**
   * The loss of each step beyond plain cross-entropy (label smoothing, IBP's ε and κ schedule);
   * called once per batch with the 1-based epoch and the step within it.
   */
  lossPlan?: (epoch: number, step: number, stepsPerEpoch: number) => LossPlan;
  /**
   * Worker threads that compute part of every batch's gradient (data-parallel; see
   * data-parallel.ts). 0 or absent: all on this thread. defaultWorkerCount() picks one per spare core.
   */
  workers?: number;
  /**
   * ort | tfjs, or 'auto' (ADVSIGN_ENGINE, else ort when it loads and the model's training graph
   * exports: what `advsign train` passes). Absent: tfjs, so library callers (the defenses' small
   * trainers, the tests' fixtures) train exactly as before. On ort, FGSM / FGSM-RS / PGD adversarial
   * steps and IBP steps (lossPlan's ibp) run there too; TRADES steps always run on tfjs.
   */
  engine?: string;
  /** Told where the steps run, once, before the first epoch. */
  onEngine?: (e: EngineChoice) => void;
  /**
   * Weight averaging (weight-average.ts): validation, the kept epoch and the returned model use the
   * moving average of the weights with this decay per step (e.g. 0.999) instead of the last step's.
   */
  emaDecay?: number;
}

export interface TrainResult {
  model: tf.LayersModel;
  classifier: LayersClassifier;
  history: EpochStats[];
  bestEpoch: number;
  /** Clean validation accuracy of the kept epoch. */
  bestValAccuracy: number;
  /** Its selection score (equal to bestValAccuracy unless validationScore was given). */
  bestValScore: number;
  seconds: number;
  interrupted: boolean;
  /** Where the plain training steps ran. */
  engine: EngineChoice;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'arch'> = {
  epochs: 30,
  batchSize: 64,
  learningRate: 1e-3,
  seed: 1,
  patience: 5,
  augment: true,
};

/**
 * Top-1 accuracy of a classifier on an image set. With `shouldStop`, checked between batches of
 * 256, it throws EvaluationInterrupted once that turns true.
 */
export async function accuracy(clf: Classifier, set: ImageSet, shouldStop?: StopCheck): Promise<number> {
  if (set.n === 0) return NaN;
  const px = set.size * set.size * 3;
  let ok = 0;
  for (let i = 0; i < set.n; i += 256) {
    if (shouldStop) await yieldUnlessStopped(shouldStop);
    const m = Math.min(256, set.n - i);
    const pred = await predictClasses(clf, set.images.subarray(i * px, (i + m) * px), m);
    for (let j = 0; j < m; j++) if (pred[j] === set.labels[i + j]) ok++;
  }
  return ok / set.n;
}

/** n indices drawn with replacement, image i with probability ∝ count(label_i)^-balance. */
export function balancedOrder(labels: Int32Array, balance: number, rand: () => number): Int32Array {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  const cum = new Float64Array(labels.length);
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    total += Math.pow(counts.get(labels[i]) as number, -balance);
    cum[i] = total;
  }
  const out = new Int32Array(labels.length);
  for (let k = 0; k < out.length; k++) {
    const r = rand() * total;
    let lo = 0,
      hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid] < r) lo = mid + 1;
      else hi = mid;
    }
    out[k] = lo;
  }
  return out;
}

/** A uniform random order of 0…n−1 (Fisher–Yates). */
export function permutation(n: number, rand: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Copies the images at `idx` into one contiguous batch. */
export function gatherBatch(set: ImageSet, idx: ArrayLike<number>): { x: Float32Array; y: Int32Array } {
  const px = set.size * set.size * 3;
  const x = new Float32Array(idx.length * px);
  const y = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    x.set(set.images.subarray(idx[i] * px, (idx[i] + 1) * px), i * px);
    y[i] = set.labels[idx[i]];
  }
  return { x, y };
}

/**
 * Minibatches of a set in a new random order each epoch, for `epochs` passes; stops early once
 * `maxSeconds` (if given) have passed since the first batch. The small defense trainers share it.
 */
export function* shuffledBatches(
  set: ImageSet,
  batchSize: number,
  epochs: number,
  rand: () => number,
  maxSeconds?: number,
): Generator<{ idx: Int32Array; x: Float32Array; y: Int32Array }> {
  const t0 = Date.now();
  for (let e = 0; e < epochs; e++) {
    const order = permutation(set.n, rand);
    for (let i = 0; i < set.n; i += batchSize) {
      if (maxSeconds && (Date.now() - t0) / 1000 > maxSeconds) return;
      const idx = order.slice(i, i + batchSize);
      yield { idx, ...gatherBatch(set, idx) };
    }
  }
}

export async function trainClassifier(trainSet: ImageSet, valSet: ImageSet, options: TrainOptions): Promise<TrainResult> {
  const o = options;
  const s = trainSet.size;
  const numClasses = 43;
  const model = o.initialModel ?? buildModel({ arch: o.arch, inputSize: s, numClasses, seed: o.seed });
  const clf = new LayersClassifier(model);
  const rand = createRng(o.seed);
  let lr = o.learningRate;
  const optimizer = tf.train.adam(lr);
  const history: EpochStats[] = [];
  let best = -1,
    bestEpoch = -1,
    sincebest = 0,
    bestClean = NaN,
    bestOk = false;
  let bestWeights: tf.Tensor[] | null = null;
  const t0 = Date.now();
  let interrupted = false;
  const stepsPerEpoch = Math.ceil(trainSet.n / o.batchSize);
  // lossPlan is a function of (epoch, step) only: IBP training's says ibp at every step, warm-up included.
  const ibp = o.lossPlan?.(1, 0, stepsPerEpoch).ibp !== undefined;
  const { trainer, engine } = await trainingEngine(clf, o.engine === 'auto' ? undefined : (o.engine ?? 'tfjs'), undefined, ibp);
  o.onEngine?.(engine);
  // The worker pool serves the tfjs steps; with the ort trainer only those it cannot take (TRADES).
  let pool: GradientPool | null = null;
  const tfjsPool = async () => (pool ??= o.workers ? await GradientPool.create(clf, o.workers) : null);
  if (!trainer) await tfjsPool();
  const average = o.emaDecay !== undefined ? new WeightAverage(clf.trainableWeights, o.emaDecay) : null;
  try {
    for (let epoch = 1; epoch <= o.epochs && !interrupted; epoch++) {
      const te = Date.now();
      const order = o.balance ? balancedOrder(trainSet.labels, o.balance, rand) : permutation(trainSet.n, rand);
      const bar = o.progress ? progressBar(`epoch ${epoch}/${o.epochs}`, stepsPerEpoch) : null;
      let lossSum = 0,
        correct = 0,
        seen = 0;
      for (let step = 0; step < stepsPerEpoch; step++) {
        // wasm's data() resolves as a microtask, so without this the loop never lets the event
        // loop run: Ctrl-C/SIGTERM handlers (and servers sharing the process) would starve.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (o.shouldStop?.()) {
          interrupted = true;
          break;
        }
        if (o.maxSeconds && (Date.now() - t0) / 1000 > o.maxSeconds) {
          interrupted = true;
          break;
        }
        if (o.schedule === 'cosine') {
          const byEpochs = ((epoch - 1) * stepsPerEpoch + step) / (o.epochs * stepsPerEpoch);
          const byTime = o.maxSeconds ? (Date.now() - t0) / 1000 / o.maxSeconds : 0;
          const prog = Math.min(1, Math.max(byEpochs, byTime));
          lr = o.learningRate * (0.01 + 0.99 * 0.5 * (1 + Math.cos(Math.PI * prog)));
          (optimizer as unknown as { learningRate: number }).learningRate = lr;
        }
        const idx = order.subarray(step * o.batchSize, Math.min(trainSet.n, (step + 1) * o.batchSize));
        const { x, y } = gatherBatch(trainSet, idx);
        const batch = tf.tidy(() => {
          let xb = tf.tensor4d(x, [idx.length, s, s, 3]);
          let yb = tf.tensor1d(y, 'int32');
          if (o.augment) xb = augmentBatch(xb, rand);
          if (o.batchHook) ({ x: xb, y: yb } = o.batchHook(clf, xb, yb, epoch));
          return { xb, yb };
        });
        const plan = o.adversarial?.(clf, epoch);
        const lossPlan = o.lossPlan?.(epoch, step, stepsPerEpoch);
        const dropoutSeed = Math.floor(rand() * 1e9);
        setDropoutSeeds(model, dropoutSeed);
        const nSeen = batch.yb.shape[0];
        const onOrt = trainer && (!plan || trainer.attacks(plan)) && (!lossPlan?.ibp || trainer.certifies);
        const stepPool = onOrt ? null : await tfjsPool();
        if (onOrt || stepPool) {
          const ortStep = async (t: OrtTrainer): Promise<PoolStep> => {
            // The attack sees this step's weights, as the tfjs plan does; then one step on the mixed batch.
            const xb = plan ? await t.adversarialBatch(batch.xb, batch.yb, plan) : batch.xb;
            return t
              .step(xb, batch.yb, numClasses, { dropoutSeed, labelSmoothing: lossPlan?.labelSmoothing, ibp: lossPlan?.ibp })
              .finally(() => xb !== batch.xb && xb.dispose());
          };
          const run = (): Promise<PoolStep> =>
            onOrt ? ortStep(trainer) : (stepPool as GradientPool).step(clf, batch.xb, batch.yb, numClasses, { plan, dropoutSeed, loss: lossPlan });
          const r = await run().finally(() => tf.dispose([batch.xb, batch.yb]));
          optimizer.applyGradients(r.grads);
          tf.dispose(r.grads.map((g) => g.tensor));
          lossSum += r.loss * nSeen;
          correct += r.correct;
        } else {
          const r = tf.tidy(() => {
            const xb = plan ? applyAdversarialPlan(clf, batch.xb, batch.yb, plan) : batch.xb;
            const g = shardGradients(clf, xb, batch.yb, numClasses, true, undefined, lossPlan);
            optimizer.applyGradients(clf.trainableWeights.map((v, j) => ({ name: v.name, tensor: g.grads[j] })));
            return [g.loss, g.correct];
          });
          tf.dispose([batch.xb, batch.yb]);
          lossSum += (await r[0].data())[0] * nSeen;
          correct += (await r[1].data())[0];
          tf.dispose(r);
        }
        average?.update(); // after either engine's optimizer step
        seen += nSeen;
        bar?.update(step + 1, `loss ${(lossSum / seen).toFixed(3)} acc ${(correct / seen).toFixed(3)}`);
      }
      if (seen === 0) break;
      const trainSeconds = (Date.now() - te) / 1000;
      // Validation can take minutes (IBP, APGD selection). An epoch cut short by a stop request is
      // still validated (and may be kept); a request made during validation abandons it, keeping
      // the best epoch validated so far. Yielding between its batches lets the CLI's second-signal
      // exit run either way.
      const stoppedBefore = o.shouldStop?.() ?? false;
      const stop: StopCheck = () => !stoppedBefore && (o.shouldStop?.() ?? false);
      if (o.progress) process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}epoch ${epoch}: validating on ${valSet.n} images\n`);
      // With weight averaging the epoch is judged, and kept, by its averaged weights.
      const judge = async () => {
        const valAccuracy = await accuracy(clf, valSet, stop);
        const score = o.validationScore ? await o.validationScore.score(clf, stop) : valAccuracy;
        return { valAccuracy, score, weights: model.getWeights().map((w) => w.clone()) };
      };
      let judged: Awaited<ReturnType<typeof judge>>;
      try {
        judged = average ? await average.withAverage(judge) : await judge();
      } catch (e) {
        if (!(e instanceof EvaluationInterrupted)) throw e;
        interrupted = true;
        break;
      }
      const { valAccuracy, score, weights } = judged;
      const stats: EpochStats = {
        epoch,
        trainLoss: lossSum / seen,
        trainAccuracy: correct / seen,
        valAccuracy,
        ...(o.validationScore ? { valScore: score } : {}),
        learningRate: lr,
        seconds: (Date.now() - te) / 1000,
        imagesPerSecond: seen / trainSeconds,
      };
      history.push(stats);
      const scoreText = o.validationScore ? ` ${o.validationScore.name} ${score.toFixed(4)}` : '';
      bar?.done(
        `loss ${stats.trainLoss.toFixed(3)} acc ${stats.trainAccuracy.toFixed(3)} val ${valAccuracy.toFixed(4)}${scoreText} ${stats.imagesPerSecond.toFixed(0)} img/s`,
      );
      o.onEpoch?.(stats);
      const ok = o.validationScore?.eligible?.(valAccuracy) ?? true;
      if ((ok && !bestOk) || (ok === bestOk && (score > best || Number.isNaN(score)))) {
        best = score;
        bestEpoch = epoch;
        bestClean = valAccuracy;
        bestOk = ok;
        sincebest = 0;
        bestWeights?.forEach((w) => w.dispose());
        bestWeights = weights;
      } else {
        tf.dispose(weights);
        sincebest++;
        // Halve the step size on a plateau before giving up on it.
        if (o.schedule !== 'cosine' && sincebest % 2 === 0) {
          lr /= 2;
          (optimizer as unknown as { learningRate: number }).learningRate = lr;
        }
        if (sincebest >= o.patience) break;
      }
      if (o.checkpointDir) await saveModel(model, path.join(o.checkpointDir, 'checkpoint'));
    }
  } finally {
    await (pool as GradientPool | null)?.dispose();
    await trainer?.dispose();
    average?.dispose();
    // Saved files carry no dropout seed (see buildModel).
    unseedDropout(model);
  }
  if (bestWeights) {
    model.setWeights(bestWeights);
    bestWeights.forEach((w) => w.dispose());
  }
  optimizer.dispose();
  return { model, classifier: clf, history, bestEpoch, bestValAccuracy: bestClean, bestValScore: best, seconds: (Date.now() - t0) / 1000, interrupted, engine };
}
