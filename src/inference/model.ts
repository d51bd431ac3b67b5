/**
 * The traffic-sign CNN: architectures, and the Classifier wrapper every other module uses.
 * Input is float32 NHWC RGB in [0, 1]; normalisation is a layer inside the model (so attacks,
 * saved files and TFLite exports all see the same [0, 1] contract); the output is logits.
 */
import { tf, Tensor, Tensor1D, Tensor2D, Tensor4D } from './tf';
import type { AttackLoss, LinfStepRequest, LinfStepResult, ObjectiveGradient } from './objective';
import type { OnnxModel } from './onnx/export';

export const ARCHITECTURES = ['cnn4', 'cnn4-small', 'cnn4-wide', 'cnn4-bn', 'cnn2-ibp', 'cnn2-ibp-wide'] as const;

type IbpArchitecture = 'cnn2-ibp' | 'cnn2-ibp-wide';

/** Channels of the two conv blocks and the dense layer, per cnn4 architecture. */
const WIDTHS: Record<Exclude<Architecture, IbpArchitecture>, [number, number, number]> = {
  'cnn4-small': [16, 32, 64],
  cnn4: [24, 48, 128],
  'cnn4-wide': [32, 64, 128],
  'cnn4-bn': [24, 48, 128],
};
export type Architecture = (typeof ARCHITECTURES)[number];

export interface ModelSpec {
  arch: Architecture;
  inputSize: number;
  numClasses: number;
  seed?: number;
}

/** Four 3×3 conv layers in two blocks, then a dense layer: enough for GTSRB at 32×32. */
export function buildModel(spec: ModelSpec): tf.LayersModel {
  const { inputSize: s, numClasses, arch } = spec;
  const seed = spec.seed ?? 1;
  if (arch === 'cnn2-ibp' || arch === 'cnn2-ibp-wide') return buildIbpModel(arch, s, numClasses, seed);
  const init = (k: number) => tf.initializers.heNormal({ seed: seed * 100 + k });
  const width = WIDTHS[arch];
  const m = tf.sequential({ name: `advsign_${arch}` });
  m.add(tf.layers.rescaling({ inputShape: [s, s, 3], scale: 2, offset: -1, name: 'normalise' }));
  let k = 0;
  for (const [block, ch] of [width[0], width[1]].entries()) {
    for (let j = 0; j < 2; j++) {
      const bn = arch === 'cnn4-bn';
      m.add(
        tf.layers.conv2d({
          filters: ch,
          kernelSize: 3,
          padding: 'same',
          activation: bn ? 'linear' : 'relu',
          useBias: !bn,
          kernelInitializer: init(k++),
          name: `conv${block + 1}_${j + 1}`,
        }),
      );
      if (bn) {
        // Batch norm makes the first epochs converge much faster; at inference it is an affine map.
        m.add(tf.layers.batchNormalization({ name: `bn${block + 1}_${j + 1}`, momentum: 0.9 }));
        m.add(tf.layers.reLU({ name: `relu${block + 1}_${j + 1}` }));
      }
    }
    m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `pool${block + 1}` }));
  }
  m.add(tf.layers.flatten({ name: 'flatten' }));
  // No fixed dropout seed: tfjs re-seeds every call with it, so a seeded layer drops the *same*
  // units at every step (those weights never train, yet they are live at inference). Training
  // sets a new seed per step instead (setDropoutSeeds).
  m.add(tf.layers.dropout({ rate: 0.3, name: 'drop1' }));
  m.add(tf.layers.dense({ units: width[2], activation: 'relu', kernelInitializer: init(k++), name: 'fc1' }));
  m.add(tf.layers.dropout({ rate: 0.3, name: 'drop2' }));
  m.add(tf.layers.dense({ units: numClasses, kernelInitializer: init(k++), name: 'logits' }));
  return m;
}

/** Channels of the two strided convs and the dense layer of the IBP nets. */
const IBP_WIDTHS: Record<IbpArchitecture, [number, number, number]> = {
  'cnn2-ibp': [32, 64, 128],
  // 2.3× the multiply-adds: the narrow net underfits under IBP (train accuracy 79 %).
  'cnn2-ibp-wide': [48, 96, 256],
};

