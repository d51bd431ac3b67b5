/**
 * A tfjs layers model read as a chain of ONNX-friendly operations (NCHW, weights in ONNX layout):
 * what the ONNX export differentiates. Supported: chains (Sequential or functional with one path)
 * of Rescaling, Conv2D, DepthwiseConv2D, BatchNormalization, ReLU / Activation(relu|linear),
 * MaxPooling2D, AveragePooling2D (valid), Flatten, Dropout and Dense (relu, linear or a final
 * softmax). Batch normalisation is folded into the convolution before it when it can be.
 * Anything else raises Unsupported, and the caller keeps tfjs. A training plan (ort-train.ts) also
 * keeps the dropout layers and refuses batch normalisation, whose training pass uses batch statistics.
 */
import { tf } from '../tf';

export class Unsupported extends Error {}

/** Channels, height, width of an activation (NCHW without the batch), or [features] after flattening. */
export type Shape = [number, number, number] | [number];

export type PlanOp =
  /** y = x·scale + offset per channel (NCHW: over axis 1, broadcast as [C, 1, 1] when spatial). */
  | { kind: 'affine'; scale: Float32Array; offset: Float32Array; spatial: boolean }
  | {
      kind: 'conv';
      weight: Float32Array;
      wdims: [number, number, number, number];
      bias: Float32Array | null;
      strides: [number, number];
      pads: [number, number, number, number];
      group: number;
      relu: boolean;
      layer: string;
    }
  | { kind: 'relu' }
  | { kind: 'maxpool'; kernel: [number, number]; strides: [number, number]; pads: [number, number, number, number] }
  | { kind: 'avgpool'; kernel: [number, number]; channels: number }
  | { kind: 'flatten' }
  | {
      kind: 'dense';
      weight: Float32Array;
      inFeatures: number;
      units: number;
      bias: Float32Array | null;
      relu: boolean;
      layer: string;
      flattenedFrom?: [number, number, number];
    }
  /** Only in a training plan (planOf's `training`): inverted dropout of `features` activations. */
  | { kind: 'dropout'; rate: number; features: number }
  | { kind: 'softmax' }
  | { kind: 'logclip' };

export interface Plan {
  inputSize: number;
  numClasses: number;
  ops: PlanOp[];
}

type Config = Record<string, unknown>;

function pair(v: unknown, what: string): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  throw new Unsupported(`${what}: ${JSON.stringify(v)}`);
}

/** TensorFlow's padding for one axis: 'valid' none; 'same' the output ceil(in/s), extra at the end. */
function padFor(padding: unknown, size: number, k: number, s: number): [number, number, number] {
  if (padding === 'valid') return [0, 0, Math.floor((size - k) / s) + 1];
  if (padding !== 'same') throw new Unsupported(`padding ${String(padding)}`);
  const out = Math.ceil(size / s);
  const total = Math.max((out - 1) * s + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2), out];
}

function values(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

function activationOf(config: Config, where: string, last: boolean): 'relu' | 'linear' | 'softmax' {
  const a = config.activation ?? 'linear';
  if (a === 'relu' || a === 'linear') return a;
  if (a === 'softmax' && last) return 'softmax';
  throw new Unsupported(`${where}: activation ${String(a)}`);
}

/** tfjs kernel [kh, kw, cin, cout] as ONNX [cout, cin, kh, kw]. */
export function convWeight(k: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let c = 0; c < cin; c++)
        for (let o = 0; o < cout; o++) {
          out[((o * cin + c) * kh + i) * kw + j] = k[((i * kw + j) * cin + c) * cout + o];
        }
  return out;
}

/** Dense kernel rows reordered from NHWC flattening to NCHW flattening (so no transpose is needed). */
export function permuteRows(k: Float32Array, [c, h, w]: [number, number, number], units: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let ch = 0; ch < c; ch++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const src = ((y * w + x) * c + ch) * units,
          dst = ((ch * h + y) * w + x) * units;
        out.set(k.subarray(src, src + units), dst);
      }
  return out;
}

/** The layers in order, checked to form a single chain from the model input to its output. */
function chain(model: tf.LayersModel): tf.layers.Layer[] {
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  if (model.inputs.length !== 1 || model.outputs.length !== 1) throw new Unsupported('models with several inputs or outputs');
  for (let i = 1; i < layers.length; i++) {
    const inbound = (layers[i] as unknown as { inboundNodes: { inboundLayers: tf.layers.Layer[] }[] }).inboundNodes;
    if (inbound.length !== 1 || inbound[0].inboundLayers.length !== 1 || inbound[0].inboundLayers[0] !== layers[i - 1]) {
      throw new Unsupported(`layer ${layers[i].name} is not fed by the layer before it (branching graphs)`);
    }
  }
  return layers;
}

