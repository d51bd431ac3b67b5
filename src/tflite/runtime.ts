/**
 * Running .tflite files in Node with @tensorflow/tfjs-tflite (the TFLite interpreter compiled
 * to WebAssembly, XNNPACK inside) and wrapping them as a black-box Classifier.
 *
 * The package only targets browsers. Its loader treats Node as a web worker (no `window`), so
 * it calls `importScripts(url)` for the emscripten glue and then `self.tflite_web_api_ModuleFactory`,
 * and the glue fetches the .wasm over XHR. The shim below provides `self`, `location`,
 * `importScripts` (a `require` of the file from node_modules) and `navigator`, and hands the
 * glue the .wasm bytes read from disk (`wasmBinary`), so nothing is fetched. These globals exist
 * only while the module loads (a probe model forces the load) and are removed afterwards. The
 * multi-threaded builds need SharedArrayBuffer workers started from blob URLs, which Node cannot
 * do: feature detection runs once with MessageChannel hidden, so the loader picks the
 * single-threaded SIMD build (XNNPACK, one thread).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf, Tensor2D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { InputRange, InputShape, mapPixel, roundHalfEven, squareSide, toModelInput, UNIT_RANGE } from '../inference/model-input';
import { UserError } from '../data/types';
import { hasTfliteIdentifier, Op, opts, parseModel, ParsedModel, ParsedTensor, serializeModel, TensorType } from './schema';
import { isQuantised, softmaxHead } from './graph';

export type TypedOut = Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

/** The parts of tfjs-tflite's TFLiteWebModelRunner we use. */
export interface RunnerTensor {
  id: number;
  dataType: string;
  name: string;
  shape: string;
  data(): TypedOut;
}
export interface Runner {
  getInputs(): RunnerTensor[];
  getOutputs(): RunnerTensor[];
  infer(): boolean;
  cleanUp(): void;
}
/** The parts of @tensorflow/tfjs-tflite this module uses. */
export interface TfliteModule {
  setWasmPath(p: string): void;
  getWasmFeatures(): Promise<{ simd: boolean; multiThreading: boolean }>;
  loadTFLiteModel(model: ArrayBuffer, options?: { numThreads?: number }): Promise<{ modelRunner?: Runner; predict(x: tf.Tensor): tf.Tensor }>;
}

/**
 * Ops the wrapper accepts: those of feed-forward image classifiers. Others (recurrent, control
 * flow, custom) are refused by name. Not all of them can be rebuilt for gradients (rebuild.ts);
 * a model using the rest still runs here for clean accuracy and black-box attacks.
 */
export const SUPPORTED_OPS: ReadonlySet<string> = new Set([
  'ABS',
  'ADD',
  'AVERAGE_POOL_2D',
  'BATCH_MATMUL',
  'CAST',
  'CONCATENATION',
  'CONV_2D',
  'DEPTHWISE_CONV_2D',
  'DEQUANTIZE',
  'DIV',
  'ELU',
  'EXP',
  'EXPAND_DIMS',
  'FULLY_CONNECTED',
  'GATHER',
  'HARD_SWISH',
  'L2_NORMALIZATION',
  'LEAKY_RELU',
  'LOGISTIC',
  'LOG_SOFTMAX',
  'MAXIMUM',
  'MAX_POOL_2D',
  'MEAN',
  'MINIMUM',
  'MIRROR_PAD',
  'MUL',
  'PACK',
  'PAD',
  'PADV2',
  'PRELU',
  'QUANTIZE',
  'REDUCE_MAX',
  'RELU',
  'RELU6',
  'RELU_N1_TO_1',
  'RESHAPE',
  'RESIZE_BILINEAR',
  'RESIZE_NEAREST_NEIGHBOR',
  'RSQRT',
  'SHAPE',
  'SLICE',
  'SOFTMAX',
  'SPLIT',
  'SQRT',
  'SQUARED_DIFFERENCE',
  'SQUEEZE',
  'STRIDED_SLICE',
  'SUB',
  'SUM',
  'TANH',
  'TRANSPOSE',
]);

let loading: Promise<TfliteModule> | null = null;

function packageDir(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-tflite/package.json'));
}

