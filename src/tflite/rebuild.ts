/**
 * A .tflite graph rebuilt as differentiable tfjs ops, so gradient attacks (FGSM, PGD, C&W,
 * stickers…) can aim at the deployed file itself rather than at the model it came from.
 *
 * Weights come from the file's own buffers, dequantised when quantised (f = scale·(q − zero
 * point), per channel). For integer models every activation the file stores as int8/uint8 is
 * passed through fake quantisation with that tensor's scale and zero point, so the forward pass
 * sees the same 256 levels the interpreter does; its gradient is the straight-through estimate
 * (1 inside the representable range, 0 where the value saturates). The TFLite interpreter stays
 * the reference for what the model predicts; this graph is what gradients are taken through
 * (float files agree with the interpreter to ~1e-6; integer files within the rounding of the
 * int32 accumulators, see test/tflite-rebuild.test.ts).
 *
 * Tensors are batch-major as in TFLite; the batch dimension (1 in the file) becomes free here.
 */
import { tf, Tensor, Tensor2D, Tensor4D } from '../inference/tf';
import { UserError } from '../data/types';
import { constantInts, constantValues, FusedActivation, GraphOperator, isQuantised, softmaxHead, TfliteGraph } from './graph';
import type { ParsedTensor } from './schema';

/** Ops this module can rebuild. */
export const REBUILT_OPS: ReadonlySet<string> = new Set([
  'ADD',
  'AVERAGE_POOL_2D',
  'CONCATENATION',
  'CONV_2D',
  'DEPTHWISE_CONV_2D',
  'DEQUANTIZE',
  'DIV',
  'FULLY_CONNECTED',
  'HARD_SWISH',
  'LEAKY_RELU',
  'LOGISTIC',
  'LOG_SOFTMAX',
  'MAX_POOL_2D',
  'MAXIMUM',
  'MEAN',
  'MINIMUM',
  'MUL',
  'PAD',
  'PADV2',
  'PRELU',
  'QUANTIZE',
  'RELU',
  'RELU6',
  'RELU_N1_TO_1',
  'RESHAPE',
  'SOFTMAX',
  'SQUEEZE',
  'SUB',
  'TANH',
]);

const Q_RANGE: Record<string, [number, number]> = { int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767] };

export interface FakeQuant {
  scale: number;
  zeroPoint: number;
  lo: number;
  hi: number;
}

/** Rounds to the tensor's integer grid in the forward pass; straight-through gradient inside its range. */
function fakeQuantize(x: Tensor, q: FakeQuant): Tensor {
  const f = tf.customGrad((...args: (Tensor | tf.GradSaveFunc)[]) => {
    const xin = args[0] as Tensor;
    (args[1] as tf.GradSaveFunc)([xin]);
    const value = tf.tidy(() => tf.mul(tf.sub(tf.clipByValue(tf.add(tf.round(tf.div(xin, q.scale)), q.zeroPoint), q.lo, q.hi), q.zeroPoint), q.scale));
    return {
      value,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const inside = tf.logicalAnd(tf.greaterEqual(saved[0], (q.lo - q.zeroPoint) * q.scale), tf.lessEqual(saved[0], (q.hi - q.zeroPoint) * q.scale));
        return [tf.mul(dy, tf.cast(inside, 'float32'))];
      },
    };
  });
  return f(x);
}

type Apply = (inputs: Tensor[]) => Tensor;

interface Step {
  op: GraphOperator;
  /** Which inputs are computed (constants are bound in `apply`). */
  inputs: number[];
  apply: Apply;
  quant: FakeQuant | null;
}

function activation(x: Tensor, act: FusedActivation): Tensor {
  switch (act) {
    case 'none':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'relu_n1_to_1':
      return tf.clipByValue(x, -1, 1);
    case 'tanh':
      return tf.tanh(x);
    case 'sign_bit':
      throw new Error('fused SIGN_BIT activation');
  }
}

/** Activations the fused tfjs kernels apply themselves (with gradients, unfused under a tape). */
function fusedName(act: FusedActivation): 'linear' | 'relu' | 'relu6' | null {
  return act === 'none' ? 'linear' : act === 'relu' || act === 'relu6' ? act : null;
}