interface State {
  shape: Shape;
  ops: PlanOp[];
  flattenedFrom?: [number, number, number];
}

function spatial(s: State, where: string): [number, number, number] {
  if (s.shape.length !== 3) throw new Unsupported(`${where} after flattening`);
  return s.shape;
}

function addConv(s: State, layer: tf.layers.Layer, config: Config, last: boolean): void {
  const [cin, h, w] = spatial(s, layer.name);
  const depthwise = layer.getClassName() === 'DepthwiseConv2D';
  const [kh, kw] = pair(config.kernelSize, 'kernel size');
  const strides = pair(config.strides ?? 1, 'strides');
  if (pair(config.dilationRate ?? 1, 'dilation').some((d) => d !== 1)) throw new Unsupported(`${layer.name}: dilation`);
  const weights = layer.getWeights();
  const kernel = values(weights[0]);
  const [pt, pb, oh] = padFor(config.padding, h, kh, strides[0]);
  const [pl, pr, ow] = padFor(config.padding, w, kw, strides[1]);
  let weight: Float32Array, cout: number;
  if (depthwise) {
    // tfjs [kh, kw, cin, mult] → ONNX [cin·mult, 1, kh, kw], output channel c·mult + m.
    const mult = weights[0].shape[3] as number;
    cout = cin * mult;
    weight = convWeight(kernel, kh, kw, 1, cout);
  } else {
    cout = weights[0].shape[3] as number;
    weight = convWeight(kernel, kh, kw, cin, cout);
  }
  const useBias = config.useBias !== false;
  s.ops.push({
    kind: 'conv',
    weight,
    wdims: [cout, depthwise ? 1 : cin, kh, kw],
    bias: useBias ? values(weights[1]) : null,
    strides,
    pads: [pt, pl, pb, pr],
    group: depthwise ? cin : 1,
    relu: activationOf(config, layer.name, false) === 'relu',
    layer: layer.name,
  });
  if (last) throw new Unsupported('a model ending in a convolution');
  s.shape = [cout, oh, ow];
}

/** Batch norm as y = x·a + b per channel; folded into a preceding linear convolution. */
function addBatchNorm(s: State, layer: tf.layers.Layer, config: Config): void {
  const c = s.shape[0];
  const w = layer.getWeights().map(values);
  let i = 0;
  const gamma = config.scale !== false ? w[i++] : new Float32Array(c).fill(1);
  const beta = config.center !== false ? w[i++] : new Float32Array(c);
  const mean = w[i++],
    variance = w[i++];
  const eps = typeof config.epsilon === 'number' ? config.epsilon : 1e-3;
  const a = new Float32Array(c),
    b = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    a[j] = gamma[j] / Math.sqrt(variance[j] + eps);
    b[j] = beta[j] - mean[j] * a[j];
  }
  const prev = s.ops[s.ops.length - 1];
  if (prev?.kind === 'conv' && !prev.relu) {
    const per = prev.weight.length / c;
    for (let o = 0; o < c; o++) for (let k = 0; k < per; k++) prev.weight[o * per + k] *= a[o];
    const bias = prev.bias ?? new Float32Array(c);
    for (let o = 0; o < c; o++) bias[o] = bias[o] * a[o] + b[o];
    prev.bias = bias;
    return;
  }
  s.ops.push({ kind: 'affine', scale: a, offset: b, spatial: s.shape.length === 3 });
}

function addPool(s: State, layer: tf.layers.Layer, config: Config): void {
  const [c, h, w] = spatial(s, layer.name);
  const kernel = pair(config.poolSize ?? 2, 'pool size');
  const strides = pair(config.strides ?? kernel, 'pool strides');
  const [pt, pb, oh] = padFor(config.padding ?? 'valid', h, kernel[0], strides[0]);
  const [pl, pr, ow] = padFor(config.padding ?? 'valid', w, kernel[1], strides[1]);
  if (layer.getClassName() === 'MaxPooling2D') {
    s.ops.push({ kind: 'maxpool', kernel, strides, pads: [pt, pl, pb, pr] });
  } else {
    // Average pooling's gradient is a ConvTranspose with a constant kernel, exact without padding.
    if (pt || pb || pl || pr || strides[0] !== kernel[0] || strides[1] !== kernel[1])
      throw new Unsupported(`${layer.name}: padded or overlapping average pooling`);
    s.ops.push({ kind: 'avgpool', kernel, channels: c });
  }
  s.shape = [c, oh, ow];
}

