/**
 * The one way commands load the model they work on: a project model folder, any TensorFlow.js
 * layers or graph model (tensorflowjs_converter output), or a .tflite file made by anyone. Each
 * comes back as a Classifier on [0, 1] square RGB images; the adapter gives the model its own
 * input (range, H×W, grayscale, quantisation) and turns probabilities into log-probabilities.
 *
 * A .tflite file has two halves: its own interpreter (`classifier.runtime`), which measures every
 * prediction, and the graph rebuilt from the file in tfjs (`classifier.logits`), which gradient
 * attacks differentiate. When the graph cannot be rebuilt the interpreter is the classifier and
 * gradient attacks fail with the reason; black-box attacks still run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor2D, Tensor4D } from './tf';
import { Classifier, LayersClassifier } from './model';
import { endsInSoftmax, readCard, readModelFiles } from './model-io';
import {
  DEFAULT_MODEL_INPUT,
  describeRange,
  InputRange,
  InputShape,
  isIdentityRange,
  ModelInputOptions,
  squareSide,
  toModelInput,
  UNIT_RANGE,
} from './model-input';
import type { Preprocess } from './model-input';
import { UserError } from '../data/types';
import { hasTfliteIdentifier } from '../tflite/schema';
import { loadTfliteModel, TfliteClassifier } from '../tflite/runtime';
import { readGraph } from '../tflite/graph';
import { rebuildGraph, RebuiltGraph } from '../tflite/rebuild';
import { tfliteOnnx } from '../tflite/onnx-graph';
import type { OnnxModel } from './onnx/export';
import { EngineChoice, useEngine } from './engine';

export type ModelKind = 'advsign' | 'tfjs-layers' | 'tfjs-graph' | 'tflite';

/** What was loaded and which runtime computes what (commands print it and put it in their JSON). */
export interface ModelDescription {
  path: string;
  kind: ModelKind;
  input: InputShape & {
    dtype: string;
    range: InputRange;
    quantization: { scale: number; zeroPoint: number } | null;
    /** No --input-range was given: the range is what the input's quantisation represents. */
    rangeFromQuantization: boolean;
  };
  preprocess: Preprocess;
  numClasses: number;
  /** What the model outputs; attacks always work on logits (log-probabilities for 'probabilities'). */
  outputs: 'logits' | 'probabilities';
  /** Where the class names come from. */
  labels: string;
  /** What computes predictions (clean accuracy, the verdict on attacked images, Square's queries). */
  predictions: string;
  /** What gradients go through; null when there are none (then `noGradients` says why). */
  gradients: string | null;
  noGradients: string | null;
}

export interface LoadedModel {
  classifier: Classifier;
  description: ModelDescription;
  dispose(): void;
}

/** A model seen through the Classifier contract: [0, 1] square RGB images in, logits out. */
class AdaptedClassifier implements Classifier {
  readonly inputSize: number;
  readonly trainableWeights: tf.Variable[] = [];
  classNames?: readonly string[];

  constructor(
    private readonly forward: (x: Tensor4D) => Tensor2D,
    private readonly shape: InputShape,
    private readonly range: InputRange,
    readonly numClasses: number,
    /** forward returns probabilities: logits are their logs. */
    private readonly probabilities: boolean,
    private readonly free: () => void,
    readonly runtime?: Classifier,
    readonly onnx?: OnnxModel | string,
  ) {
    this.inputSize = squareSide(shape);
  }

  logits(images: Tensor4D): Tensor2D {
    return tf.tidy(() => {
      const y = this.forward(toModelInput(images, this.shape, this.range));
      return this.probabilities ? tf.log(tf.clipByValue(y, 1e-12, 1)) : y;
    });
  }