/**
 * A net for certified (IBP) training: interval bounds loosen at every layer, so it has few of
 * them — two strided 4×4 convs, a dense layer, the logits — like the small and medium nets of
 * Gowal et al. 2018, and no dropout. Weights start with the IBP initialisation of Shi et al.
 * 2021, N(0, 2π/n_in²): an interval keeps its width through a layer at the start instead of
 * growing ~√n_in-fold, so the eps ramp does not begin with astronomically loose bounds (He
 * initialisation gave a worst-case CE of ~1000 at 0.5/255).
 */
function buildIbpModel(arch: IbpArchitecture, s: number, numClasses: number, seed: number): tf.LayersModel {
  const [c1, c2, fc] = IBP_WIDTHS[arch];
  const init = (fanIn: number, k: number) => tf.initializers.randomNormal({ mean: 0, stddev: Math.sqrt(2 * Math.PI) / fanIn, seed: seed * 100 + k });
  const m = tf.sequential({ name: `advsign_${arch}` });
  m.add(tf.layers.rescaling({ inputShape: [s, s, 3], scale: 2, offset: -1, name: 'normalise' }));
  m.add(
    tf.layers.conv2d({ filters: c1, kernelSize: 4, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(4 * 4 * 3, 0), name: 'conv1' }),
  );
  m.add(
    tf.layers.conv2d({ filters: c2, kernelSize: 4, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(4 * 4 * c1, 1), name: 'conv2' }),
  );
  m.add(tf.layers.flatten({ name: 'flatten' }));
  const flat = Math.ceil(s / 4) ** 2 * c2;
  m.add(tf.layers.dense({ units: fc, activation: 'relu', kernelInitializer: init(flat, 2), name: 'fc1' }));
  m.add(tf.layers.dense({ units: numClasses, kernelInitializer: init(fc, 3), name: 'logits' }));
  return m;
}

/**
 * Clears the seed of every Dropout layer (models saved before the fix above carry one), so
 * fine-tuning draws a fresh mask at each step. Returns how many layers were changed.
 */
export function unseedDropout(model: tf.LayersModel): number {
  let n = 0;
  for (const layer of model.layers) {
    const d = layer as unknown as { seed?: number };
    if (layer.getClassName() === 'Dropout' && d.seed != null) {
      d.seed = undefined;
      n++;
    }
  }
  return n;
}

/**
 * Gives every Dropout layer a fresh seed (seed + its index): called once per training step, so
 * masks change from step to step yet a training run stays reproducible from its own seed.
 */
export function setDropoutSeeds(model: tf.LayersModel, seed: number): void {
  let j = 0;
  for (const layer of model.layers) {
    if (layer.getClassName() === 'Dropout') (layer as unknown as { seed?: number }).seed = seed + j++;
  }
}

/** What attacks, evaluation and the daemon need from a model. */
export interface Classifier {
  readonly inputSize: number;
  readonly numClasses: number;
  /** Logits [n, numClasses] for images [n, s, s, 3] in [0, 1]. Differentiable. */
  logits(images: Tensor4D, training?: boolean): Tensor2D;
  /** Trainable variables (for training loops). */
  readonly trainableWeights: tf.Variable[];
  /** The model's own name for each output (a --labels file, its card); absent: GTSRB's 43 classes. */
  readonly classNames?: readonly string[];
  /**
   * Where predictions are measured, when that is not logits() itself: for a .tflite file, its own
   * interpreter (logits() is then the graph rebuilt from the file, which gradients go through).
   */
  readonly runtime?: Classifier;
  /**
   * A model that is not a tfjs layers model but has a differentiable ONNX graph (a .tflite file's,
   * src/tflite/onnx-graph.ts) for the ort engine, or why it has none.
   */
  readonly onnx?: OnnxModel | string;
  /** Frees the model's memory (weights, interpreter); an engine wrapper frees only its native sessions. */
  dispose?(): void;
  /**
   * A native engine's fused forward and backward pass: logits and the input gradient of an attack
   * objective (src/inference/objective.ts) in one call. Absent, attacks differentiate `logits`.
   */
  objectiveGradient?(x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss): Promise<ObjectiveGradient>;
  /** A native engine's logits, outside any gradient tape. Absent, `logits` serves (see inferLogits). */
  inferLogits?(images: Tensor4D): Promise<Tensor2D>;
  /**
   * A native engine's vector-Jacobian product: the logits z and Jᵀc for the cotangent c (given,
   * or computed from z). Absent, tfjs differentiates `logits` (see vjp in objective.ts).
   */
  vjp?(x: Tensor4D, cotangent: Tensor2D | ((z: Tensor2D) => Tensor2D)): Promise<ObjectiveGradient>;
  /**
   * A native engine's L∞ sign step (FGSM, a PGD step) in one call, the result's logits included
   * when asked. Absent, attacks take the step in tfjs from objectiveGradient.
   */
  linfStep?(x: Tensor4D, request: LinfStepRequest): Promise<LinfStepResult>;
}