function addDense(s: State, layer: tf.layers.Layer, config: Config, last: boolean, softmaxOut: boolean): void {
  const weights = layer.getWeights();
  const units = weights[0].shape[1] as number;
  let kernel = values(weights[0]);
  const prev = s.ops[s.ops.length - 1];
  const inFeatures = weights[0].shape[0] as number;
  // A dropout between the flattening and the dense layer keeps the flattened order.
  const afterFlatten = prev?.kind === 'flatten' || (prev?.kind === 'dropout' && s.ops[s.ops.length - 2]?.kind === 'flatten');
  const flattenedFrom = afterFlatten ? s.flattenedFrom : undefined;
  if (flattenedFrom) kernel = permuteRows(kernel, flattenedFrom, units);
  if (s.shape.length !== 1 || s.shape[0] !== inFeatures) throw new Unsupported(`${layer.name}: dense on a [${s.shape.join(', ')}] input`);
  const act = activationOf(config, layer.name, last);
  s.ops.push({
    kind: 'dense',
    weight: kernel,
    inFeatures,
    units,
    bias: config.useBias !== false ? values(weights[1]) : null,
    relu: act === 'relu',
    layer: layer.name,
    flattenedFrom,
  });
  if (act === 'softmax') {
    if (!softmaxOut) throw new Unsupported(`${layer.name}: softmax output on a model read as logits`);
    s.ops.push({ kind: 'softmax' }, { kind: 'logclip' });
  } else if (softmaxOut) {
    throw new Unsupported('model said to output softmax does not end in a softmax dense layer');
  }
  s.shape = [units];
}

/**
 * The plan of a model whose input is [n, s, s, 3] in [0, 1] and whose output is logits (or,
 * `softmaxOut`, softmax probabilities, turned into log-probabilities as LayersClassifier does).
 */
export function planOf(model: tf.LayersModel, softmaxOut = false, training = false): Plan {
  const inShape = model.inputs[0].shape;
  const s: State = {
    shape: [inShape[3] as number, inShape[1] as number, inShape[2] as number],
    ops: [],
  };
  const layers = chain(model);
  layers.forEach((layer, i) => {
    const config = layer.getConfig() as Config;
    const last = i === layers.length - 1;
    switch (layer.getClassName()) {
      case 'Rescaling': {
        const c = s.shape[0];
        const scale = config.scale,
          offset = config.offset ?? 0;
        if (typeof scale !== 'number' || typeof offset !== 'number') throw new Unsupported(`${layer.name}: per-channel rescaling`);
        s.ops.push({ kind: 'affine', scale: new Float32Array(c).fill(scale), offset: new Float32Array(c).fill(offset), spatial: s.shape.length === 3 });
        return;
      }
      case 'Conv2D':
      case 'DepthwiseConv2D':
        return addConv(s, layer, config, last);
      case 'BatchNormalization':
        if (training) throw new Unsupported('batch normalisation in training (batch statistics)');
        return addBatchNorm(s, layer, config);
      case 'ReLU':
        if (config.maxValue != null || (config.negativeSlope ?? 0) !== 0 || (config.threshold ?? 0) !== 0)
          throw new Unsupported(`${layer.name}: a clipped or leaky ReLU`);
        s.ops.push({ kind: 'relu' });
        return;
      case 'Activation': {
        const act = activationOf(config, layer.name, false);
        if (act === 'relu') s.ops.push({ kind: 'relu' });
        return;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D':
        return addPool(s, layer, config);
      case 'Flatten': {
        const sh = spatial(s, layer.name);
        s.flattenedFrom = sh;
        s.ops.push({ kind: 'flatten' });
        s.shape = [sh[0] * sh[1] * sh[2]];
        return;
      }
      case 'Dropout':
        if (training) s.ops.push({ kind: 'dropout', rate: Number(config.rate ?? 0), features: s.shape.reduce((a, b) => a * b, 1) });
        return;
      case 'Dense':
        return addDense(s, layer, config, last, softmaxOut);
      default:
        throw new Unsupported(`layer ${layer.name} (${layer.getClassName()})`);
    }
  });
  if (s.shape.length !== 1) throw new Unsupported('the model does not end in [n, classes]');
  return { inputSize: inShape[1] as number, numClasses: s.shape[0], ops: s.ops };
}