/** A one-op model (RESHAPE [1,1] → [1,1]) that makes the runtime load its wasm module. */
function probeModel(): ArrayBuffer {
  const bytes = serializeModel({
    description: 'advsign runtime probe',
    buffers: [new Uint8Array(0), new Uint8Array(Int32Array.of(1, 1).buffer)],
    tensors: [
      { name: 'x', shape: [1, 1], type: TensorType.FLOAT32, buffer: 0 },
      { name: 'shape', shape: [2], type: TensorType.INT32, buffer: 1 },
      { name: 'y', shape: [1, 1], type: TensorType.FLOAT32, buffer: 0 },
    ],
    operators: [{ op: Op.RESHAPE, inputs: [0, 1], outputs: [2], options: opts.reshape([1, 1]) }],
    inputs: [0],
    outputs: [2],
  });
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

async function loadRuntime(): Promise<TfliteModule> {
  const g = globalThis as Record<string, unknown>;
  const wasmDir = path.join(packageDir(), 'wasm');
  if (!fs.existsSync(path.join(wasmDir, 'tflite_web_api_cc_simd.wasm'))) {
    throw new UserError(`the TFLite runtime files are missing from ${wasmDir} (reinstall @tensorflow/tfjs-tflite)`);
  }
  // Browser globals exist only while the wasm module loads: left behind, `importScripts` or
  // `location` would make other emscripten builds and libraries believe they run in a browser.
  const added: string[] = [];
  const define = (key: string, value: unknown) => {
    if (g[key] === undefined) {
      g[key] = value;
      added.push(key);
    }
  };
  define('self', globalThis);
  define('navigator', { hardwareConcurrency: os.cpus().length, userAgent: `node ${process.version}` });
  // The loader prefixes absolute paths with location.origin: keep it empty.
  define('location', { origin: '', href: '', protocol: 'file:' });
  define('importScripts', (url: string) => {
    // `require` works because the glue ends with `module.exports = factory` for CommonJS.
    const file = url.replace(/^file:\/\//, '');
    const factory = require(file) as (opts: Record<string, unknown>) => Promise<unknown>;
    const wasmFile = file.replace(/\.js$/, '.wasm');
    define(path.basename(file).replace(/_cc.*$/, '_ModuleFactory'), (opts: Record<string, unknown>) =>
      factory({
        ...opts,
        wasmBinary: fs.readFileSync(wasmFile),
        // The interpreter logs 'INFO: Created TensorFlow Lite XNNPACK delegate' on every load.
        printErr: (text: string) => {
          if (!text.startsWith('INFO: ')) process.stderr.write(`tflite: ${text}\n`);
        },
      }),
    );
  });
  const savedChannel = g.MessageChannel;
  try {
    const mod = require('@tensorflow/tfjs-tflite') as TfliteModule;
    mod.setWasmPath(wasmDir + path.sep);
    // Feature detection is cached by the package: run it once without MessageChannel so the
    // multi-threaded build (web workers from blob URLs) is never chosen.
    g.MessageChannel = undefined;
    const features = await mod.getWasmFeatures();
    g.MessageChannel = savedChannel;
    if (features.multiThreading) throw new Error('tfjs-tflite still selected its multi-threaded build');
    // The wasm module loads with the first model and is cached by the package from then on.
    const probe = await mod.loadTFLiteModel(probeModel(), { numThreads: 1 });
    probe.modelRunner?.cleanUp();
    return mod;
  } finally {
    g.MessageChannel = savedChannel;
    for (const key of added) delete g[key];
  }
}

/** Loads (once per process) the tfjs-tflite runtime with the Node shim. */
export function tfliteRuntime(): Promise<TfliteModule> {
  loading ??= loadRuntime().catch((e) => {
    loading = null;
    throw e;
  });
  return loading;
}

export interface TfliteInfo {
  /** 'float32' or the quantised type of the first conv's weights ('int8'). */
  weights: 'float32' | 'int8' | 'other';
  inputType: string;
  outputType: string;
  ops: string[];
  bytes: number;
  description: string | null;
  parsed: ParsedModel;
  /** The input image's height, width and channels (batch 1). */
  shape: InputShape;
  /** Quantisation of the input and output tensors (null for float32 ones). */
  inputQuant: { scale: number; zeroPoint: number } | null;
  outputQuant: { scale: number; zeroPoint: number } | null;
  /** The output is a softmax (probabilities, possibly dequantised) rather than logits. */
  outputsSoftmax: boolean;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/** Checks a TFLite file before the runtime sees it; returns what the wrapper needs. */
export function inspectTflite(bytes: Uint8Array, label = 'model'): TfliteInfo {
  if (!hasTfliteIdentifier(bytes)) {
    const id = bytes.length >= 8 ? JSON.stringify(Buffer.from(bytes.subarray(4, 8)).toString('latin1')) : `${bytes.length} bytes`;
    throw new UserError(`${label} is not a TFLite model: bytes 4–8 should be "TFL3", found ${id}`);
  }
  let parsed: ParsedModel;
  try {
    parsed = parseModel(bytes);
  } catch (e) {
    throw new UserError(`${label} is a corrupt TFLite file: ${firstLine(e)}`);
  }
  if (parsed.subgraphCount !== 1) throw new UserError(`${label} has ${parsed.subgraphCount} subgraphs; only single-subgraph models are supported`);
  const bad = parsed.operatorCodes.filter((c) => !SUPPORTED_OPS.has(c.name));
  if (bad.length > 0) {
    const names = [...new Set(bad.map((c) => (c.name === 'CUSTOM' ? `CUSTOM (${c.customCode ?? '?'})` : c.name)))];
    throw new UserError(
      `${label} uses unsupported TFLite op${names.length > 1 ? 's' : ''} ${names.join(', ')} (supported: ${[...SUPPORTED_OPS].sort().join(', ')})`,
    );
  }
  if (parsed.inputs.length !== 1 || parsed.outputs.length !== 1) {
    throw new UserError(`${label} has ${parsed.inputs.length} inputs and ${parsed.outputs.length} outputs; a classifier has one of each`);
  }
  const input = parsed.tensors[parsed.inputs[0]];
  const output = parsed.tensors[parsed.outputs[0]];
  if (!input || !output) throw new UserError(`${label} is a corrupt TFLite file: input or output tensor index out of range`);
  const sh = input.shape;
  if (sh.length !== 4 || sh[0] !== 1 || !(sh[3] === 3 || sh[3] === 1) || !(sh[1] > 0 && sh[2] > 0)) {
    throw new UserError(`${label} input must be one image [1, H, W, 3] (RGB, or 1 channel for grayscale), got [${sh.join(', ')}]`);
  }
  if (output.shape.length !== 2 || output.shape[0] !== 1) throw new UserError(`${label} output must be [1, classes], got [${output.shape.join(', ')}]`);
  const quantOf = (t: ParsedTensor, what: string) => {
    if (!['float32', 'int8', 'uint8'].includes(t.typeName))
      throw new UserError(`${label}: ${what} ${t.name} has type ${t.typeName}; float32, int8 or uint8 expected`);
    if (t.typeName === 'float32') return null;
    if (!isQuantised(t)) {
      throw new UserError(
        `${label}: the ${what} ${t.name} is ${t.typeName} without quantisation parameters (scale, zero point), so its values cannot be mapped to pixels or scores`,
      );
    }
    return { scale: t.scale[0], zeroPoint: t.zeroPoint[0] ?? 0 };
  };
  const inputQuant = quantOf(input, 'input');
  const outputQuant = quantOf(output, 'output');
  const conv = parsed.operators.find((o) => o.name === 'CONV_2D' || o.name === 'FULLY_CONNECTED');
  const wType = conv ? parsed.tensors[conv.inputs[1]]?.typeName : undefined;
  return {
    weights: wType === 'float32' ? 'float32' : wType === 'int8' ? 'int8' : 'other',
    inputType: input.typeName,
    outputType: output.typeName,
    ops: parsed.operators.map((o) => o.name),
    bytes: bytes.length,
    description: parsed.description,
    parsed,
    shape: { height: sh[1], width: sh[2], channels: sh[3] },
    inputQuant,
    outputQuant,
    outputsSoftmax: softmaxHead(parsed) >= 0,
  };
}

export interface LoadTfliteOptions {
  /** Refuse the model unless its input is expectedInputSize × expectedInputSize (e.g. the data's size). */
  expectedInputSize?: number;
  /** Interpreter threads (the single-threaded wasm build is used in Node: 1). */
  numThreads?: number;
  /** The model's pixel values for images in [0, 1] (default: what the input's quantisation represents, else 0…1). */
  inputRange?: InputRange | null;
  /** How messages name bytes given directly (default 'the model'). */
  label?: string;
}

/** Throws a clear error when images of side `size` do not fit the model. */
export function assertInputSize(clf: { inputSize: number }, size: number, what = 'the data'): void {
  if (clf.inputSize !== size) {
    throw new UserError(`input size mismatch: the TFLite model takes ${clf.inputSize}×${clf.inputSize} images, ${what} has ${size}×${size}`);
  }
}

/**
 * A TFLite model as a Classifier. Inference happens in WebAssembly, one image at a time (the
 * files have batch size 1), outside TensorFlow.js: there are no gradients through it, so it is
 * what predictions are measured on, and what black-box attacks (Square) query. `logits()` says
 * clearly why if a gradient-based attack tries to differentiate through it.
 */
export class TfliteClassifier implements Classifier {
  /** The square image side it takes (its input's larger side; other shapes are resized to H×W). */
  readonly inputSize: number;
  readonly numClasses: number;
  /** True when the output is a softmax: logits are then recovered as log-probabilities. */
  readonly outputsSoftmax: boolean;
  readonly trainableWeights: tf.Variable[] = [];
  readonly shape: InputShape;
  readonly inputRange: InputRange;
  classNames?: readonly string[];
  /** The error a gradient through logits() raises (set by the loader when it knows why). */
  gradientError: string;
  private disposed = false;

  constructor(
    private readonly runner: Runner,
    readonly info: TfliteInfo,
    readonly source: string,
    inputRange: InputRange | null = null,
  ) {
    this.shape = info.shape;
    this.inputSize = squareSide(info.shape);
    this.numClasses = info.parsed.tensors[info.parsed.outputs[0]].shape[1];
    this.outputsSoftmax = info.outputsSoftmax;
    this.inputRange = inputRange ?? quantisedRange(info) ?? UNIT_RANGE;
    this.gradientError = `${source} runs in the TFLite interpreter, which has no gradients. Use a black-box attack (square) or transfer adversarial examples from a tfjs model`;
  }

  /**
   * Logits [n, numClasses] for n images at the model's own H×W×C with values in [0, 1] (mapped
   * onto the input range, then quantised for integer inputs), as a flat array.
   */
  predictLogits(images: Float32Array, n: number): Float32Array {
    if (this.disposed) throw new Error('TfliteClassifier used after dispose()');
    const { height: h, width: w, channels: c } = this.shape;
    const k = this.numClasses;
    const per = h * w * c;
    if (images.length !== n * per) {
      const side = Math.sqrt(images.length / Math.max(n, 1) / 3);
      throw new UserError(
        `input size mismatch: the TFLite model takes ${n} × ${h}×${w}×${c} values, got ${images.length}` +
          (Number.isInteger(side) ? ` (${side}×${side} images?)` : ''),
      );
    }
    const range = this.inputRange;
    const inQ = this.info.inputQuant,
      outQ = this.info.outputQuant;
    const out = new Float32Array(n * k);
    const [inT] = this.runner.getInputs();
    const [outT] = this.runner.getOutputs();
    for (let i = 0; i < n; i++) {
      // Views into the wasm heap are taken per call: the heap may grow and detach old views.
      const inView = inT.data();
      const x = images.subarray(i * per, (i + 1) * per);
      if (inQ) {
        const { scale, zeroPoint } = inQ;
        const qlo = inView instanceof Int8Array ? -128 : 0,
          qhi = inView instanceof Int8Array ? 127 : 255;
        // Rounded like the rebuilt graph's fake quantisation (float32, half to even).
        for (let j = 0; j < per; j++) inView[j] = Math.max(qlo, Math.min(qhi, roundHalfEven(Math.fround(mapPixel(x[j], range) / scale)) + zeroPoint));
      } else if (range.lo === 0 && range.hi === 1) {
        (inView as Float32Array).set(x);
      } else {
        for (let j = 0; j < per; j++) inView[j] = mapPixel(x[j], range);
      }
      if (!this.runner.infer()) throw new Error(`TFLite inference failed (${this.source})`);
      const o = outT.data();
      for (let j = 0; j < k; j++) {
        const v = outQ ? (o[j] - outQ.zeroPoint) * outQ.scale : o[j];
        out[i * k + j] = this.outputsSoftmax ? Math.log(Math.max(v, 1e-12)) : v;
      }
    }
    return out;
  }

  /** Predicted class per image (images as for predictLogits). */
  predictClasses(images: Float32Array, n: number): Int32Array {
    const z = this.predictLogits(images, n);
    const k = this.numClasses;
    return Int32Array.from({ length: n }, (_, i) => {
      let best = 0;
      for (let j = 1; j < k; j++) if (z[i * k + j] > z[i * k + best]) best = j;
      return best;
    });
  }

  /**
   * Classifier-compatible logits for [n, s, s, 3] images in [0, 1]. The values come from the
   * wasm interpreter, not from tfjs ops; the tensor is attached to the input through a custom
   * gradient that throws, so a gradient-based attack fails with an explanation.
   */
  logits(images: Tensor4D): Tensor2D {
    const [n, h, w, c] = images.shape;
    if (h !== this.inputSize || w !== this.inputSize || c !== 3) assertInputSize(this, h, `the batch [${images.shape.join(', ')}]`);
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const x = toModelInput(args[0] as Tensor4D, this.shape, null);
      const pixels = x.dataSync() as Float32Array;
      if (x !== args[0]) x.dispose();
      return {
        value: tf.tensor2d(this.predictLogits(pixels, n), [n, this.numClasses]),
        gradFunc: () => {
          throw new UserError(this.gradientError);
        },
      };
    });
    return f(images) as Tensor2D;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runner.cleanUp();
  }
}

/** The real values a quantised input can represent, [(qmin − z)·s, (qmax − z)·s]; null for float inputs. */
export function quantisedRange(info: TfliteInfo): InputRange | null {
  const q = info.inputQuant;
  if (!q) return null;
  const [qmin, qmax] = info.inputType === 'int8' ? [-128, 127] : [0, 255];
  return { lo: (qmin - q.zeroPoint) * q.scale, hi: (qmax - q.zeroPoint) * q.scale };
}

/** Loads a .tflite file (path) or bytes as a TfliteClassifier, with clear errors. */
export async function loadTfliteModel(src: string | Uint8Array, o: LoadTfliteOptions = {}): Promise<TfliteClassifier> {
  let bytes: Uint8Array;
  let label: string;
  if (typeof src === 'string') {
    label = src;
    if (!fs.existsSync(src)) throw new UserError(`TFLite model not found: ${src}`);
    if (fs.statSync(src).isDirectory()) throw new UserError(`${src} is a folder; give the .tflite file`);
    bytes = fs.readFileSync(src);
  } else {
    label = o.label ?? 'the model';
    bytes = src;
  }
  const info = inspectTflite(bytes, label);
  if (o.expectedInputSize != null) assertInputSize({ inputSize: squareSide(info.shape) }, o.expectedInputSize);
  const rt = await tfliteRuntime();
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let model: Awaited<ReturnType<TfliteModule['loadTFLiteModel']>>;
  try {
    model = await rt.loadTFLiteModel(copy, { numThreads: o.numThreads ?? 1 });
  } catch (e) {
    throw new UserError(`the TFLite runtime refused ${label}: ${firstLine(e)}`);
  }
  // TFLiteModel keeps its runner in a private field; using it directly avoids a tfjs tensor
  // round trip per image.
  const runner = model.modelRunner;
  if (!runner || typeof runner.infer !== 'function') throw new Error('unexpected @tensorflow/tfjs-tflite version: no modelRunner');
  return new TfliteClassifier(runner, info, label, o.inputRange);
}
