/**
 * The whole graph of a .tflite file as plain values: every operator with its decoded builtin
 * options, and the constant tensors' data (dequantised to float32 when quantised). rebuild.ts
 * turns it into tfjs ops; the runtime uses the same walk to tell a softmax head from logits.
 *
 * Option field ids follow the declaration order of each table in TFLite's schema.fbs.
 */
import { FbReader } from './flatbuffer';
import { parseModel, ParsedModel, ParsedTensor } from './schema';

export type FusedActivation = 'none' | 'relu' | 'relu_n1_to_1' | 'relu6' | 'tanh' | 'sign_bit';
const ACTIVATIONS: readonly FusedActivation[] = ['none', 'relu', 'relu_n1_to_1', 'relu6', 'tanh', 'sign_bit'];

/** The builtin options the rebuilt ops read; each op uses its own few (defaults otherwise). */
export interface OpOptions {
  act: FusedActivation;
  padding: 'same' | 'valid';
  strideH: number;
  strideW: number;
  dilationH: number;
  dilationW: number;
  depthMultiplier: number;
  filterH: number;
  filterW: number;
  /** SOFTMAX's inverse temperature. */
  beta: number;
  /** CONCATENATION. */
  axis: number;
  /** MEAN and other reductions. */
  keepDims: boolean;
  /** FULLY_CONNECTED: keep the input's leading dimensions; weightsFormat 0 is the plain layout. */
  keepNumDims: boolean;
  weightsFormat: number;
  /** RESHAPE's new_shape option (the shape input tensor wins when present). */
  newShape: number[] | null;
  squeezeDims: number[];
  /** LEAKY_RELU. */
  alpha: number;
}

export interface GraphOperator {
  index: number;
  op: string;
  /** Tensor indices; −1 marks an omitted optional input (e.g. no bias). */
  inputs: number[];
  outputs: number[];
  options: OpOptions;
}

export interface TfliteGraph {
  parsed: ParsedModel;
  operators: GraphOperator[];
  /** Raw bytes of each tensor's buffer (empty for activations). */
  bufferOf(tensor: number): Uint8Array;
}

const DEFAULT_OPTIONS: Readonly<OpOptions> = Object.freeze({
  act: 'none',
  padding: 'same',
  strideH: 1,
  strideW: 1,
  dilationH: 1,
  dilationW: 1,
  depthMultiplier: 1,
  filterH: 1,
  filterW: 1,
  beta: 1,
  axis: 0,
  keepDims: false,
  keepNumDims: false,
  weightsFormat: 0,
  newShape: null,
  squeezeDims: [],
  alpha: 0.2,
});

function decodeOptions(r: FbReader, op: string, t: number): OpOptions {
  const o: OpOptions = { ...DEFAULT_OPTIONS, squeezeDims: [] };
  if (!t) return o;
  const act = (id: number) => ACTIVATIONS[r.scalar(t, id, 'i8', 0)] ?? 'sign_bit';
  const padding = () => (r.scalar(t, 0, 'i8', 0) === 1 ? 'valid' : 'same');
  switch (op) {
    case 'CONV_2D':
      Object.assign(o, {
        padding: padding(),
        strideW: r.scalar(t, 1, 'i32', 1),
        strideH: r.scalar(t, 2, 'i32', 1),
        act: act(3),
        dilationW: r.scalar(t, 4, 'i32', 1),
        dilationH: r.scalar(t, 5, 'i32', 1),
      });
      break;
    case 'DEPTHWISE_CONV_2D':
      Object.assign(o, {
        padding: padding(),
        strideW: r.scalar(t, 1, 'i32', 1),
        strideH: r.scalar(t, 2, 'i32', 1),
        depthMultiplier: r.scalar(t, 3, 'i32', 0),
        act: act(4),
        dilationW: r.scalar(t, 5, 'i32', 1),
        dilationH: r.scalar(t, 6, 'i32', 1),
      });
      break;
    case 'MAX_POOL_2D':
    case 'AVERAGE_POOL_2D':
      Object.assign(o, {
        padding: padding(),
        strideW: r.scalar(t, 1, 'i32', 1),
        strideH: r.scalar(t, 2, 'i32', 1),
        filterW: r.scalar(t, 3, 'i32', 1),
        filterH: r.scalar(t, 4, 'i32', 1),
        act: act(5),
      });
      break;
    case 'FULLY_CONNECTED':
      Object.assign(o, { act: act(0), weightsFormat: r.scalar(t, 1, 'i8', 0), keepNumDims: r.scalar(t, 2, 'bool', 0) === 1 });
      break;
    case 'SOFTMAX':
      o.beta = r.scalar(t, 0, 'f32', 0);
      break;
    case 'CONCATENATION':
      Object.assign(o, { axis: r.scalar(t, 0, 'i32', 0), act: act(1) });
      break;
    case 'ADD':
    case 'SUB':
    case 'MUL':
    case 'DIV':
      o.act = act(0);
      break;
    case 'RESHAPE':
      o.newShape = r.vector(t, 0) ? r.scalars(t, 0, 'i32') : null;
      break;
    case 'MEAN':
    case 'SUM':
    case 'REDUCE_MAX':
      o.keepDims = r.scalar(t, 0, 'bool', 0) === 1;
      break;
    case 'SQUEEZE':
      o.squeezeDims = r.scalars(t, 0, 'i32');
      break;
    case 'LEAKY_RELU':
      o.alpha = r.scalar(t, 0, 'f32', 0);
      break;
  }
  return o;
}

