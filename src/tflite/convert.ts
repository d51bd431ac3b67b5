/**
 * Writes a folded plan (plan.ts) as a TFLite graph, float32 or int8.
 *
 * int8 follows TFLite's quantisation spec (post-training, full integer):
 *  - activations: int8, asymmetric per tensor, scale/zero point from the min/max each tensor
 *    reaches on the calibration images (the range always includes 0 so that 0 — the conv
 *    padding value — is exact);
 *  - conv weights: int8, symmetric per output channel (quantized_dimension 0, zero point 0);
 *  - dense weights: int8, symmetric per tensor (what TFLite's int8 FULLY_CONNECTED kernels of
 *    this runtime generation accept; per-channel FC needs newer runtimes);
 *  - biases: int32 with scale = input scale × weight scale, zero point 0;
 *  - pooling and reshape keep their input's scale and zero point (the kernels require it);
 *  - I/O stays float32: the input goes through the float MUL/ADD of the Rescaling layer and a
 *    QUANTIZE op; callers need not know about quantisation, at the cost of cheap elementwise ops.
 *  - the logits layer (the last dense) is by default a *hybrid* FULLY_CONNECTED: int8 weights,
 *    float input (after DEQUANTIZE) and float output, the input being quantised on the fly.
 *    Rounding the logits themselves to 256 levels (their range is ~±50, a step of ~0.4) was the
 *    largest error source: on 2,000 GTSRB test images top-1 agreement with tfjs went from
 *    99.35 % (all-int8 head) to 99.8 %, at the same file size. `head: 'int8'` gives the
 *    fully integer graph (QUANTIZE … DEQUANTIZE) for integer-only accelerators.
 */
import { tf } from '../inference/tf';
import type { ImageSet } from '../data/types';
import { Plan, runPlan, Step } from './plan';
import { Activation, ActivationCode, ModelDesc, Op, opts, Padding, QuantDesc, serializeModel, TensorDesc, TensorType, TensorTypeCode } from './schema';

export type Quantize = 'none' | 'int8';
/** int8 models: the logits layer fully int8, hybrid (int8 weights, float activations) or float. */
export type Int8Head = 'int8' | 'hybrid' | 'float';

export interface Range {
  min: number;
  max: number;
}

export interface Calibration {
  /** Range of the model input (before any step). */
  input: Range;
  /** Range of each step's output, same order as plan.steps. */
  steps: Range[];
  images: number;
}

/** Min/max of the input and of every step's output over the calibration images. */
export function calibrate(plan: Plan, set: ImageSet, maxImages = 2000, batch = 128): Calibration {
  const s = plan.inputSize;
  if (set.size !== s) throw new Error(`calibration images are ${set.size}×${set.size}, the model expects ${s}×${s}`);
  const n = Math.min(set.n, maxImages);
  if (n === 0) throw new Error('calibration set is empty');
  const input: Range = { min: Infinity, max: -Infinity };
  const steps: Range[] = plan.steps.map(() => ({ min: Infinity, max: -Infinity }));
  const per = s * s * plan.channels;
  // Spread the picks over the whole set (sets are often sorted by class).
  const stride = set.n / n;
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const x = new Float32Array(m * per);
    for (let j = 0; j < m; j++) {
      const k = Math.floor((i + j) * stride);
      x.set(set.images.subarray(k * per, (k + 1) * per), j * per);
    }
    for (const v of x) {
      if (v < input.min) input.min = v;
      if (v > input.max) input.max = v;
    }
    const pending: { step: number; min: tf.Scalar; max: tf.Scalar }[] = [];
    const xt = tf.tensor4d(x, [m, s, s, plan.channels]);
    const out = runPlan(plan, xt, (step, t) => {
      pending.push({ step, min: tf.keep(tf.min(t)), max: tf.keep(tf.max(t)) });
    });
    for (const p of pending) {
      const lo = p.min.dataSync()[0],
        hi = p.max.dataSync()[0];
      steps[p.step].min = Math.min(steps[p.step].min, lo);
      steps[p.step].max = Math.max(steps[p.step].max, hi);
      p.min.dispose();
      p.max.dispose();
    }
    out.dispose();
    xt.dispose();
  }
  return { input, steps, images: n };
}