/** Logits for inference (caller owns): the native engine's when the classifier has one. */
export async function inferLogits(clf: Classifier, images: Tensor4D): Promise<Tensor2D> {
  return clf.inferLogits ? clf.inferLogits(images) : tf.tidy(() => clf.logits(images));
}

/** The classifier whose predictions count: the runtime when there is one, else the model itself. */
export function measuredOn(clf: Classifier): Classifier {
  return clf.runtime ?? clf;
}

/** Wraps a Keras-style model whose output is logits, or softmax probabilities (then log is taken). */
export class LayersClassifier implements Classifier {
  readonly inputSize: number;
  readonly numClasses: number;
  /** True when the stored model ends in softmax: logits are recovered as log-probabilities. */
  readonly outputsSoftmax: boolean;
  classNames?: readonly string[];

  constructor(
    readonly model: tf.LayersModel,
    outputsSoftmax = false,
  ) {
    const inShape = model.inputs[0].shape;
    const outShape = model.outputs[0].shape;
    if (inShape.length !== 4 || inShape[3] !== 3 || inShape[1] !== inShape[2] || inShape[1] == null) {
      throw new Error(`model input must be [n, s, s, 3], got [${inShape.join(', ')}]`);
    }
    if (outShape.length !== 2 || outShape[1] == null) {
      throw new Error(`model output must be [n, classes], got [${outShape.join(', ')}]`);
    }
    this.inputSize = inShape[1];
    this.numClasses = outShape[1];
    this.outputsSoftmax = outputsSoftmax;
  }

  logits(images: Tensor4D, training = false): Tensor2D {
    return tf.tidy(() => {
      const out = this.model.apply(images, { training }) as Tensor2D;
      // log(softmax) differs from the logits only by a per-row constant: same argmax, same margins.
      return this.outputsSoftmax ? tf.log(tf.clipByValue(out, 1e-12, 1)) : out;
    });
  }

  get trainableWeights(): tf.Variable[] {
    return this.model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  }

  dispose(): void {
    this.model.dispose();
  }
}

export interface Prediction {
  classId: number;
  probability: number;
}

/** Top-k softmax predictions per image. */
export async function predictTopK(clf: Classifier, images: Tensor4D, k = 5): Promise<Prediction[][]> {
  const z = await inferLogits(clf, images);
  const { values, indices } = tf.tidy(() => tf.topk(tf.softmax(z), k));
  z.dispose();
  const [v, i] = [(await values.array()) as number[][], (await indices.array()) as number[][]];
  values.dispose();
  indices.dispose();
  return v.map((row, r) => row.map((p, j) => ({ classId: i[r][j], probability: p })));
}

/** Predicted class per image, batched to bound memory. */
export async function predictClasses(clf: Classifier, images: Float32Array, n: number, batch = 256): Promise<Int32Array> {
  const s = clf.inputSize;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const x = tf.tensor4d(images.subarray(i * s * s * 3, (i + m) * s * s * 3), [m, s, s, 3]);
    const z = await inferLogits(clf, x);
    const pred = tf.argMax(z, 1);
    out.set((await pred.data()) as Int32Array, i);
    tf.dispose([x, z, pred]);
  }
  return out;
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof tf.Tensor;
}