  dispose(): void {
    this.free();
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

function isTfliteFile(file: string): boolean {
  if (fs.statSync(file).isDirectory()) return false;
  if (file.toLowerCase().endsWith('.tflite')) return true;
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    return fs.readSync(fd, head, 0, 8, 0) === 8 && hasTfliteIdentifier(head);
  } finally {
    fs.closeSync(fd);
  }
}

/** Checks [batch?, H, W, 1|3] → [batch?, classes] and returns the input shape. */
function imageShape(
  label: string,
  inShape: readonly (number | null | undefined)[],
  outShape: readonly (number | null | undefined)[],
): { shape: InputShape; numClasses: number } {
  const [, h, w, c] = inShape;
  if (inShape.length !== 4 || !(h! > 0 && w! > 0) || !(c === 3 || c === 1)) {
    throw new UserError(`${label} input must be images [n, H, W, 3] (or 1 channel), got [${inShape.map((d) => d ?? -1).join(', ')}]`);
  }
  const k = outShape[outShape.length - 1];
  if (outShape.length !== 2 || !(k! > 0)) throw new UserError(`${label} output must be [n, classes], got [${outShape.map((d) => d ?? -1).join(', ')}]`);
  return { shape: { height: h!, width: w!, channels: c! }, numClasses: k! };
}

async function loadTflite(file: string, label: string, o: ModelInputOptions): Promise<LoadedModel> {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const runtime = await loadTfliteModel(bytes, { inputRange: o.inputRange, label });
  let rebuilt: RebuiltGraph | null = null;
  let noGradients: string | null = null;
  const graph = readGraph(bytes);
  try {
    rebuilt = rebuildGraph(graph, label);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    noGradients = e.message;
    runtime.gradientError = e.message;
  }
  const g = rebuilt;
  const classifier: Classifier = g
    ? new AdaptedClassifier(
        (x) => g.run(x, 'logits'),
        runtime.shape,
        runtime.inputRange,
        runtime.numClasses,
        false,
        () => {
          g.dispose();
          runtime.dispose();
        },
        runtime,
        tfliteOnnx(graph, runtime.shape, runtime.inputRange),
      )
    : runtime;
  const info = runtime.info;
  return {
    classifier,
    description: {
      path: label,
      kind: 'tflite',
      input: {
        ...info.shape,
        dtype: info.inputType,
        range: runtime.inputRange,
        quantization: info.inputQuant,
        rangeFromQuantization: o.inputRange === null && info.inputQuant !== null,
      },
      preprocess: o.preprocess,
      numClasses: runtime.numClasses,
      outputs: info.outputsSoftmax ? 'probabilities' : 'logits',
      labels: '',
      predictions: 'the TFLite interpreter (WebAssembly, XNNPACK) running the file',
      gradients: g
        ? `the file's graph rebuilt in TensorFlow.js${g.simulatesIntegers ? ' (integer activations simulated, straight-through rounding)' : ''}`
        : null,
      noGradients,
    },
    dispose: () => classifier.dispose?.(),
  };
}

/** The name of the node that feeds a graph model's softmax output (through Identity nodes), if any. */
function preSoftmaxNode(topology: unknown, output: string): { softmax: boolean; pre: string | null } {
  const nodes = (topology as { node?: { name: string; op: string; input?: string[] }[] }).node ?? [];
  const byName = new Map(nodes.map((n) => [n.name, n]));
  let n = byName.get(output.replace(/:\d+$/, ''));
  for (let guard = 0; n && guard < nodes.length; guard++) {
    if (n.op === 'Softmax') return { softmax: true, pre: n.input?.[0]?.replace(/:\d+$/, '') ?? null };
    if (n.op !== 'Identity' && n.op !== 'IdentityN') break;
    n = byName.get((n.input?.[0] ?? '').replace(/:\d+$/, ''));
  }
  return { softmax: false, pre: null };
}

async function loadTfjs(spec: string, o: ModelInputOptions): Promise<{ loaded: LoadedModel; cardNames: string[] | null }> {
  const files = readModelFiles(spec);
  const card = readCard(spec);
  const cardNames = Array.isArray(card?.classNames) ? card!.classNames : null;
  const range = o.inputRange ?? UNIT_RANGE;
  const describe = (kind: ModelKind, shape: InputShape, k: number, softmax: boolean, what: string): ModelDescription => ({
    path: spec,
    kind,
    input: { ...shape, dtype: 'float32', range, quantization: null, rangeFromQuantization: false },
    preprocess: o.preprocess,
    numClasses: k,
    outputs: softmax ? 'probabilities' : 'logits',
    labels: '',
    predictions: `TensorFlow.js (${what})`,
    gradients: `TensorFlow.js (${what})`,
    noGradients: null,
  });
  if (files.format === 'graph-model') {
    let model: tf.GraphModel;
    try {
      model = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
    } catch (e) {
      throw new UserError(`cannot load graph model ${files.jsonPath}: ${firstLine(e)}`);
    }
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      model.dispose();
      throw new UserError(`${spec} has ${model.inputs.length} inputs and ${model.outputs.length} outputs; a classifier has one of each`);
    }
    const out = model.outputs[0].name;
    let outShape: readonly (number | null | undefined)[] = model.outputs[0].shape ?? [];
    if (outShape.length !== 2 || !(Number(outShape[1]) > 0)) {
      // Without a signature the output shape is unknown until the graph runs once.
      const inShape = (model.inputs[0].shape ?? []).map((d) => (d != null && d > 0 ? d : 1));
      outShape = tf.tidy(() => (model.execute(tf.zeros(inShape), out) as tf.Tensor).shape);
    }
    const { shape, numClasses } = imageShape(spec, model.inputs[0].shape ?? [], outShape);
    const head = preSoftmaxNode(files.artifacts.modelTopology, out);
    const forward = head.pre ? (x: Tensor4D) => tf.logSoftmax(model.execute(x, head.pre!) as Tensor2D) : (x: Tensor4D) => model.execute(x, out) as Tensor2D;
    const clf = new AdaptedClassifier(forward, shape, range, numClasses, head.softmax && !head.pre, () => model.dispose());
    return {
      loaded: { classifier: clf, description: describe('tfjs-graph', shape, numClasses, head.softmax, 'graph model'), dispose: () => clf.dispose() },
      cardNames,
    };
  }
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  } catch (e) {
    throw new UserError(`cannot load model ${files.jsonPath}: ${firstLine(e)}`);
  }
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    model.dispose();
    throw new UserError(`${spec} has ${model.inputs.length} inputs and ${model.outputs.length} outputs; a classifier has one of each`);
  }
  const { shape, numClasses } = imageShape(spec, model.inputs[0].shape, model.outputs[0].shape);
  const softmax = endsInSoftmax(model);
  const ours = typeof card?.architecture === 'string' && card.architecture !== '';
  // The plain case stays a LayersClassifier: training, workers and defenses know it.
  const plain = shape.height === shape.width && shape.channels === 3 && isIdentityRange(range);
  const clf: Classifier = plain
    ? new LayersClassifier(model, softmax)
    : new AdaptedClassifier(
        (x) => model.apply(x) as Tensor2D,
        shape,
        range,
        numClasses,
        softmax,
        () => model.dispose(),
      );
  return {
    loaded: {
      classifier: clf,
      description: describe(ours ? 'advsign' : 'tfjs-layers', shape, numClasses, softmax, 'layers model'),
      dispose: () => clf.dispose?.(),
    },
    cardNames,
  };
}

