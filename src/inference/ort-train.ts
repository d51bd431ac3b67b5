/**
 * Training steps on onnxruntime: the gradient of a batch's mean cross-entropy w.r.t. every weight
 * from one session call of the training graph (onnx/train-export.ts), native and multi-threaded,
 * where tfjs-wasm runs on one core per thread. The weights stay the tfjs model's and the optimizer
 * stays tfjs's Adam: each step reads the variables, permutes them into ONNX layout (conv kernels
 * [kh, kw, cin, cout] → [cout, cin, kh, kw], the dense rows after a flattening from NHWC to NCHW
 * order), and hands back the gradients permuted the other way, so `advsign train` saves the same
 * model and the loop around it (checkpoints, validation, schedules) does not change.
 * Plain and label-smoothed cross-entropy; adversarial training's FGSM / FGSM-RS / PGD examples come
 * from a second graph (exportAttackOnnx: the input gradient and export.ts's linfStep head, same
 * weight feeds), one call per attack step, before the training step; IBP training's steps from a
 * third (exportIbpTrainingOnnx: the clean and the interval-bound loss, same weight feeds). TRADES
 * steps stay on tfjs.
 */
import type * as Ort from 'onnxruntime-node';
import { tf, Tensor1D, Tensor4D } from './tf';
import { LayersClassifier } from './model';
import { backwardWeight } from './onnx/export';
import { convWeight, permuteRows, planOf, Unsupported } from './onnx/layers';
import type { PlanOp } from './onnx/layers';
import { exportAttackOnnx, exportTrainingOnnx, TrainGraph } from './onnx/train-export';
import { exportIbpTrainingOnnx } from './onnx/ibp-export';
import type { AdversarialPlan } from './adversarial-plan';
import { applyNativeAdversarialPlan, NATIVE_ADVERSARIAL_METHODS } from './ort-adversarial';
import type { OrtModule } from './ort-classifier';
import type { PoolStep } from './data-parallel';
import { createRng } from '../data/random';

/** A graph input fed from a variable: onnx[i] = variable[perm[i]] (perm null: the same order). */
interface Feed {
  input: string;
  dims: number[];
  perm: Int32Array | null;
}

interface ParamFeeds {
  variable: tf.Variable;
  feeds: Feed[];
  /** Where the gradient output goes back to: variable[perm[i]] = grad[i]. */
  grad: Feed;
}

function iota(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => i);
}

/** The permutation a layout function applies, read off by moving indices (exact below 2^24). */
function permutationOf(layout: (v: Float32Array) => Float32Array, n: number): Int32Array {
  return Int32Array.from(layout(iota(n)));
}

function gather(src: Float32Array, perm: Int32Array | null): Float32Array {
  if (!perm) return src;
  const out = new Float32Array(perm.length);
  for (let i = 0; i < perm.length; i++) out[i] = src[perm[i]];
  return out;
}

function scatter(src: Float32Array, perm: Int32Array | null): Float32Array {
  if (!perm) return src;
  const out = new Float32Array(perm.length);
  for (let i = 0; i < perm.length; i++) out[perm[i]] = src[i];
  return out;
}

function paramFeeds(clf: LayersClassifier, graph: TrainGraph, ops: PlanOp[]): ParamFeeds[] {
  return graph.params.map((p) => {
    const layer = clf.model.getLayer(p.layer);
    const variable = (layer.trainableWeights[p.role === 'kernel' ? 0 : 1] as unknown as { val: tf.Variable }).val;
    const op = ops.find((o) => (o.kind === 'conv' || o.kind === 'dense') && o.layer === p.layer) as Extract<PlanOp, { kind: 'conv' | 'dense' }>;
    const n = variable.size;
    let perm: Int32Array | null = null;
    let flipped: Int32Array | null = null;
    if (p.role === 'kernel' && op.kind === 'conv') {
      const [cout, cin, kh, kw] = op.wdims;
      const layout = (v: Float32Array) => convWeight(v, kh, kw, cin, cout);
      perm = permutationOf(layout, n);
      if (p.flipped) flipped = permutationOf((v) => backwardWeight(layout(v), op.wdims, 1), n);
    } else if (p.role === 'kernel' && op.kind === 'dense' && op.flattenedFrom) {
      const from = op.flattenedFrom;
      perm = permutationOf((v) => permuteRows(v, from, op.units), n);
    }
    const main: Feed = { input: p.name, dims: p.dims, perm };
    const feeds = [main];
    if (p.flipped && flipped) feeds.push({ input: p.flipped, dims: [p.dims[1], p.dims[0], p.dims[2], p.dims[3]], perm: flipped });
    return { variable, feeds, grad: main };
  });
}

export interface OrtStepOptions {
  /** false: no dropout (the inference pass), as shardGradients' `training`. */
  training?: boolean;
  dropoutSeed?: number;
  labelSmoothing?: number;
  /** IBP training's loss (LossPlan's ibp) instead of plain CE; κ ≥ 1 is plain CE, as on tfjs. */
  ibp?: { eps: number; kappa: number };
}

