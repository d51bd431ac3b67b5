/**
 * From a tfjs layers model to a flat list of inference steps with inference-time folding done:
 * BatchNormalization folded into the preceding conv/dense, separate ReLU layers fused into it,
 * Dropout and other training-only layers dropped. The same plan is then written as TFLite
 * (float or int8) and run with tfjs ops for calibration, so both see exactly the same graph.
 *
 * The Rescaling layer (x·2 − 1) is kept as an elementwise step (MUL/ADD in TFLite) rather than
 * folded into the first conv: with 'same' padding, the conv pads the *normalised* image with 0,
 * which is x = 0.5 in [0, 1] terms, and a folded bias would be wrong on every border pixel.
 */
import { tf, Tensor4D, Tensor2D, Tensor } from '../inference/tf';
import { UserError } from '../data/types';

export type Act = 'none' | 'relu' | 'relu6';

export interface AffineStep {
  kind: 'affine';
  scale: number;
  offset: number;
}
export interface ConvStep {
  kind: 'conv';
  name: string;
  /** tfjs layout [kh, kw, in, out]. */
  kernel: Float32Array;
  bias: Float32Array;
  kh: number;
  kw: number;
  inC: number;
  outC: number;
  stride: [number, number];
  dilation: [number, number];
  padding: 'same' | 'valid';
  act: Act;
}
export interface PoolStep {
  kind: 'pool';
  name: string;
  type: 'max' | 'avg';
  size: [number, number];
  stride: [number, number];
  padding: 'same' | 'valid';
}
export interface FlattenStep {
  kind: 'flatten';
}
export interface DenseStep {
  kind: 'dense';
  name: string;
  /** tfjs layout [in, out]. */
  kernel: Float32Array;
  bias: Float32Array;
  inC: number;
  outC: number;
  act: Act;
}
export interface SoftmaxStep {
  kind: 'softmax';
}
export type Step = AffineStep | ConvStep | PoolStep | FlattenStep | DenseStep | SoftmaxStep;

export interface Plan {
  name: string;
  inputSize: number;
  channels: number;
  numClasses: number;
  steps: Step[];
  /** NHWC shape after each step (batch 1). */
  shapes: number[][];
  /** What was folded, fused or dropped (for the export report). */
  notes: string[];
}

const DROPPED = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'InputLayer']);

type Cfg = Record<string, unknown>;
const pair = (v: unknown, def: number): [number, number] => {
  if (Array.isArray(v)) return [Number(v[0]), Number(v[1] ?? v[0])];
  if (typeof v === 'number') return [v, v];
  return [def, def];
};

function activationOf(cfg: Cfg, layer: string): Act | 'softmax' {
  const a = String(cfg.activation ?? 'linear');
  if (a === 'linear') return 'none';
  if (a === 'relu' || a === 'relu6' || a === 'softmax') return a;
  throw new UserError(`layer ${layer}: activation '${a}' has no TFLite export here (relu, relu6, linear, softmax)`);
}

function outSize(n: number, k: number, stride: number, dilation: number, padding: 'same' | 'valid'): number {
  return padding === 'same' ? Math.ceil(n / stride) : Math.ceil((n - (k - 1) * dilation) / stride);
}

