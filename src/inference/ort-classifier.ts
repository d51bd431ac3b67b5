/**
 * A Classifier whose inference and gradients run on onnxruntime (native, multi-threaded) from the
 * ONNX export of its layers (src/inference/onnx): one session call gives the logits and the input
 * gradient of an attack objective, or of any cotangent (vjp). `logits()` stays the tfjs model:
 * it is what synchronous code and tf.grad differentiate, and what training updates. The export is
 * a snapshot of the weights at construction.
 */
import type * as Ort from 'onnxruntime-node';
import { tf, Tensor1D, Tensor2D, Tensor4D } from './tf';
import type { Classifier } from './model';
import type { AttackLoss, LinfStepRequest, LinfStepResult, ObjectiveGradient } from './objective';
import { exportOnnx, Head, OnnxModel } from './onnx/export';
import type { Plan } from './onnx/layers';

export type OrtModule = typeof Ort;

/** Rows of one-hot float32 for class ids (what the ONNX objective graphs take). */
function oneHotRows(ids: ArrayLike<number>, k: number): Float32Array {
  const out = new Float32Array(ids.length * k);
  for (let i = 0; i < ids.length; i++) out[i * k + ids[i]] = 1;
  return out;
}

function headKey(h: Head): string {
  if (h.kind === 'linfStep') return `step-${h.loss}${h.targeted ? '-t' : ''}${h.logits ? '-z' : ''}`;
  return h.kind === 'objective' ? `${h.loss}${h.targeted ? '-t' : ''}` : h.kind;
}

export class OrtClassifier implements Classifier {
  readonly engine = 'ort';
  readonly inputSize: number;
  readonly numClasses: number;
  private readonly sessions = new Map<string, Promise<Ort.InferenceSession>>();

  constructor(
    readonly inner: Classifier,
    private readonly plan: Plan | OnnxModel,
    private readonly ort: OrtModule,
    readonly threads: number,
  ) {
    this.inputSize = inner.inputSize;
    this.numClasses = inner.numClasses;
  }

  /** The same export on sessions of `threads` threads (created on first use, like these). */
  withThreads(threads: number): OrtClassifier {
    return new OrtClassifier(this.inner, this.plan, this.ort, threads);
  }

  get trainableWeights(): tf.Variable[] {
    return this.inner.trainableWeights;
  }

  get classNames(): readonly string[] | undefined {
    return this.inner.classNames;
  }

  /** A .tflite file's interpreter stays where predictions are measured. */
  get runtime(): Classifier | undefined {
    return this.inner.runtime;
  }

  logits(images: Tensor4D, training = false): Tensor2D {
    return this.inner.logits(images, training);
  }

  /** The session of one head, created on first use (each is a separate ONNX graph). */
  session(head: Head): Promise<Ort.InferenceSession> {
    const key = headKey(head);
    let s = this.sessions.get(key);
    if (!s) {
      s = this.ort.InferenceSession.create(exportOnnx(this.plan, head), {
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        // Errors only: a logits-only graph leaves some backward constants unused, which it would warn about.
        logSeverityLevel: 3,
      });
      this.sessions.set(key, s);
    }
    return s;
  }

  private async run(head: Head, x: Tensor4D, extra: Record<string, Float32Array>): Promise<{ logits: Tensor2D; grad: Tensor4D | null }> {
    const [n, s] = x.shape;
    const k = this.numClasses;
    const feeds: Record<string, Ort.Tensor> = { x: await this.imageFeed(x) };
    for (const [name, v] of Object.entries(extra)) feeds[name] = new this.ort.Tensor('float32', v, [n, k]);
    const out = await (await this.session(head)).run(feeds);
    const logits = tf.tensor2d(out.logits.data as Float32Array, [n, k]);
    const grad = out.grad ? tf.tensor4d(out.grad.data as Float32Array, [n, s, s, 3]) : null;
    for (const v of Object.values(out)) v.dispose();
    return { logits, grad };
  }

  private async imageFeed(x: Tensor4D): Promise<Ort.Tensor> {
    const [n, s] = x.shape;
    return new this.ort.Tensor('float32', (await x.data()) as Float32Array, [n, s, s, 3]);
  }

  /** Class ids as the float one-hot rows [n, k] the objective graphs take. */
  private async classFeed(ids: Tensor1D): Promise<Ort.Tensor> {
    return new this.ort.Tensor('float32', oneHotRows(await ids.data(), this.numClasses), [ids.shape[0], this.numClasses]);
  }

  /** Logits from the native session (no gradient tape). */
  async inferLogits(images: Tensor4D): Promise<Tensor2D> {
    return (await this.run({ kind: 'logits' }, images, {})).logits;
  }

  /**
   * One L∞ sign step as one session call (the gradient, the step and the projection in the graph,
   * and with r.logits the forward of the result): FGSM and PGD on this engine pay no tfjs kernels
   * and no tensor copies between the gradient and the step, and FGSM no second session.
   */
  async linfStep(x: Tensor4D, r: LinfStepRequest): Promise<LinfStepResult> {
    const [n, s] = x.shape;
    const feeds: Record<string, Ort.Tensor> = {
      x: await this.imageFeed(x),
      clean: await this.imageFeed(r.clean),
      y: await this.classFeed(r.labels),
      eps: new this.ort.Tensor('float32', Float32Array.of(r.eps), []),
      step: new this.ort.Tensor('float32', Float32Array.of(r.step), []),
    };
    if (r.targets) feeds.t = await this.classFeed(r.targets);
    const out = await (await this.session({ kind: 'linfStep', loss: r.loss, targeted: r.targets !== null, logits: r.logits })).run(feeds);
    const adv = tf.tensor4d(out.adv.data as Float32Array, [n, s, s, 3]);
    const logits = out.logits ? tf.tensor2d(out.logits.data as Float32Array, [n, this.numClasses]) : null;
    for (const v of Object.values(out)) v.dispose();
    return { adv, logits };
  }

  async objectiveGradient(x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss): Promise<ObjectiveGradient> {
    const k = this.numClasses;
    const feeds: Record<string, Float32Array> = { y: oneHotRows(await labels.data(), k) };
    if (targets) feeds.t = oneHotRows(await targets.data(), k);
    const { logits, grad } = await this.run({ kind: 'objective', loss, targeted: targets !== null }, x, feeds);
    return { logits, grad: grad as Tensor4D };
  }

  /**
   * Logits z and Jᵀc. A given cotangent takes one session call; one computed from z takes two
   * (the logits first, then the cotangent in tfjs, then the backward graph).
   */
  async vjp(x: Tensor4D, cotangent: Tensor2D | ((z: Tensor2D) => Tensor2D)): Promise<ObjectiveGradient> {
    if (typeof cotangent !== 'function') {
      const { logits, grad } = await this.run({ kind: 'vjp' }, x, { c: (await cotangent.data()) as Float32Array });
      return { logits, grad: grad as Tensor4D };
    }
    const z = await this.inferLogits(x);
    try {
      const c = tf.tidy(() => cotangent(z));
      const cv = (await c.data()) as Float32Array;
      c.dispose();
      const { logits: again, grad } = await this.run({ kind: 'vjp' }, x, { c: cv });
      again.dispose();
      return { logits: z, grad: grad as Tensor4D };
    } catch (e) {
      z.dispose();
      throw e;
    }
  }

  dispose(): void {
    for (const s of this.sessions.values())
      s.then(
        (v) => v.release(),
        () => undefined,
      );
    this.sessions.clear();
  }
}