/** Asymmetric int8 parameters covering [min, max] ∪ {0}. */
export function activationQuant(r: Range): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, r.min),
    hi = Math.max(0, r.max);
  const scale = hi - lo > 1e-8 ? (hi - lo) / 255 : 1e-8 / 255;
  const zeroPoint = Math.max(-128, Math.min(127, Math.round(-128 - lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 weights; `perChannel` quantises each output row separately. w is [out, …]. */
export function quantizeWeights(w: Float32Array, outC: number, perChannel: boolean): { q: Int8Array; scales: number[] } {
  const per = w.length / outC;
  const scales: number[] = [];
  const q = new Int8Array(w.length);
  const groups = perChannel ? outC : 1;
  const size = perChannel ? per : w.length;
  for (let g = 0; g < groups; g++) {
    let m = 0;
    for (let i = g * size; i < (g + 1) * size; i++) m = Math.max(m, Math.abs(w[i]));
    // An all-zero channel still needs a positive scale; its weights stay 0 whatever it is.
    const scale = m > 0 ? m / 127 : 1 / 127;
    scales.push(scale);
    for (let i = g * size; i < (g + 1) * size; i++) q[i] = Math.max(-127, Math.min(127, Math.round(w[i] / scale)));
  }
  return { q, scales };
}

/** tfjs conv kernel [kh, kw, in, out] → TFLite filter [out, kh, kw, in]. */
export function convKernelToTflite(k: Float32Array, kh: number, kw: number, inC: number, outC: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let o = 0; o < outC; o++) {
    for (let y = 0; y < kh; y++) {
      for (let x = 0; x < kw; x++) {
        for (let i = 0; i < inC; i++) out[((o * kh + y) * kw + x) * inC + i] = k[((y * kw + x) * inC + i) * outC + o];
      }
    }
  }
  return out;
}

/** tfjs dense kernel [in, out] → TFLite weights [out, in]. */
export function denseKernelToTflite(k: Float32Array, inC: number, outC: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let i = 0; i < inC; i++) for (let o = 0; o < outC; o++) out[o * inC + i] = k[i * outC + o];
  return out;
}

const bytesOf = (a: Float32Array | Int8Array | Int32Array) => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

/** Rounded and saturated to int32 (a typed array would wrap around silently). */
const int32 = (v: number) => Math.max(-2147483647, Math.min(2147483647, Math.round(v)));

const ACT: Record<string, ActivationCode> = { none: Activation.NONE, relu: Activation.RELU, relu6: Activation.RELU6 };

export interface ConvertOptions {
  quantize: Quantize;
  /** Required for int8. */
  calibration?: Calibration;
  /** Per-channel dense weights (needs a TFLite runtime ≥ 2.14; off by default). */
  perChannelDense?: boolean;
  description?: string;
  /** How the last dense layer (the logits) runs in int8 models (default 'hybrid', see above). */
  head?: Int8Head;
}

/** Builds the TFLite graph of a plan. The exported model has batch size 1. */
export function planToModel(plan: Plan, o: ConvertOptions): ModelDesc {
  const int8 = o.quantize === 'int8';
  if (int8 && !o.calibration) throw new Error('int8 export needs calibration ranges');
  const cal = o.calibration;
  const buffers: Uint8Array[] = [new Uint8Array(0)];
  const tensors: TensorDesc[] = [];
  const operators: ModelDesc['operators'] = [];
  const addTensor = (name: string, shape: number[], type: TensorTypeCode, data?: Uint8Array, quantization?: QuantDesc): number => {
    let buffer = 0;
    if (data) buffer = buffers.push(data) - 1;
    return tensors.push({ name, shape, type, buffer, quantization }) - 1;
  };
  const s = plan.inputSize;
  let shape = [1, s, s, plan.channels];
  let cur = addTensor('input', shape, TensorType.FLOAT32);
  const inputIndex = cur;
  /** Quantisation of the current tensor once in int8 (null while still float). */
  let q: { scale: number; zeroPoint: number } | null = null;
  const qdesc = (p: { scale: number; zeroPoint: number }): QuantDesc => ({ scale: [p.scale], zeroPoint: [p.zeroPoint] });
  const toInt8 = (range: Range) => {
    const p = activationQuant(range);
    const t = addTensor('input_int8', shape, TensorType.INT8, undefined, qdesc(p));
    operators.push({ op: Op.QUANTIZE, inputs: [cur], outputs: [t] });
    cur = t;
    q = p;
  };

  plan.steps.forEach((st: Step, i) => {
    const outShape = plan.shapes[i];
    // Everything from the first weighted layer on runs in int8.
    if (int8 && !q && (st.kind === 'conv' || st.kind === 'dense' || st.kind === 'pool' || st.kind === 'flatten')) {
      toInt8(i === 0 ? cal!.input : cal!.steps[i - 1]);
    }
    const outQ = () => {
      const p = activationQuant(cal!.steps[i]);
      q = p;
      return qdesc(p);
    };
    switch (st.kind) {
      case 'affine': {
        if (q) throw new Error('a Rescaling layer after the first conv/dense cannot be written in an int8 model');
        // MUL then ADD by scalar constants, in float (before QUANTIZE in int8 models).
        if (st.scale !== 1) {
          const c = addTensor('rescale_mul', [1], TensorType.FLOAT32, bytesOf(Float32Array.of(st.scale)));
          const t = addTensor('rescaled_mul', shape, TensorType.FLOAT32);
          operators.push({ op: Op.MUL, inputs: [cur, c], outputs: [t], options: opts.mul() });
          cur = t;
        }
        if (st.offset !== 0) {
          const c = addTensor('rescale_add', [1], TensorType.FLOAT32, bytesOf(Float32Array.of(st.offset)));
          const t = addTensor('rescaled', shape, TensorType.FLOAT32);
          operators.push({ op: Op.ADD, inputs: [cur, c], outputs: [t], options: opts.add() });
          cur = t;
        }
        break;
      }
      case 'conv': {
        const w = convKernelToTflite(st.kernel, st.kh, st.kw, st.inC, st.outC);
        const wShape = [st.outC, st.kh, st.kw, st.inC];
        let wt: number, bt: number, out: number;
        if (int8) {
          const inScale = q!.scale;
          const { q: wq, scales } = quantizeWeights(w, st.outC, true);
          wt = addTensor(`${st.name}/filter`, wShape, TensorType.INT8, bytesOf(wq), { scale: scales, zeroPoint: scales.map(() => 0), quantizedDimension: 0 });
          const bScales = scales.map((ws) => inScale * ws);
          const bq = Int32Array.from(st.bias, (b, c) => int32(b / bScales[c]));
          bt = addTensor(`${st.name}/bias`, [st.outC], TensorType.INT32, bytesOf(bq), {
            scale: bScales,
            zeroPoint: bScales.map(() => 0),
            quantizedDimension: 0,
          });
          out = addTensor(st.name, outShape, TensorType.INT8, undefined, outQ());
        } else {
          wt = addTensor(`${st.name}/filter`, wShape, TensorType.FLOAT32, bytesOf(w));
          bt = addTensor(`${st.name}/bias`, [st.outC], TensorType.FLOAT32, bytesOf(st.bias));
          out = addTensor(st.name, outShape, TensorType.FLOAT32);
        }
        if (st.stride[0] !== st.stride[1] || st.dilation[0] !== st.dilation[1]) throw new Error(`${st.name}: unequal strides or dilations are not supported`);
        operators.push({
          op: Op.CONV_2D,
          inputs: [cur, wt, bt],
          outputs: [out],
          version: int8 ? 3 : 1,
          options: opts.conv2d(st.padding === 'same' ? Padding.SAME : Padding.VALID, st.stride[0], ACT[st.act], st.dilation[0]),
        });
        cur = out;
        break;
      }
      case 'pool': {
        if (st.size[0] !== st.size[1] || st.stride[0] !== st.stride[1]) throw new Error(`${st.name}: non-square pooling is not supported`);
        const out = addTensor(st.name, outShape, int8 ? TensorType.INT8 : TensorType.FLOAT32, undefined, int8 ? qdesc(q!) : undefined);
        operators.push({
          op: st.type === 'max' ? Op.MAX_POOL_2D : Op.AVERAGE_POOL_2D,
          inputs: [cur],
          outputs: [out],
          version: int8 ? 2 : 1,
          options: opts.pool2d(st.padding === 'same' ? Padding.SAME : Padding.VALID, st.stride[0], st.size[0]),
        });
        cur = out;
        break;
      }
      case 'flatten': {
        const shapeT = addTensor('flatten/shape', [2], TensorType.INT32, bytesOf(Int32Array.from(outShape)));
        const out = addTensor('flatten', outShape, int8 ? TensorType.INT8 : TensorType.FLOAT32, undefined, int8 ? qdesc(q!) : undefined);
        operators.push({ op: Op.RESHAPE, inputs: [cur, shapeT], outputs: [out], options: opts.reshape(outShape) });
        cur = out;
        break;
      }
      case 'dense': {
        const w = denseKernelToTflite(st.kernel, st.inC, st.outC);
        let wt: number, bt: number, out: number;
        const lastDense = !plan.steps.slice(i + 1).some((x) => x.kind === 'dense' || x.kind === 'conv');
        const head = o.head ?? 'hybrid';
        if (int8 && lastDense && head !== 'int8') {
          dequantize();
          if (head === 'hybrid') {
            const { q: wq, scales } = quantizeWeights(w, st.outC, false);
            wt = addTensor(`${st.name}/weights`, [st.outC, st.inC], TensorType.INT8, bytesOf(wq), { scale: scales, zeroPoint: [0] });
          } else {
            wt = addTensor(`${st.name}/weights`, [st.outC, st.inC], TensorType.FLOAT32, bytesOf(w));
          }
          bt = addTensor(`${st.name}/bias`, [st.outC], TensorType.FLOAT32, bytesOf(st.bias));
          out = addTensor(st.name, outShape, TensorType.FLOAT32);
          operators.push({
            op: Op.FULLY_CONNECTED,
            inputs: [cur, wt, bt],
            outputs: [out],
            version: head === 'hybrid' ? 3 : 1,
            options: opts.fullyConnected(ACT[st.act]),
          });
          cur = out;
          break;
        }
        if (int8) {
          const inScale = q!.scale;
          const perChannel = o.perChannelDense === true;
          const { q: wq, scales } = quantizeWeights(w, st.outC, perChannel);
          wt = addTensor(`${st.name}/weights`, [st.outC, st.inC], TensorType.INT8, bytesOf(wq), {
            scale: scales,
            zeroPoint: scales.map(() => 0),
            quantizedDimension: 0,
          });
          const bScales = scales.map((ws) => inScale * ws);
          const bq = Int32Array.from(st.bias, (b, c) => int32(b / bScales[perChannel ? c : 0]));
          bt = addTensor(`${st.name}/bias`, [st.outC], TensorType.INT32, bytesOf(bq), {
            scale: bScales,
            zeroPoint: bScales.map(() => 0),
            quantizedDimension: 0,
          });
          out = addTensor(st.name, outShape, TensorType.INT8, undefined, outQ());
        } else {
          wt = addTensor(`${st.name}/weights`, [st.outC, st.inC], TensorType.FLOAT32, bytesOf(w));
          bt = addTensor(`${st.name}/bias`, [st.outC], TensorType.FLOAT32, bytesOf(st.bias));
          out = addTensor(st.name, outShape, TensorType.FLOAT32);
        }
        operators.push({ op: Op.FULLY_CONNECTED, inputs: [cur, wt, bt], outputs: [out], version: int8 ? 4 : 1, options: opts.fullyConnected(ACT[st.act]) });
        cur = out;
        break;
      }
      case 'softmax': {
        if (q) dequantize();
        const out = addTensor('probabilities', outShape, TensorType.FLOAT32);
        operators.push({ op: Op.SOFTMAX, inputs: [cur], outputs: [out], options: opts.softmax(1) });
        cur = out;
        break;
      }
    }
    shape = outShape;
  });
  function dequantize(): void {
    const t = addTensor(`${tensors[cur].name}/float`, shape, TensorType.FLOAT32);
    operators.push({ op: Op.DEQUANTIZE, inputs: [cur], outputs: [t], version: 2 });
    cur = t;
    q = null;
  }
  if (q) dequantize();
  return {
    description: o.description ?? `advsign ${plan.name} (${int8 ? 'int8' : 'float32'})`,
    buffers,
    tensors,
    operators,
    inputs: [inputIndex],
    outputs: [cur],
  };
}

export function planToTflite(plan: Plan, o: ConvertOptions): Uint8Array {
  return serializeModel(planToModel(plan, o));
}