/** Builds the folded inference plan of a sequential tfjs CNN. */
export function planFromModel(model: tf.LayersModel): Plan {
  const inShape = model.inputs[0].shape;
  if (model.inputs.length !== 1 || model.outputs.length !== 1) throw new UserError('TFLite export needs a model with one input and one output');
  if (inShape.length !== 4 || inShape[1] == null || inShape[1] !== inShape[2]) {
    throw new UserError(`TFLite export needs input [n, s, s, c], got [${inShape.join(', ')}]`);
  }
  const s = inShape[1];
  const steps: Step[] = [];
  const notes: string[] = [];
  let shape = [1, s, s, inShape[3] as number];
  const shapes: number[][] = [];
  let prev: tf.layers.Layer | null = null;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const cfg = layer.getConfig() as Cfg;
    const name = layer.name;
    // Only a chain of layers can be written as this linear op list.
    const inbound = (layer as unknown as { inboundNodes: { inboundLayers: tf.layers.Layer[] }[] }).inboundNodes;
    const from = inbound[0]?.inboundLayers ?? [];
    if (inbound.length > 1 || from.length > 1 || (prev && from[0] !== prev)) {
      throw new UserError(`layer ${name}: only sequential models (a plain chain of layers) can be exported`);
    }
    if (cls !== 'InputLayer') prev = layer;
    const last = steps[steps.length - 1];
    const push = (st: Step, sh: number[]) => {
      steps.push(st);
      shapes.push(sh);
      shape = sh;
    };
    if (DROPPED.has(cls)) {
      if (cls !== 'InputLayer') notes.push(`${name}: ${cls} dropped (identity at inference)`);
      continue;
    }
    switch (cls) {
      case 'Rescaling': {
        const scale = Number(cfg.scale ?? 1),
          offset = Number(cfg.offset ?? 0);
        if (scale !== 1 || offset !== 0) push({ kind: 'affine', scale, offset }, shape);
        notes.push(`${name}: Rescaling x·${scale} + ${offset} kept as MUL/ADD (exact with 'same' padding)`);
        break;
      }
      case 'Conv2D': {
        if (cfg.dataFormat && cfg.dataFormat !== 'channelsLast') throw new UserError(`layer ${name}: only channelsLast convolutions can be exported`);
        const act = activationOf(cfg, name);
        if (act === 'softmax') throw new UserError(`layer ${name}: softmax on a conv output is not supported`);
        const w = layer.getWeights();
        const [kh, kw, inC, outC] = w[0].shape as number[];
        const kernel = w[0].dataSync() as Float32Array;
        const bias = w[1] ? Float32Array.from(w[1].dataSync()) : new Float32Array(outC);
        const stride = pair(cfg.strides, 1),
          dilation = pair(cfg.dilationRate, 1);
        const padding = cfg.padding === 'same' ? 'same' : 'valid';
        if (padding === 'same' && (stride[0] > 1 || stride[1] > 1) && (dilation[0] > 1 || dilation[1] > 1)) {
          throw new UserError(`layer ${name}: strided and dilated conv is not supported`);
        }
        push({ kind: 'conv', name, kernel: Float32Array.from(kernel), bias, kh, kw, inC, outC, stride, dilation, padding, act }, [
          1,
          outSize(shape[1], kh, stride[0], dilation[0], padding),
          outSize(shape[2], kw, stride[1], dilation[1], padding),
          outC,
        ]);
        break;
      }
      case 'BatchNormalization': {
        const axis = Number(Array.isArray(cfg.axis) ? cfg.axis[0] : (cfg.axis ?? -1));
        if (axis !== -1 && axis !== shape.length - 1) throw new UserError(`layer ${name}: only batch norm over the last axis can be folded`);
        if (!last || (last.kind !== 'conv' && last.kind !== 'dense') || last.act !== 'none') {
          throw new UserError(`layer ${name}: batch norm must directly follow a conv or dense layer without activation to be folded`);
        }
        const ws = layer.getWeights().map((t) => t.dataSync() as Float32Array);
        let k = 0;
        const gamma = cfg.scale !== false ? ws[k++] : null;
        const beta = cfg.center !== false ? ws[k++] : null;
        const mean = ws[k++],
          variance = ws[k++];
        const eps = Number(cfg.epsilon ?? 1e-3);
        const outC = last.outC;
        // y = γ (x − μ) / √(σ² + ε) + β  =  a·x + c, with a and c per output channel.
        for (let o = 0; o < outC; o++) {
          const a = (gamma ? gamma[o] : 1) / Math.sqrt(variance[o] + eps);
          for (let i = o; i < last.kernel.length; i += outC) last.kernel[i] *= a;
          last.bias[o] = (last.bias[o] - mean[o]) * a + (beta ? beta[o] : 0);
        }
        notes.push(`${name}: BatchNormalization folded into ${last.name}`);
        break;
      }
      case 'ReLU':
      case 'Activation': {
        const act: Act | 'softmax' =
          cls === 'ReLU'
            ? cfg.maxValue == null
              ? 'relu'
              : Number(cfg.maxValue) === 6
                ? 'relu6'
                : (() => {
                    throw new UserError(`layer ${name}: ReLU with maxValue ${String(cfg.maxValue)} is not supported`);
                  })()
            : activationOf(cfg, name);
        if (act === 'none') break;
        if (act === 'softmax') {
          push({ kind: 'softmax' }, shape);
          break;
        }
        if (!last || (last.kind !== 'conv' && last.kind !== 'dense') || last.act !== 'none') {
          throw new UserError(`layer ${name}: a separate ${act} must follow a conv or dense layer to be fused`);
        }
        last.act = act;
        notes.push(`${name}: ${act} fused into ${last.name}`);
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const size = pair(cfg.poolSize, 2);
        const stride = pair(cfg.strides ?? cfg.poolSize, size[0]);
        const padding = cfg.padding === 'same' ? 'same' : 'valid';
        push({ kind: 'pool', name, type: cls === 'MaxPooling2D' ? 'max' : 'avg', size, stride, padding }, [
          1,
          outSize(shape[1], size[0], stride[0], 1, padding),
          outSize(shape[2], size[1], stride[1], 1, padding),
          shape[3],
        ]);
        break;
      }
      case 'Flatten':
        // tfjs flattens NHWC in row-major order, exactly what TFLite RESHAPE of an NHWC tensor does.
        push({ kind: 'flatten' }, [1, shape.slice(1).reduce((a, b) => a * b, 1)]);
        break;
      case 'Dense': {
        if (shape.length !== 2) throw new UserError(`layer ${name}: Dense on a rank-${shape.length} input needs a Flatten before it`);
        const act = activationOf(cfg, name);
        const w = layer.getWeights();
        const [inC, outC] = w[0].shape as number[];
        const bias = w[1] ? Float32Array.from(w[1].dataSync()) : new Float32Array(outC);
        push({ kind: 'dense', name, kernel: Float32Array.from(w[0].dataSync()), bias, inC, outC, act: act === 'softmax' ? 'none' : act }, [1, outC]);
        if (act === 'softmax') push({ kind: 'softmax' }, [1, outC]);
        break;
      }
      default:
        throw new UserError(
          `layer ${name} (${cls}) has no TFLite export (supported: Rescaling, Conv2D, BatchNormalization, ReLU, MaxPooling2D, AveragePooling2D, Flatten, Dropout, Dense)`,
        );
    }
  }
  const softmaxAt = steps.findIndex((st) => st.kind === 'softmax');
  if (softmaxAt >= 0 && softmaxAt !== steps.length - 1) throw new UserError('softmax is only supported as the last layer');
  if (shape.length !== 2) throw new UserError(`model output must be [n, classes], got rank ${shape.length}`);
  return { name: model.name, inputSize: s, channels: inShape[3] as number, numClasses: shape[1], steps, shapes, notes };
}

