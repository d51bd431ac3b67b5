/**
 * Data-parallel work over worker threads. The wasm backend is single-threaded, so on a 2-core
 * board (or this 2-core machine) half the CPU sat idle during training and evaluation.
 * ModelWorkers holds one model replica per worker (model-worker.ts). A GradientPool
 * keeps a model replica in each worker (grad-worker.ts, the training entry); every step the main thread sends the
 * current weights and one shard of the (already augmented / adversarial) batch to each worker,
 * computes its own shard meanwhile, and averages the gradients weighted by shard size, which is
 * exactly the gradient of the whole batch's mean loss. The optimizer stays on the main thread,
 * so checkpoints, the overfitting guard and batch hooks see one model as before.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { tf, Tensor1D, Tensor2D, Tensor4D } from './tf';
import { Classifier, LayersClassifier } from './model';
import { AdversarialPlan, applyAdversarialPlan } from './adversarial-plan';
import { elidedMarginBounds } from './ibp';
import { tradesExamples, tradesLoss } from './trades';

/** A worker's request: set up a replica, one shard's gradient, or a task of the pool's own kind (T). */
export type WorkerRequest<T = never> =
  | { type: 'init'; backend: string; topology: unknown; outputsSoftmax: boolean; weights?: Float32Array; ortThreads?: number }
  | { type: 'task'; task: T }
  | {
      type: 'grad';
      weights: Float32Array;
      x: Float32Array;
      y: Int32Array;
      n: number;
      size: number;
      numClasses: number;
      training: boolean;
      /** Adversarial examples to make from this shard first (seed already offset per shard). */
      plan?: AdversarialPlan;
      /** Dropout seed of this step and shard (training stays reproducible). */
      dropoutSeed?: number;
      loss?: LossPlan;
    };

export type WorkerReply<R = never> =
  | { type: 'ready'; backend: string }
  | { type: 'grads'; grads: Float32Array; loss: number; correct: number }
  | { type: 'done'; result: R }
  | { type: 'error'; message: string };

/**
 * The training loss of one step, beyond plain cross-entropy: a plain record (it crosses to the
 * worker threads), decided per step by the training loop.
 */
export interface LossPlan {
  /** Label smoothing in [0, 1): targets (1 − s)·one-hot + s/k. */
  labelSmoothing?: number;
  /**
   * IBP training (Gowal et al. 2018): κ·CE(clean) + (1 − κ)·CE(worst-case logits), the worst
   * case bounded by interval propagation over the eps box. Needs a LayersClassifier without batch norm.
   */
  ibp?: { eps: number; kappa: number };
}

/** Mean training loss of a shard on its logits (and, for IBP, on its bounds over the eps box). */
function planLoss(clf: Classifier, x: Tensor4D, y: Tensor1D, logits: Tensor2D, numClasses: number, loss?: LossPlan): tf.Scalar {
  const onehot = tf.oneHot(y, numClasses);
  const ce = tf.losses.softmaxCrossEntropy(onehot, logits, undefined, loss?.labelSmoothing ?? 0) as tf.Scalar;
  const ibp = loss?.ibp;
  if (!ibp || ibp.kappa >= 1) return ce;
  const margins = elidedMarginBounds((clf as LayersClassifier).model, x, y, ibp.eps);
  if (!margins) throw new Error('IBP training needs a model whose last layer is a linear Dense layer');
  // −margin bounds are logits, shifted so z_y = 0, under which every other class does its best.
  const robust = tf.losses.softmaxCrossEntropy(onehot, tf.neg(margins)) as tf.Scalar;
  return tf.add(tf.mul(ce, ibp.kappa), tf.mul(robust, 1 - ibp.kappa)) as tf.Scalar;
}

/**
 * Gradient of one shard's mean training loss (cross-entropy, or what `loss` says) w.r.t. the
 * trainable weights (in their order), after replacing part of the shard with adversarial
 * examples when a plan is given.
 */
export function shardGradients(
  clf: Classifier,
  x: Tensor4D,
  y: Tensor1D,
  numClasses: number,
  training: boolean,
  plan?: AdversarialPlan,
  loss?: LossPlan,
): { grads: tf.Tensor[]; loss: tf.Scalar; correct: tf.Scalar } {
  if (plan?.method === 'trades') {
    // TRADES needs the clean and the adversarial image in one loss.
    const adv = tradesExamples(clf, x, plan.eps, plan.pgdSteps ?? 7, plan.seed);
    try {
      return gradientsOf(clf, x, y, (logits) => tradesLoss(logits, clf.logits(adv, training), y, numClasses, plan.tradesBeta ?? 6), training);
    } finally {
      adv.dispose();
    }
  }
  if (plan) {
    const adv = applyAdversarialPlan(clf, x, y, plan);
    try {
      return shardGradients(clf, adv, y, numClasses, training, undefined, loss);
    } finally {
      adv.dispose();
    }
  }
  return gradientsOf(clf, x, y, (logits) => planLoss(clf, x, y, logits, numClasses, loss), training);
}