/** What one training step returns beyond PoolStep: IBP steps also give the elided margin bounds [n·k] (for tests). */
export interface OrtStep extends PoolStep {
  margins?: Float32Array;
}

/** The attack graph's linfStep head inputs (export.ts's linfStepNodes). */
interface LinfStepFeeds {
  clean: Float32Array;
  eps: number;
  step: number;
}

/** A session and the variables that feed its weight inputs. */
interface WeightSession {
  session: Ort.InferenceSession;
  graph: TrainGraph;
  params: ParamFeeds[];
}

async function weightSession(ort: OrtModule, clf: LayersClassifier, graph: TrainGraph, ops: PlanOp[], threads: number): Promise<WeightSession> {
  const session = await ort.InferenceSession.create(graph.model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  return { session, graph, params: paramFeeds(clf, graph, ops) };
}

/** The variables' current values as the graph's weight inputs. */
async function weightFeeds(ort: OrtModule, params: ParamFeeds[]): Promise<Record<string, Ort.Tensor>> {
  const feeds: Record<string, Ort.Tensor> = {};
  for (const p of params) {
    const values = (await p.variable.data()) as Float32Array;
    for (const f of p.feeds) feeds[f.input] = new ort.Tensor('float32', gather(values, f.perm), f.dims);
  }
  return feeds;
}

export class OrtTrainer {
  private readonly session: Ort.InferenceSession;
  private readonly graph: TrainGraph;
  private readonly params: ParamFeeds[];
  /** The attack graph's session, made at the first adversarial batch. */
  private attack: Promise<WeightSession> | null = null;
  /** IBP training's session, made at the first step with κ < 1 (the warm-up steps are plain CE). */
  private certified: Promise<WeightSession> | null = null;

  private constructor(
    private readonly ort: OrtModule,
    train: WeightSession,
    private readonly clf: LayersClassifier,
    private readonly ops: PlanOp[],
    readonly threads: number,
    private readonly ibpGraph: TrainGraph | null,
  ) {
    ({ session: this.session, graph: this.graph, params: this.params } = train);
  }

  /** A trainer for `clf` (with IBP training's graph too when `ibp`), or why its model cannot train on onnxruntime. */
  static async create(clf: LayersClassifier, ort: OrtModule, threads: number, ibp = false): Promise<OrtTrainer | string> {
    let graph: TrainGraph;
    let ibpGraph: TrainGraph | null = null;
    let ops: PlanOp[];
    try {
      ops = planOf(clf.model, clf.outputsSoftmax, true).ops;
      const plan = { inputSize: clf.inputSize, numClasses: clf.numClasses, ops };
      graph = exportTrainingOnnx(plan);
      if (ibp) ibpGraph = exportIbpTrainingOnnx(plan);
    } catch (e) {
      if (e instanceof Unsupported) return `its training graph does not support ${e.message}`;
      throw e;
    }
    return new OrtTrainer(ort, await weightSession(ort, clf, graph, ops, threads), clf, ops, threads, ibpGraph);
  }

  private attackSession(): Promise<WeightSession> {
    const plan = { inputSize: this.clf.inputSize, numClasses: this.clf.numClasses, ops: this.ops };
    return (this.attack ??= weightSession(this.ort, this.clf, exportAttackOnnx(plan), this.ops, this.threads));
  }

  private ibpSession(): Promise<WeightSession> {
    if (!this.ibpGraph) throw new Error('this trainer was made without IBP training (OrtTrainer.create with ibp)');
    return (this.certified ??= weightSession(this.ort, this.clf, this.ibpGraph, this.ops, this.threads));
  }

  /** Whether adversarialBatch can make this plan's examples (else its step runs on tfjs). */
  attacks(plan: AdversarialPlan): boolean {
    return NATIVE_ADVERSARIAL_METHODS.includes(plan.method);
  }

  /** Whether step() takes IBP losses. */
  get certifies(): boolean {
    return this.ibpGraph !== null;
  }

  /**
   * One call of the attack graph (CE in eval mode, no dropout) at x [n, s, s, 3] for labels, with
   * the given weight feeds or the variables' current values: its output `fetch`. onnxruntime wants
   * every input fed, the linfStep head's too, even when only `grad` is fetched.
   */
  private async runAttack(
    fetch: 'grad' | 'adv',
    x: Float32Array,
    labels: Int32Array,
    head: LinfStepFeeds,
    weights?: Record<string, Ort.Tensor>,
  ): Promise<Float32Array> {
    const a = await this.attackSession();
    const n = labels.length,
      k = this.clf.numClasses,
      s = this.clf.inputSize;
    const feeds: Record<string, Ort.Tensor> = {
      ...(weights ?? (await weightFeeds(this.ort, a.params))),
      x: new this.ort.Tensor('float32', x, [n, s, s, 3]),
      y: new this.ort.Tensor('float32', targetRows(labels, k, 0), [n, k]),
      clean: new this.ort.Tensor('float32', head.clean, [n, s, s, 3]),
      eps: new this.ort.Tensor('float32', Float32Array.of(head.eps), []),
      step: new this.ort.Tensor('float32', Float32Array.of(head.step), []),
    };
    return (await a.session.run(feeds, [fetch]))[fetch].data as Float32Array;
  }

  /** The input gradient of CE at x for labels: one call of the attack graph. */
  inputGradient(x: Float32Array, labels: Int32Array, weights?: Record<string, Ort.Tensor>): Promise<Float32Array> {
    return this.runAttack('grad', x, labels, { clean: x, eps: 0, step: 0 }, weights);
  }

  /** One projected L∞ sign step of CE at adv (LinfStep, ort-adversarial.ts): one call of the attack graph. */
  linfStep(adv: Float32Array, clean: Float32Array, labels: Int32Array, eps: number, step: number, weights?: Record<string, Ort.Tensor>): Promise<Float32Array> {
    return this.runAttack('adv', adv, labels, { clean, eps, step }, weights);
  }

  /** applyAdversarialPlan on onnxruntime: the batch with its first ⌈ratio·n⌉ images attacked (the weights read once). */
  async adversarialBatch(x: Tensor4D, y: Tensor1D, plan: AdversarialPlan): Promise<Tensor4D> {
    if (!this.attacks(plan)) throw new Error(`${plan.method} examples run on tfjs`);
    const a = await this.attackSession();
    const weights = await weightFeeds(this.ort, a.params);
    return applyNativeAdversarialPlan((adv, clean, labels, eps, step) => this.linfStep(adv, clean, labels, eps, step, weights), x, y, plan);
  }

  /**
   * The batch-mean gradient of (label-smoothed) cross-entropy on x, y, or with `ibp` of IBP
   * training's loss (ibp-export.ts), ready for optimizer.applyGradients.
   */
  async step(x: Tensor4D, y: Tensor1D, numClasses: number, o: OrtStepOptions = {}): Promise<OrtStep> {
    const [n, s] = x.shape;
    const labels = await y.data();
    const ibp = o.ibp && o.ibp.kappa < 1 ? o.ibp : null;
    const { session, graph, params } = ibp ? await this.ibpSession() : { session: this.session, graph: this.graph, params: this.params };
    const rows = (smoothing: number) => new this.ort.Tensor('float32', targetRows(labels, numClasses, smoothing), [n, numClasses]);
    const feeds: Record<string, Ort.Tensor> = {
      x: new this.ort.Tensor('float32', (await x.data()) as Float32Array, [n, s, s, 3]),
      t: rows(o.labelSmoothing ?? 0),
    };
    if (ibp) {
      feeds.y = rows(0);
      feeds.eps = new this.ort.Tensor('float32', Float32Array.of(ibp.eps), []);
      feeds.kappa = new this.ort.Tensor('float32', Float32Array.of(ibp.kappa), []);
    }
    Object.assign(feeds, await weightFeeds(this.ort, params));
    const rand = createRng(o.dropoutSeed ?? 1);
    for (const d of graph.dropouts)
      feeds[d.name] = new this.ort.Tensor('float32', dropoutMask(n * d.features, o.training === false ? 0 : d.rate, rand), [n, d.features]);
    const out = await session.run(feeds);
    const grads = params.map((p) => ({
      name: p.variable.name,
      tensor: tf.tensor(scatter(out[`grad_${p.grad.input}`].data as Float32Array, p.grad.perm), p.variable.shape),
    }));
    const logits = out.logits.data as Float32Array;
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < numClasses; j++) if (logits[i * numClasses + j] > logits[i * numClasses + best]) best = j;
      if (best === labels[i]) correct++;
    }
    const loss = (out.loss.data as Float32Array)[0];
    const margins = out.margins ? Float32Array.from(out.margins.data as Float32Array) : undefined;
    for (const v of Object.values(out)) v.dispose();
    return { grads, loss, correct, ...(margins ? { margins } : {}) };
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await (await this.attack)?.session.release();
    await (await this.certified)?.session.release();
  }
}

/** (1 − s)·one-hot + s/k, as tf.losses.softmaxCrossEntropy's label smoothing. */
function targetRows(labels: ArrayLike<number>, k: number, smoothing: number): Float32Array {
  const out = new Float32Array(labels.length * k).fill(smoothing / k);
  for (let i = 0; i < labels.length; i++) out[i * k + labels[i]] += 1 - smoothing;
  return out;
}

/** Inverted dropout: 1/(1 − rate) with probability 1 − rate, else 0. */
function dropoutMask(size: number, rate: number, rand: () => number): Float32Array {
  const out = new Float32Array(size);
  const keep = 1 / (1 - rate);
  for (let i = 0; i < size; i++) out[i] = rand() >= rate ? keep : 0;
  return out;
}