/** Attaches the class names: --labels, else the model's card, else GTSRB's 43 (which then must fit). */
function applyLabels(m: LoadedModel, o: ModelInputOptions, cardNames: string[] | null): void {
  const k = m.classifier.numClasses;
  let names: readonly string[] | null = null;
  if (o.labels) {
    if (o.labels.length !== k) {
      throw new UserError(
        `${o.labelsFile ?? '--labels'} has ${o.labels.length} names but ${m.description.path} has ${k} outputs: give one name per output, in output order`,
      );
    }
    names = o.labels;
    m.description.labels = o.labelsFile ?? 'given';
  } else if (cardNames && cardNames.length === k) {
    names = cardNames;
    m.description.labels = 'the model card';
  } else if (k === 43) {
    m.description.labels = 'GTSRB (43 classes in class-id order)';
  } else {
    throw new UserError(`${m.description.path} has ${k} outputs, not the 43 GTSRB classes: name them with --labels FILE (one per line, in output order)`);
  }
  if (!names) return;
  for (const c of [m.classifier, m.classifier.runtime]) {
    if (c instanceof AdaptedClassifier || c instanceof LayersClassifier || c instanceof TfliteClassifier) c.classNames = names;
  }
}

/** Loads any supported model file or folder as a Classifier (see the top of this file). */
export async function loadModel(spec: string, o: ModelInputOptions = DEFAULT_MODEL_INPUT): Promise<LoadedModel> {
  const abs = path.resolve(spec);
  if (!fs.existsSync(abs)) throw new UserError(`model not found: ${spec}`);
  let loaded: LoadedModel;
  let cardNames: string[] | null = null;
  if (isTfliteFile(abs)) loaded = await loadTflite(abs, spec, o);
  else ({ loaded, cardNames } = await loadTfjs(spec, o));
  try {
    applyLabels(loaded, o, cardNames);
  } catch (e) {
    loaded.dispose();
    throw e;
  }
  return loaded;
}