/** Weight gradients of `lossOf(logits of x)`, its value and the number of correct predictions. */
function gradientsOf(
  clf: Classifier,
  x: Tensor4D,
  y: Tensor1D,
  lossOf: (logits: Tensor2D) => tf.Scalar,
  training: boolean,
): { grads: tf.Tensor[]; loss: tf.Scalar; correct: tf.Scalar } {
  const vars = clf.trainableWeights;
  let logits: Tensor2D | null = null;
  const { value, grads } = tf.variableGrads(() => {
    logits = tf.keep(clf.logits(x, training));
    return lossOf(logits);
  }, vars);
  const correct = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(logits as unknown as Tensor2D, 1), y), 'int32'))) as tf.Scalar;
  (logits as Tensor2D | null)?.dispose();
  return { grads: vars.map((v) => grads[v.name]), loss: value, correct };
}

/** All values of `tensors`, concatenated into one array (what crosses the thread boundary). */
export async function flattenTensors(tensors: tf.Tensor[]): Promise<Float32Array> {
  const out = new Float32Array(tensors.reduce((a, t) => a + t.size, 0));
  let at = 0;
  for (const t of tensors) {
    out.set((await t.data()) as Float32Array, at);
    at += t.size;
  }
  return out;
}

/** The inverse of flattenTensors for the given shapes. */
export function unflatten(flat: Float32Array, shapes: number[][]): tf.Tensor[] {
  let at = 0;
  return shapes.map((shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(at, at + size), shape);
    at += size;
    return t;
  });
}

/** Workers to use by default: every spare core for the single-threaded backends, none for tfjs-node (already multi-threaded). */
export function defaultWorkerCount(backend: string): number {
  if (backend === 'tensorflow') return 0;
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(0, Math.min(cores - 1, 7));
}

class ModelWorker<T, R> {
  private pending: { resolve: (r: WorkerReply<R>) => void; reject: (e: Error) => void } | null = null;
  private dead: Error | null = null;

  constructor(readonly worker: Worker) {
    worker.on('message', (r: WorkerReply<R>) => {
      const p = this.pending;
      this.pending = null;
      if (!p) return;
      if (r.type === 'error') p.reject(new Error(`training worker: ${r.message}`));
      else p.resolve(r);
    });
    const fail = (e: Error) => {
      this.dead = e;
      this.pending?.reject(e);
      this.pending = null;
    };
    worker.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
    worker.on('exit', (code) => fail(new Error(`training worker exited (code ${code})`)));
  }

  request(msg: WorkerRequest<T>, transfer: ArrayBuffer[] = []): Promise<WorkerReply<R>> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.pending) return Promise.reject(new Error('training worker is busy'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(msg, transfer);
    });
  }
}

export interface PoolStep {
  /** Batch-mean gradient per trainable variable name, ready for optimizer.applyGradients. */
  grads: { name: string; tensor: tf.Tensor }[];
  loss: number;
  correct: number;
}

/** Where a pool's workers start: a script that calls serveModelWorker (model-worker.ts). */
export const GRAD_WORKER_ENTRY = path.join(__dirname, 'grad-worker.js');

/**
 * Worker threads, each with the backend of this thread and a replica of one model. Besides
 * gradients, the workers run tasks of type T (answered with R) when their entry script gives
 * serveModelWorker a runner: the attack layer's evaluation pool does (src/attack/attack-worker.ts).
 */
export class ModelWorkers<T = never, R = never> {
  private constructor(readonly workers: ModelWorker<T, R>[]) {}