class Unsupported extends Error {}

/** The fake quantisation of an integer tensor (null for a float one). */
export function fakeQuantOf(t: ParsedTensor, what: string): FakeQuant | null {
  const range = Q_RANGE[t.typeName];
  if (!range) return null;
  if (!isQuantised(t)) throw new Unsupported(`${what} ${t.name}: ${t.typeName} without quantisation parameters`);
  return { scale: t.scale[0], zeroPoint: t.zeroPoint[0] ?? 0, lo: range[0], hi: range[1] };
}

/**
 * A rebuilt graph. `run` takes the model's own input values ([n, H, W, C] float, i.e. after the
 * input range mapping; quantised inputs are rounded inside) and returns its output, or with
 * `logits` the log-softmax of the softmax head's input (differentiable without saturation).
 */
export class RebuiltGraph {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  /** The output is a softmax (probabilities). */
  readonly outputsSoftmax: boolean;
  /** Integer activations are simulated (an int8/uint8 file). */
  readonly simulatesIntegers: boolean;
  private readonly head: number;
  private readonly headBeta: number;
  private disposed = false;

  constructor(
    private readonly steps: Step[],
    private readonly consts: Map<number, Tensor>,
    private readonly owned: Tensor[],
    private readonly inputIndex: number,
    private readonly inputQuant: FakeQuant | null,
    private readonly outputIndex: number,
    graph: TfliteGraph,
  ) {
    const p = graph.parsed;
    [, this.height, this.width, this.channels] = p.tensors[inputIndex].shape;
    const out = p.tensors[outputIndex].shape;
    this.numClasses = out[out.length - 1];
    this.head = softmaxHead(p);
    this.outputsSoftmax = this.head >= 0;
    this.headBeta = this.head >= 0 ? graph.operators[this.head].options.beta : 1;
    this.simulatesIntegers = inputQuant != null || steps.some((s) => s.quant != null);
  }