/** Weights in tfjs layout as 4-D / 2-D tensors, created once per plan run. */
function convFilter(st: ConvStep): tf.Tensor4D {
  return tf.tensor4d(st.kernel, [st.kh, st.kw, st.inC, st.outC]);
}

function applyAct(x: Tensor, act: Act): Tensor {
  return act === 'relu' ? tf.relu(x) : act === 'relu6' ? tf.relu6(x) : x;
}

/**
 * Runs the plan with tfjs ops on a batch. `observe(i, t)` sees the output of step i (for
 * calibration ranges); the input of the first quantised op is step i's output. Returns the
 * model output (logits, or probabilities when the plan ends in softmax). Caller disposes.
 */
export function runPlan(plan: Plan, x: Tensor4D, observe?: (step: number, t: Tensor) => void): Tensor2D {
  return tf.tidy(() => {
    let h: Tensor = x;
    plan.steps.forEach((st, i) => {
      switch (st.kind) {
        case 'affine':
          h = tf.add(tf.mul(h, st.scale), st.offset);
          break;
        case 'conv': {
          const y = tf.conv2d(h as Tensor4D, convFilter(st), st.stride, st.padding, 'NHWC', st.dilation);
          h = applyAct(tf.add(y, tf.tensor1d(st.bias)), st.act);
          break;
        }
        case 'pool':
          h = st.type === 'max' ? tf.maxPool(h as Tensor4D, st.size, st.stride, st.padding) : tf.avgPool(h as Tensor4D, st.size, st.stride, st.padding);
          break;
        case 'flatten':
          h = tf.reshape(h, [h.shape[0], -1]);
          break;
        case 'dense': {
          const y = tf.matMul(h as Tensor2D, tf.tensor2d(st.kernel, [st.inC, st.outC]));
          h = applyAct(tf.add(y, tf.tensor1d(st.bias)), st.act);
          break;
        }
        case 'softmax':
          h = tf.softmax(h);
          break;
      }
      observe?.(i, h);
    });
    return h as Tensor2D;
  });
}