  /**
   * Starts `count` workers from `entry`; with `withWeights` they also get the current weights
   * (evaluation), and with `ortThreads` their tasks run on onnxruntime sessions of that many threads.
   */
  static async start<T = never, R = never>(
    clf: LayersClassifier,
    count: number,
    o: { entry?: string; withWeights?: boolean; ortThreads?: number } = {},
  ): Promise<ModelWorkers<T, R>> {
    const file = o.entry ?? GRAD_WORKER_ENTRY;
    const topology = clf.model.toJSON(undefined, false);
    const weights = o.withWeights ? await flattenTensors(clf.model.weights.map((w) => w.read())) : undefined;
    const pool = new ModelWorkers<T, R>(Array.from({ length: count }, () => new ModelWorker<T, R>(new Worker(file))));
    try {
      await Promise.all(
        pool.workers.map((w) =>
          w.request({
            type: 'init',
            backend: tf.getBackend(),
            topology: { modelTopology: topology },
            outputsSoftmax: clf.outputsSoftmax,
            weights,
            ...(o.ortThreads ? { ortThreads: o.ortThreads } : {}),
          }),
        ),
      );
    } catch (e) {
      await pool.dispose();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Runs one task in worker `i` (the model there has the weights it was started with). */
  async run(i: number, task: T, transfer: ArrayBuffer[] = []): Promise<R> {
    const r = await this.workers[i].request({ type: 'task', task }, transfer);
    if (r.type !== 'done') throw new Error(`model worker sent '${r.type}'`);
    return r.result;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

/** How one pooled step computes its gradient (defaults: training mode, plain cross-entropy). */
export interface StepOptions {
  training?: boolean;
  plan?: AdversarialPlan;
  dropoutSeed?: number;
  loss?: LossPlan;
}

export class GradientPool {
  private constructor(
    private readonly model: tf.LayersModel,
    private readonly pool: ModelWorkers,
  ) {}

  /** Starts `count` workers, each with the backend of this thread and a replica of `model`. */
  static async create(clf: LayersClassifier, count: number): Promise<GradientPool> {
    return new GradientPool(clf.model, await ModelWorkers.start(clf, count));
  }

  get size(): number {
    return this.pool.size;
  }

  /**
   * The gradient of the mean loss over the whole batch, computed in shards: shard 0 here, the
   * others in the workers, all at the same weights.
   */
  async step(clf: Classifier, x: Tensor4D, y: Tensor1D, numClasses: number, o: StepOptions = {}): Promise<PoolStep> {
    const { training = true, plan, dropoutSeed, loss: lossPlan } = o;
    const n = x.shape[0];
    const s = x.shape[1];
    const k = Math.min(n, this.pool.size + 1);
    const bounds = Array.from({ length: k + 1 }, (_, i) => Math.round((i * n) / k));
    const px = s * s * 3;
    const xs = (await x.data()) as Float32Array;
    const ys = Int32Array.from(await y.data());
    const weights = await flattenTensors(this.model.weights.map((w) => w.read()));
    const replies = this.pool.workers.slice(0, k - 1).map((w, i) => {
      const [a, b] = [bounds[i + 1], bounds[i + 2]];
      const xw = xs.slice(a * px, b * px);
      const shardPlan = plan ? { ...plan, seed: plan.seed + i + 1 } : undefined;
      const shardSeed = dropoutSeed === undefined ? undefined : dropoutSeed + 7919 * (i + 1);
      return w.request(
        {
          type: 'grad',
          weights,
          x: xw,
          y: ys.slice(a, b),
          n: b - a,
          size: s,
          numClasses,
          training,
          plan: shardPlan,
          dropoutSeed: shardSeed,
          loss: lossPlan,
        },
        [xw.buffer as ArrayBuffer],
      );
    });
    const n0 = bounds[1];
    const own = tf.tidy(() =>
      shardGradients(clf, x.slice([0, 0, 0, 0], [n0, -1, -1, -1]) as Tensor4D, y.slice([0], [n0]) as Tensor1D, numClasses, training, plan, lossPlan),
    );
    let loss = (await own.loss.data())[0] * n0;
    let correct = (await own.correct.data())[0];
    const results = await Promise.all(replies).finally(() => tf.dispose([own.loss, own.correct]));
    const vars = clf.trainableWeights;
    const grads: { name: string; tensor: tf.Tensor }[] = [];
    tf.tidy(() => {
      const parts = results.map((r, i) => {
        if (r.type !== 'grads') throw new Error(`training worker sent '${r.type}'`);
        const m = bounds[i + 2] - bounds[i + 1];
        loss += r.loss * m;
        correct += r.correct;
        return {
          m,
          g: unflatten(
            r.grads,
            vars.map((v) => v.shape as number[]),
          ),
        };
      });
      vars.forEach((v, j) => {
        let g = tf.mul(own.grads[j], n0 / n);
        for (const p of parts) g = tf.add(g, tf.mul(p.g[j], p.m / n));
        grads.push({ name: v.name, tensor: tf.keep(g) });
      });
    });
    tf.dispose(own.grads);
    return { grads, loss: loss / n, correct };
  }

  async dispose(): Promise<void> {
    await this.pool.dispose();
  }
}