/** What computes predictions and gradients once the engine is chosen (ort replaces the tfjs model). */
export function onEngine(d: ModelDescription, engine: EngineChoice): ModelDescription {
  if (engine.engine !== 'ort') {
    // A rebuilt .tflite graph that could have run natively says why it did not.
    return d.kind === 'tflite' && d.gradients && engine.source === 'auto' ? { ...d, gradients: `${d.gradients}; not on onnxruntime: ${engine.reason}` } : d;
  }
  const threads = engine.ort?.threads ?? 1;
  const on = `${threads} thread${threads === 1 ? '' : 's'}`;
  if (d.kind === 'tflite') {
    // The interpreter still measures predictions; gradients go through the file's graph written as ONNX.
    const simulated = d.gradients?.includes('integer activations simulated') ? ', integer activations simulated, straight-through rounding' : '';
    return { ...d, gradients: `onnxruntime (the file's graph rebuilt as ONNX with its gradient graph, ${on}${simulated})` };
  }
  const native = `onnxruntime (the model's ONNX export, ${on})`;
  return { ...d, predictions: native, gradients: `${native}, its gradient graph` };
}

export interface EngineModel extends LoadedModel {
  engine: EngineChoice;
}

/**
 * loadModel, then the compute engine (engine.ts): layers models and .tflite files whose graph
 * exports to ONNX run on onnxruntime when it loads; other models (a foreign graph model, a
 * .tflite op the export lacks) stay on tfjs unless `engine` forces ort, which is then a one-line
 * error with the reason.
 */
export async function loadModelOnEngine(spec: string, o: ModelInputOptions, engine: string | undefined): Promise<EngineModel> {
  const loaded = await loadModel(spec, o);
  let chosen: ReturnType<typeof useEngine>;
  try {
    chosen = useEngine(loaded.classifier, engine);
  } catch (e) {
    loaded.dispose();
    throw e;
  }
  const { classifier } = chosen;
  const onOrt = classifier !== loaded.classifier;
  return {
    classifier,
    description: onEngine(loaded.description, chosen.engine),
    engine: chosen.engine,
    dispose: () => {
      if (onOrt) classifier.dispose?.(); // the native sessions; the tfjs model below
      loaded.dispose();
    },
  };
}

/** Two lines for a command's output: what the model is, and which runtime computes what. */
export function describeModel(d: ModelDescription): string[] {
  const kind = { advsign: 'advsign model', 'tfjs-layers': 'TensorFlow.js layers model', 'tfjs-graph': 'TensorFlow.js graph model', tflite: 'TFLite file' }[
    d.kind
  ];
  const q = d.input.quantization ? ` (scale ${d.input.quantization.scale.toPrecision(4)}, zero point ${d.input.quantization.zeroPoint})` : '';
  return [
    `model: ${d.path}: ${kind}, input ${d.input.height}×${d.input.width}×${d.input.channels} ${d.input.dtype}${q}, pixel range ${describeRange(d.input.range)}${d.input.rangeFromQuantization ? ' (from the input quantisation)' : ''}, ` +
      `${d.preprocess === 'whole' ? 'whole image' : 'sign crop'}; ${d.numClasses} ${d.outputs}${d.outputs === 'probabilities' ? ' (attacks use log-probabilities)' : ''}; labels: ${d.labels}`,
    `predictions: ${d.predictions}; gradients: ${d.gradients ?? `none (${d.noGradients ?? 'not differentiable'})`}`,
  ];
}