/** Reads a .tflite file's first subgraph with options and buffers (throws on malformed files). */
export function readGraph(bytes: Uint8Array): TfliteGraph {
  const parsed = parseModel(bytes);
  const r = new FbReader(bytes);
  const root = r.root();
  const sg = r.tables(root, 2)[0];
  const opTables = sg ? r.tables(sg, 3) : [];
  const operators = parsed.operators.map((o, index): GraphOperator => ({
    index,
    op: o.name,
    inputs: o.inputs,
    outputs: o.outputs,
    options: decodeOptions(r, o.name, r.ref(opTables[index], 4)),
  }));
  const buffers = r.tables(root, 4);
  const cache = new Map<number, Uint8Array>();
  return {
    parsed,
    operators,
    bufferOf(tensor: number): Uint8Array {
      const b = parsed.tensors[tensor]?.buffer ?? 0;
      let data = cache.get(b);
      if (!data) {
        data = b > 0 && buffers[b] ? (r.bytesOf(buffers[b], 0) ?? new Uint8Array(0)) : new Uint8Array(0);
        cache.set(b, data);
      }
      return data;
    },
  };
}

/** IEEE half → float. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Raw element values of a buffer by tensor type (little-endian, as TFLite stores them). */
function rawValues(t: ParsedTensor, data: Uint8Array): ArrayLike<number> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const size: Record<string, number> = { float32: 4, float16: 2, int32: 4, uint8: 1, int64: 8, int16: 2, int8: 1 };
  const k = size[t.typeName];
  if (!k) throw new Error(`constant ${t.name} has type ${t.typeName}`);
  const n = Math.floor(data.byteLength / k);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * k;
    switch (t.typeName) {
      case 'float32':
        out[i] = view.getFloat32(at, true);
        break;
      case 'float16':
        out[i] = halfToFloat(view.getUint16(at, true));
        break;
      case 'int32':
        out[i] = view.getInt32(at, true);
        break;
      case 'uint8':
        out[i] = view.getUint8(at);
        break;
      case 'int64':
        out[i] = Number(view.getBigInt64(at, true));
        break;
      case 'int16':
        out[i] = view.getInt16(at, true);
        break;
      case 'int8':
        out[i] = view.getInt8(at);
        break;
    }
  }
  return out;
}

/** True when the tensor carries usable quantisation parameters. */
export function isQuantised(t: ParsedTensor): boolean {
  return t.scale.length > 0 && t.scale.every((s) => s > 0 && Number.isFinite(s));
}

/**
 * A constant tensor's values as float32: quantised data is dequantised, f = scale·(q − zero point),
 * per channel along its quantized_dimension. Null when the tensor has no data (an activation).
 */
export function constantValues(g: TfliteGraph, index: number): Float32Array | null {
  const t = g.parsed.tensors[index];
  const data = g.bufferOf(index);
  if (!t || data.length === 0) return null;
  const q = rawValues(t, data);
  const out = new Float32Array(q.length);
  const float = t.typeName === 'float32' || t.typeName === 'float16';
  if (float || !isQuantised(t)) {
    for (let i = 0; i < q.length; i++) out[i] = q[i];
    return out;
  }
  const channels = t.scale.length;
  const inner = t.shape.slice(t.quantizedDimension + 1).reduce((a, b) => a * b, 1);
  for (let i = 0; i < q.length; i++) {
    const c = channels > 1 ? Math.floor(i / inner) % channels : 0;
    out[i] = t.scale[c] * (q[i] - (t.zeroPoint[c] ?? t.zeroPoint[0] ?? 0));
  }
  return out;
}

/** An integer constant (shape, axes, paddings), or null when the tensor has no data. */
export function constantInts(g: TfliteGraph, index: number): number[] | null {
  const t = g.parsed.tensors[index];
  const data = g.bufferOf(index);
  if (!t || data.length === 0) return null;
  return Array.from(rawValues(t, data), (v) => Math.round(v));
}

/** Ops that only change a tensor's representation, not which class wins. */
const PASS_THROUGH = new Set(['DEQUANTIZE', 'QUANTIZE', 'RESHAPE', 'SQUEEZE']);

/**
 * The SOFTMAX operator that produces the model's output (possibly followed by DEQUANTIZE,
 * QUANTIZE, RESHAPE or SQUEEZE), or −1 when the output is logits.
 */
export function softmaxHead(parsed: Pick<ParsedModel, 'operators' | 'outputs'>): number {
  let t = parsed.outputs[0];
  for (let guard = 0; guard < parsed.operators.length; guard++) {
    const i = parsed.operators.findIndex((o) => o.outputs.includes(t));
    if (i < 0) return -1;
    const o = parsed.operators[i];
    if (o.name === 'SOFTMAX') return i;
    if (!PASS_THROUGH.has(o.name)) return -1;
    t = o.inputs[0];
  }
  return -1;
}