  run(x: Tensor4D, mode: 'output' | 'logits' = 'output'): Tensor2D {
    if (this.disposed) throw new Error('rebuilt TFLite graph used after dispose()');
    return tf.tidy(() => {
      const env = new Map<number, Tensor>(this.consts);
      env.set(this.inputIndex, this.inputQuant ? fakeQuantize(x, this.inputQuant) : x);
      let afterHead = false;
      for (const st of this.steps) {
        const args = st.inputs.map((i) => env.get(i) as Tensor);
        let y: Tensor;
        if (mode === 'logits' && st.op.index === this.head) {
          y = tf.logSoftmax(tf.mul(args[0], this.headBeta));
          afterHead = true;
        } else {
          y = st.apply(args);
          if (st.quant && !afterHead) y = fakeQuantize(y, st.quant);
        }
        env.set(st.op.outputs[0], y);
      }
      return tf.reshape(env.get(this.outputIndex) as Tensor, [-1, this.numClasses]) as Tensor2D;
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose(this.owned);
    this.consts.clear();
  }
}

/** Input positions an op reads at build time (weights, shapes, axes, paddings), not per run. */
export const BOUND_INPUTS: Record<string, number[]> = {
  CONV_2D: [1, 2],
  DEPTHWISE_CONV_2D: [1, 2],
  FULLY_CONNECTED: [1, 2],
  RESHAPE: [1],
  MEAN: [1],
  PAD: [1],
  PADV2: [1, 2],
};

/** What an op builder reads: the operator, its tensors' shapes and constants, and a keeper for weights it makes. */
interface BuildContext {
  op: GraphOperator;
  o: GraphOperator['options'];
  shapeOf(i: number): number[];
  /** A constant input's float values (dequantised); throws Unsupported when it is computed. */
  need(i: number, what: string): Float32Array;
  /** An integer constant input (shape, axes, paddings). */
  ints(i: number, what: string): number[];
  keep<T extends Tensor>(t: T): T;
}

const axisOf = (a: number, rank: number) => (a < 0 ? a + rank : a);

function noStridedDilation(c: BuildContext): void {
  const o = c.o;
  if ((o.strideH > 1 || o.strideW > 1) && (o.dilationH > 1 || o.dilationW > 1)) throw new Unsupported(`${c.op.op} with both strides and dilations`);
}

/** CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: weights relaid out for tfjs once, fused bias and activation. */
function weighted(c: BuildContext): Apply {
  const { op, o } = c;
  const fused = fusedName(o.act);
  const finish = (y: Tensor) => (fused ? y : activation(y, o.act));
  const bias = (n: number) => c.keep(tf.tensor1d(op.inputs[2] != null && op.inputs[2] >= 0 ? c.need(op.inputs[2], 'bias') : new Float32Array(n)));
  const conv = {
    strides: [o.strideH, o.strideW] as [number, number],
    pad: o.padding,
    dataFormat: 'NHWC' as const,
    dilations: [o.dilationH, o.dilationW] as [number, number],
  };
  if (op.op === 'CONV_2D') {
    const [outC, kh, kw, inC] = c.shapeOf(op.inputs[1]);
    if (c.shapeOf(op.inputs[0])[3] !== inC) throw new Unsupported('grouped CONV_2D');
    noStridedDilation(c);
    const w = c.need(op.inputs[1], 'filter');
    // TFLite [out, kh, kw, in] → tfjs [kh, kw, in, out].
    const k = new Float32Array(w.length);
    for (let ch = 0; ch < outC; ch++) for (let j = 0; j < kh * kw * inC; j++) k[j * outC + ch] = w[ch * kh * kw * inC + j];
    const filter = c.keep(tf.tensor4d(k, [kh, kw, inC, outC]));
    const b = bias(outC);
    return (x) => finish(tf.fused.conv2d({ x: x[0] as Tensor4D, filter, ...conv, bias: b, activation: fused ?? 'linear' }));
  }
  if (op.op === 'DEPTHWISE_CONV_2D') {
    const [, kh, kw, outC] = c.shapeOf(op.inputs[1]);
    const inC = c.shapeOf(op.inputs[0])[3];
    if (outC % inC !== 0) throw new Unsupported(`DEPTHWISE_CONV_2D with ${outC} outputs for ${inC} input channels`);
    noStridedDilation(c);
    // [1, kh, kw, in·m] is already [kh, kw, in, m] in row-major order.
    const filter = c.keep(tf.tensor4d(c.need(op.inputs[1], 'filter'), [kh, kw, inC, outC / inC]));
    const b = bias(outC);
    return (x) => finish(tf.fused.depthwiseConv2d({ x: x[0] as Tensor4D, filter, ...conv, bias: b, activation: fused ?? 'linear' }));
  }
  if (o.weightsFormat !== 0) throw new Unsupported('FULLY_CONNECTED with shuffled weights');
  const [outC, inC] = c.shapeOf(op.inputs[1]);
  const w = c.need(op.inputs[1], 'weight matrix');
  // [out, in] → [in, out]: a plain matMul (transposed operands are slow on wasm).
  const k = new Float32Array(w.length);
  for (let ch = 0; ch < outC; ch++) for (let i = 0; i < inC; i++) k[i * outC + ch] = w[ch * inC + i];
  const weights = c.keep(tf.tensor2d(k, [inC, outC]));
  const b = bias(outC);
  return (x) => {
    const y = finish(tf.fused.matMul({ a: tf.reshape(x[0], [-1, inC]) as Tensor2D, b: weights, bias: b, activation: fused ?? 'linear' }));
    return o.keepNumDims ? tf.reshape(y, [...x[0].shape.slice(0, -1), outC]) : y;
  };
}

/** RESHAPE and SQUEEZE: the file's batch-1 shapes with the batch dimension left free. */
function reshaping(c: BuildContext): Apply {
  const { op, o } = c;
  const inShape = c.shapeOf(op.inputs[0]);
  if (op.op === 'SQUEEZE') {
    const dims = o.squeezeDims.length ? o.squeezeDims.map((d) => axisOf(d, inShape.length)) : inShape.flatMap((d, i) => (d === 1 && i > 0 ? [i] : []));
    if (dims.includes(0)) throw new Unsupported('SQUEEZE of the batch dimension');
    return (x) => tf.squeeze(x[0], dims);
  }
  let target = c.shapeOf(op.outputs[0]);
  if (target.length === 0) target = (op.inputs[1] != null && op.inputs[1] >= 0 ? c.ints(op.inputs[1], 'shape') : null) ?? o.newShape ?? [];
  if (inShape[0] !== 1 || (target[0] !== 1 && target[0] !== -1))
    throw new Unsupported(`RESHAPE [${inShape.join(', ')}] → [${target.join(', ')}] across the batch dimension`);
  const per = inShape.slice(1).reduce((a, b) => a * b, 1);
  const rest = target.slice(1);
  const known = rest.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
  const shape = rest.map((d) => (d < 0 ? per / known : d));
  return (x) => tf.reshape(x[0], [-1, ...shape]);
}

/** MEAN, PAD/PADV2, CONCATENATION: constant axes or paddings, never across the batch. */
function structural(c: BuildContext): Apply {
  const { op, o } = c;
  if (op.op === 'MEAN') {
    const rank = c.shapeOf(op.inputs[0]).length;
    const axes = c.ints(op.inputs[1], 'axis').map((a) => axisOf(a, rank));
    if (axes.includes(0)) throw new Unsupported('MEAN over the batch dimension');
    return (x) => tf.mean(x[0], axes, o.keepDims);
  }
  if (op.op === 'CONCATENATION') {
    const axis = axisOf(o.axis, c.shapeOf(op.outputs[0]).length);
    if (axis === 0) throw new Unsupported('CONCATENATION along the batch dimension');
    return (x) => activation(tf.concat(x, axis), o.act);
  }
  const p = c.ints(op.inputs[1], 'paddings');
  const pairs = Array.from({ length: p.length / 2 }, (_, i) => [p[2 * i], p[2 * i + 1]] as [number, number]);
  if (pairs[0][0] !== 0 || pairs[0][1] !== 0) throw new Unsupported('PAD of the batch dimension');
  const value = op.op === 'PADV2' && op.inputs[2] >= 0 ? c.need(op.inputs[2], 'pad value')[0] : 0;
  return (x) => tf.pad(x[0], pairs, value);
}

/** Elementwise ops and activations (fused activations where the op has one). */
function elementwise(c: BuildContext): Apply {
  const { op, o } = c;
  const binary =
    (f: (a: Tensor, b: Tensor) => Tensor): Apply =>
    (x) =>
      activation(f(x[0], x[1]), o.act);
  const unary: Record<string, (x: Tensor) => Tensor> = {
    SOFTMAX: (x) => tf.softmax(tf.mul(x, o.beta)),
    LOG_SOFTMAX: (x) => tf.logSoftmax(x),
    RELU: tf.relu,
    RELU6: tf.relu6,
    RELU_N1_TO_1: (x) => tf.clipByValue(x, -1, 1),
    LOGISTIC: tf.sigmoid,
    TANH: tf.tanh,
    HARD_SWISH: (x) => tf.div(tf.mul(x, tf.relu6(tf.add(x, 3))), 6),
    LEAKY_RELU: (x) => tf.leakyRelu(x, o.alpha),
    QUANTIZE: (x) => x,
    DEQUANTIZE: (x) => x,
  };
  switch (op.op) {
    case 'ADD':
      return binary(tf.add);
    case 'SUB':
      return binary(tf.sub);
    case 'MUL':
      return binary(tf.mul);
    case 'DIV':
      return binary(tf.div);
    case 'MAXIMUM':
      return (x) => tf.maximum(x[0], x[1]);
    case 'MINIMUM':
      return (x) => tf.minimum(x[0], x[1]);
    case 'PRELU':
      return (x) => tf.prelu(x[0], x[1]);
    case 'MAX_POOL_2D':
    case 'AVERAGE_POOL_2D': {
      const pool = op.op === 'MAX_POOL_2D' ? tf.maxPool : tf.avgPool;
      return (x) => activation(pool(x[0] as Tensor4D, [o.filterH, o.filterW], [o.strideH, o.strideW], o.padding), o.act);
    }
  }
  const f = unary[op.op];
  if (!f) throw new Unsupported(op.op);
  return (x) => f(x[0]);
}

const BUILDERS: Record<string, (c: BuildContext) => Apply> = {
  CONV_2D: weighted,
  DEPTHWISE_CONV_2D: weighted,
  FULLY_CONNECTED: weighted,
  RESHAPE: reshaping,
  SQUEEZE: reshaping,
  MEAN: structural,
  PAD: structural,
  PADV2: structural,
  CONCATENATION: structural,
};

/** Builds the step for one operator; throws Unsupported with a reason. */
function compile(g: TfliteGraph, op: GraphOperator, keep: <T extends Tensor>(t: T) => T, valuesOf: (i: number) => Float32Array | null): Apply {
  if (op.options.act === 'sign_bit') throw new Unsupported(`${op.op} with fused SIGN_BIT activation`);
  const constant = <T>(v: T | null, what: string): T => {
    if (v === null) throw new Unsupported(`${op.op} with a non-constant ${what}`);
    return v;
  };
  const c: BuildContext = {
    op,
    o: op.options,
    keep,
    shapeOf: (i) => g.parsed.tensors[i].shape,
    need: (i, what) => constant(valuesOf(i), what),
    ints: (i, what) => constant(constantInts(g, i), what),
  };
  return (BUILDERS[op.op] ?? elementwise)(c);
}

/**
 * Rebuilds a TFLite graph as tfjs ops. An operator it cannot rebuild is named in a one-line
 * UserError (the interpreter can still run the file: black-box attacks stay available).
 */
export function rebuildGraph(g: TfliteGraph, label = 'the model'): RebuiltGraph {
  const p = g.parsed;
  /** Constant graph tensors that ops read per run (e.g. the operand of an ADD), by tensor index. */
  const consts = new Map<number, Tensor>();
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => {
    owned.push(tf.keep(t));
    return t;
  };
  /** Values of constants folded here (a DEQUANTIZE of weights), by the tensor it produced. */
  const folded = new Map<number, Float32Array>();
  const valuesOf = (i: number) => folded.get(i) ?? constantValues(g, i);
  const constant = (i: number) => {
    const v = valuesOf(i) as Float32Array;
    const shape = p.tensors[i].shape;
    consts.set(i, keep(tf.tensor(v, shape.length ? shape : [v.length])));
  };
  const steps: Step[] = [];
  const quantOf = (i: number, what: string) => fakeQuantOf(p.tensors[i], what);
  let at = 0;
  try {
    for (const op of g.operators) {
      at = op.index;
      if (!REBUILT_OPS.has(op.op)) throw new Unsupported(op.op);
      const bound = BOUND_INPUTS[op.op] ?? [];
      const ins = op.inputs.filter((i, k) => i >= 0 && !bound.includes(k));
      // A DEQUANTIZE of a constant (float16 or int8 weights) is folded into a float constant.
      const v = op.op === 'DEQUANTIZE' ? valuesOf(ins[0]) : null;
      if (v) {
        folded.set(op.outputs[0], v);
        continue;
      }
      const apply = compile(g, op, keep, valuesOf);
      for (const i of ins) if (!consts.has(i) && valuesOf(i) !== null) constant(i);
      steps.push({ op, inputs: ins, apply, quant: quantOf(op.outputs[0], 'the output of') });
    }
    const inputQuant = quantOf(p.inputs[0], 'the input');
    return new RebuiltGraph(steps, consts, owned, p.inputs[0], inputQuant, p.outputs[0], g);
  } catch (e) {
    tf.dispose(owned);
    if (!(e instanceof Unsupported)) throw e;
    throw new UserError(
      `${label}: gradients need the TFLite graph rebuilt in TensorFlow.js, and op ${e.message} (operator ${at}) cannot be` +
        ` rebuilt; black-box attacks (square, transfer) still run on the TFLite interpreter`,
    );
  }
}
