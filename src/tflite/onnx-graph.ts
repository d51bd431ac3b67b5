/**
 * A .tflite graph as an ONNX forward pass with its own reverse pass (an OnnxModel for
 * src/inference/onnx/export.ts), so the ort engine takes a foreign file's input gradients
 * natively, with the heads our own models have (ce/margin/dlr objectives, vjp, the fused L∞ step).
 *
 * The semantics are rebuild.ts's, op for op: weights dequantised from the file, every integer
 * activation fake-quantised (Div by the scale, Round half to even, Add the zero point, Clip,
 * back to real values, in float32 as tfjs does) with the straight-through gradient (1 inside the
 * representable range, 0 where it saturates), and logits = the log-softmax of the softmax head's
 * input. Rank-4 activations are NCHW (what onnxruntime's Conv and MaxPool take), other tensors
 * keep TFLite's layout, with a Transpose where one becomes the other. Convolutions, poolings,
 * dense layers and softmax are the plan emitters of export.ts; the graph may branch (residual
 * ADDs): gradients of a tensor read twice are summed. What it cannot write raises NoOnnx, and the
 * model keeps its tfjs rebuild.
 */
import { GraphBuilder } from '../inference/onnx/graph';
import { Backward, emitOp, Forward, OnnxModel, reluMask } from '../inference/onnx/export';
import { permuteRows, PlanOp } from '../inference/onnx/layers';
import { DataType } from '../inference/onnx/proto';
import { bilinearMatrix, InputRange, InputShape, isIdentityRange, squareSide } from '../inference/model-input';
import { constantInts, constantValues, FusedActivation, GraphOperator, softmaxHead, TfliteGraph } from './graph';
import { BOUND_INPUTS, FakeQuant, fakeQuantOf } from './rebuild';

/** Why a graph has no ONNX export (the message names the op). */
export class NoOnnx extends Error {}

/** An activation in the ONNX graph; `shape` is TFLite's (batch 1, NHWC for rank 4). */
interface Val {
  v: string;
  nchw: boolean;
  shape: number[];
}

/** Gradients of an op's operands (in input order; null for constants and what needs none) from its output's. */
type Vjp = (d: string) => (string | null)[];

interface Emitted {
  v: string;
  nchw: boolean;
  back: Vjp;
}

const NHWC_TO_NCHW_AXIS = [0, 2, 3, 1];
const LUMA = Float32Array.of(0.299, 0.587, 0.114);

function transposed(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c];
  return t;
}

function fakeQuantize(g: GraphBuilder, x: string, q: FakeQuant): { v: string; back: Backward } {
  const s = g.scalar(q.scale),
    z = g.scalar(q.zeroPoint);
  const levels = g.op('Clip', [g.op('Add', [g.op('Round', [g.op('Div', [x, s])]), z]), g.scalar(q.lo), g.scalar(q.hi)]);
  const v = g.op('Mul', [g.op('Sub', [levels, z]), s]);
  return { v, back: (d) => g.op('Mul', [d, inRange(g, x, (q.lo - q.zeroPoint) * q.scale, (q.hi - q.zeroPoint) * q.scale)]) };
}

/** 1 where lo ≤ x ≤ hi (as float). */
function inRange(g: GraphBuilder, x: string, lo: number, hi: number): string {
  return g.op('Cast', [g.op('And', [g.op('GreaterOrEqual', [x, g.scalar(lo)]), g.op('LessOrEqual', [x, g.scalar(hi)])])], { to: DataType.FLOAT });
}

/** A fused or standalone activation, with tfjs's gradient (relu6: 0 < x ≤ 6; clip: inclusive). */
function activate(g: GraphBuilder, x: string, act: FusedActivation): { v: string; back: Backward } {
  switch (act) {
    case 'none':
      return { v: x, back: (d) => d };
    case 'relu': {
      const y = g.op('Relu', [x]);
      return { v: y, back: reluMask(g, y) };
    }
    case 'relu6': {
      const mask = g.op('Cast', [g.op('And', [g.op('Greater', [x, g.scalar(0)]), g.op('LessOrEqual', [x, g.scalar(6)])])], { to: DataType.FLOAT });
      return { v: g.op('Clip', [x, g.scalar(0), g.scalar(6)]), back: (d) => g.op('Mul', [d, mask]) };
    }
    case 'relu_n1_to_1':
      return { v: g.op('Clip', [x, g.scalar(-1), g.scalar(1)]), back: (d) => g.op('Mul', [d, inRange(g, x, -1, 1)]) };
    case 'tanh': {
      const y = g.op('Tanh', [x]);
      return { v: y, back: (d) => g.op('Mul', [d, g.op('Sub', [g.scalar(1), g.op('Mul', [y, y])])]) };
    }
    case 'sign_bit':
      throw new NoOnnx('a fused SIGN_BIT activation');
  }
}

/** TensorFlow's 'same' padding [begin, end] of one axis (extra at the end), or none for 'valid'. */
function tfPads(padding: 'same' | 'valid', size: number, k: number, stride: number, out: number): [number, number] {
  if (padding === 'valid') return [0, 0];
  const total = Math.max((out - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/**
 * The OnnxModel of a TFLite graph whose tfjs rebuild succeeded (the rebuild has checked its
 * quantisation parameters), behind the input mapping of load-model's adapter (x·(hi − lo) + lo).
 * Throws NoOnnx when an op, a layout or the input geometry has no export here.
 */
export class TfliteOnnx implements OnnxModel {
  readonly inputSize: number;
  readonly numClasses: number;
  private readonly head: number;
  private readonly headBeta: number;
  /** Values of DEQUANTIZEd constants, by the tensor they produce (as rebuild.ts folds them). */
  private readonly folded = new Map<number, Float32Array>();
  /** Weights and constants in ONNX layout, made once: both forwards of a graph share them. */
  private readonly cache = new Map<string, { values: Float32Array; dims: number[] } | PlanOp>();

  constructor(
    private readonly graph: TfliteGraph,
    private readonly shape: InputShape,
    private readonly range: InputRange,
  ) {
    const p = graph.parsed;
    this.inputSize = squareSide(shape);
    const out = p.tensors[p.outputs[0]].shape;
    this.numClasses = out[out.length - 1];
    this.head = softmaxHead(p);
    this.headBeta = this.head >= 0 ? graph.operators[this.head].options.beta : 1;
    for (const op of graph.operators) {
      if (op.op !== 'DEQUANTIZE') continue;
      const v = this.valuesOf(op.inputs[0]);
      if (v) this.folded.set(op.outputs[0], v);
    }
    // Every op is checked now (into a graph that is thrown away), not at the first session.
    this.forward(new GraphBuilder(), 'x', false);
  }

  private valuesOf(i: number): Float32Array | null {
    return this.folded.get(i) ?? constantValues(this.graph, i);
  }

  private need(i: number, what: string, op: GraphOperator): Float32Array {
    const v = i >= 0 ? this.valuesOf(i) : null;
    if (!v) throw new NoOnnx(`${op.op} with a non-constant ${what}`);
    return v;
  }

  private cached<T extends { values: Float32Array; dims: number[] } | PlanOp>(key: string, make: () => T): T {
    let v = this.cache.get(key);
    if (!v) {
      v = make();
      this.cache.set(key, v);
    }
    return v as T;
  }

  /** A constant operand of an elementwise op, in the layout of the computed operand it meets. */
  private constant(g: GraphBuilder, i: number, nchw: boolean): string {
    const c = this.cached(`c${i}${nchw ? 'n' : ''}`, () => {
      const values = this.valuesOf(i) as Float32Array;
      const shape = this.graph.parsed.tensors[i].shape;
      if (!nchw || shape.length === 0) return { values, dims: shape.length ? shape : [values.length] };
      const [n, h, w, ch] = [...Array(4 - shape.length).fill(1), ...shape] as number[];
      const out = new Float32Array(values.length);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < ch; k++) out[(k * h + y) * w + x] = values[(y * w + x) * ch + k];
      return { values: out, dims: [n, ch, h, w] };
    });
    return g.floats('k', c.values, c.dims);
  }

  forward(g: GraphBuilder, x: string, inference: boolean): Forward {
    const p = this.graph.parsed;
    const env = new Map<number, Val>();
    const tape: { out: number; ins: number[]; back: Vjp }[] = [];
    const inputBack: Backward[] = [];
    let v = g.op('Transpose', [x], { perm: [0, 3, 1, 2] });
    v = this.modelInput(g, v, inputBack);
    if (!isIdentityRange(this.range)) {
      const scale = g.scalar(this.range.hi - this.range.lo);
      v = g.op('Add', [g.op('Mul', [v, scale]), g.scalar(this.range.lo)]);
      inputBack.push((d) => g.op('Mul', [d, scale]));
    }
    const inputQuant = fakeQuantOf(p.tensors[p.inputs[0]], 'the input');
    if (inputQuant) {
      const q = fakeQuantize(g, v, inputQuant);
      v = q.v;
      inputBack.push(q.back);
    }
    env.set(p.inputs[0], { v, nchw: true, shape: p.tensors[p.inputs[0]].shape });
    let afterHead = false;
    for (const op of this.graph.operators) {
      if (op.op === 'DEQUANTIZE' && this.folded.has(op.outputs[0])) continue;
      const bound = BOUND_INPUTS[op.op] ?? [];
      const ins = op.inputs.filter((i, k) => i >= 0 && !bound.includes(k));
      const args = ins.map((i) => env.get(i) ?? null);
      let e: Emitted;
      if (op.index === this.head) {
        e = this.logSoftmax(g, args[0] as Val, this.headBeta);
        afterHead = true;
      } else {
        e = this.emit(g, op, ins, args, inference);
      }
      const quant = afterHead ? null : fakeQuantOf(p.tensors[op.outputs[0]], 'the output of');
      if (quant) {
        const q = fakeQuantize(g, e.v, quant);
        const inner = e.back;
        e = { v: q.v, nchw: e.nchw, back: (d) => inner(q.back(d)) };
      }
      env.set(op.outputs[0], { v: e.v, nchw: e.nchw, shape: p.tensors[op.outputs[0]].shape });
      tape.push({ out: op.outputs[0], ins, back: e.back });
    }
    const last = env.get(p.outputs[0]);
    if (!last) throw new NoOnnx('an output that is not computed');
    const flat = this.toPlain(g, last);
    const out = g.op('Reshape', [flat.v, g.int64s('shape', [-1, this.numClasses])]);
    const backward: Backward = (dz) => {
      const grads = new Map<number, string>([[p.outputs[0], flat.back(g.op('Reshape', [dz, g.int64s('shape', [-1, ...last.shape.slice(1)])]))]]);
      for (let i = tape.length - 1; i >= 0; i--) {
        const rec = tape[i];
        const d = grads.get(rec.out);
        if (!d) continue;
        rec.back(d).forEach((di, k) => {
          const t = rec.ins[k];
          if (!di || !env.has(t)) return;
          const prev = grads.get(t);
          grads.set(t, prev ? g.op('Add', [prev, di]) : di);
        });
      }
      let d = grads.get(p.inputs[0]) ?? g.op('Mul', [v, g.scalar(0)]);
      for (let i = inputBack.length - 1; i >= 0; i--) d = inputBack[i](d);
      return d;
    };
    return { out, backward: [backward] };
  }

  /**
   * toModelInput's resize and luma (model-input.ts) on the NCHW image: the bilinear resize as the
   * same MatMul by a constant matrix per axis, whose transpose is its gradient.
   */
  private modelInput(g: GraphBuilder, x: string, back: Backward[]): string {
    const s = this.inputSize;
    const { height: h, width: w } = this.shape;
    let v = x;
    if (w !== s) {
      const rw = this.cached('resize-w', () => ({ values: transposed(bilinearMatrix(s, w), w, s), dims: [s, w] }));
      const rwT = g.floats('rw', rw.values, rw.dims);
      v = g.op('MatMul', [v, rwT]);
      const m = this.cached('resize-w-back', () => ({ values: bilinearMatrix(s, w), dims: [w, s] }));
      back.push((d) => g.op('MatMul', [d, g.floats('rwb', m.values, m.dims)]));
    }
    if (h !== s) {
      const rh = this.cached('resize-h', () => ({ values: bilinearMatrix(s, h), dims: [h, s] }));
      v = g.op('MatMul', [g.floats('rh', rh.values, rh.dims), v]);
      const m = this.cached('resize-h-back', () => ({ values: transposed(bilinearMatrix(s, h), h, s), dims: [s, h] }));
      back.push((d) => g.op('MatMul', [g.floats('rhb', m.values, m.dims), d]));
    }
    if (this.shape.channels === 1) {
      const luma = g.floats('luma', LUMA, [1, 3, 1, 1]);
      v = g.op('ReduceSum', [g.op('Mul', [v, luma]), g.int64s('axis', [1])], { keepdims: 1 });
      back.push((d) => g.op('Mul', [d, luma]));
    }
    return v;
  }

  /** TFLite's layout (a Transpose back from NCHW when needed). */
  private toPlain(g: GraphBuilder, a: Val): { v: string; back: Backward } {
    if (!a.nchw) return { v: a.v, back: (d) => d };
    return { v: g.op('Transpose', [a.v], { perm: [0, 2, 3, 1] }), back: (d) => g.op('Transpose', [d], { perm: [0, 3, 1, 2] }) };
  }

  /** log-softmax of β·x: the head in logits mode (rebuild.ts), or a LOG_SOFTMAX op. */
  private logSoftmax(g: GraphBuilder, a: Val, beta: number): Emitted {
    if (a.nchw) throw new NoOnnx('a softmax over a rank-4 tensor');
    const b = g.scalar(beta);
    const y = g.op('LogSoftmax', [g.op('Mul', [a.v, b])], { axis: -1 });
    // tfjs: dz = dy − Σ dy · exp(y)
    const back: Vjp = (d) => [
      g.op('Mul', [g.op('Sub', [d, g.op('Mul', [g.op('ReduceSum', [d, g.int64s('axis', [-1])], { keepdims: 1 }), g.op('Exp', [y])])]), b]),
    ];
    return { v: y, nchw: false, back };
  }

  /** A plan op (export.ts's emitters) on an NCHW or flat activation; its backward list composed. */
  private plan(g: GraphBuilder, op: PlanOp, a: Val, inference: boolean): { v: string; back: Backward } {
    const backward: Backward[] = [];
    const shape = a.nchw ? [a.shape[3], a.shape[1], a.shape[2]] : a.shape.slice(1);
    const r = emitOp(g, op, a.v, shape, backward, { poolNext: false, reluBefore: false, inference });
    return { v: r.v, back: (d) => backward.reduceRight((acc, f) => f(acc), d) };
  }

  private emit(g: GraphBuilder, op: GraphOperator, ins: number[], args: (Val | null)[], inference: boolean): Emitted {
    const o = op.options;
    const a = args[0];
    const single = (r: { v: string; back: Backward }, nchw = a?.nchw ?? false): Emitted => ({ v: r.v, nchw, back: (d) => [r.back(d)] });
    const then = (r: { v: string; back: Backward }, act: FusedActivation): { v: string; back: Backward } => {
      const f = activate(g, r.v, act);
      return { v: f.v, back: (d) => r.back(f.back(d)) };
    };
    if (!a && !['ADD', 'SUB', 'MUL', 'DIV'].includes(op.op)) throw new NoOnnx(`${op.op} of a constant`);
    switch (op.op) {
      case 'CONV_2D':
      case 'DEPTHWISE_CONV_2D':
        return single(then(this.plan(g, this.convOp(op, a as Val), a as Val, inference), o.act), true);
      case 'FULLY_CONNECTED':
        return single(this.dense(g, op, a as Val, inference), false);
      case 'MAX_POOL_2D':
      case 'AVERAGE_POOL_2D':
        return single(then(this.plan(g, this.poolOp(op, a as Val), a as Val, inference), o.act), true);
      case 'RESHAPE':
      case 'SQUEEZE':
        return this.reshape(g, op, a as Val);
      case 'ADD':
      case 'SUB':
      case 'MUL':
      case 'DIV':
        return this.binary(g, op, ins, args);
      case 'SOFTMAX': {
        if ((a as Val).nchw) throw new NoOnnx('a softmax over a rank-4 tensor');
        const b = g.scalar(o.beta);
        const s = this.plan(g, { kind: 'softmax' }, { ...(a as Val), v: g.op('Mul', [(a as Val).v, b]) }, inference);
        return single({ v: s.v, back: (d) => g.op('Mul', [s.back(d), b]) });
      }
      case 'LOG_SOFTMAX':
        return this.logSoftmax(g, a as Val, 1);
      case 'RELU':
      case 'RELU6':
      case 'RELU_N1_TO_1':
      case 'TANH':
        return single(activate(g, (a as Val).v, op.op.toLowerCase() as FusedActivation));
      case 'LOGISTIC': {
        const y = g.op('Sigmoid', [(a as Val).v]);
        return single({ v: y, back: (d) => g.op('Mul', [d, g.op('Mul', [y, g.op('Sub', [g.scalar(1), y])])]) });
      }
      case 'HARD_SWISH':
        return single(this.hardSwish(g, (a as Val).v));
      case 'QUANTIZE':
      case 'DEQUANTIZE':
        return single({ v: (a as Val).v, back: (d) => d });
      case 'MEAN':
        return this.mean(g, op, a as Val);
      case 'PAD':
      case 'PADV2':
        return this.pad(g, op, a as Val);
      case 'CONCATENATION':
        return this.concat(g, op, ins, args);
    }
    throw new NoOnnx(op.op);
  }

  private convOp(op: GraphOperator, a: Val): PlanOp {
    return this.cached(`op${op.index}`, (): PlanOp => {
      const o = op.options;
      if (!a.nchw) throw new NoOnnx(`${op.op} of a rank-${a.shape.length} tensor`);
      if (o.dilationH > 1 || o.dilationW > 1) throw new NoOnnx(`a dilated ${op.op}`);
      const wShape = this.graph.parsed.tensors[op.inputs[1]].shape;
      const w = this.need(op.inputs[1], 'filter', op);
      const [, h, wd, inC] = a.shape;
      const [, oh, ow] = this.graph.parsed.tensors[op.outputs[0]].shape;
      let weight: Float32Array, wdims: [number, number, number, number], group: number;
      if (op.op === 'CONV_2D') {
        // TFLite [out, kh, kw, in] → ONNX [out, in, kh, kw].
        const [outC, kh, kw] = wShape;
        weight = new Float32Array(w.length);
        for (let oc = 0; oc < outC; oc++)
          for (let i = 0; i < kh * kw; i++) for (let c = 0; c < inC; c++) weight[(oc * inC + c) * kh * kw + i] = w[(oc * kh * kw + i) * inC + c];
        wdims = [outC, inC, kh, kw];
        group = 1;
      } else {
        // [1, kh, kw, in·m] → [in·m, 1, kh, kw]: output channel c·m + k, as a group-per-input convolution.
        const [, kh, kw, outC] = wShape;
        weight = new Float32Array(w.length);
        for (let oc = 0; oc < outC; oc++) for (let i = 0; i < kh * kw; i++) weight[oc * kh * kw + i] = w[i * outC + oc];
        wdims = [outC, 1, kh, kw];
        group = inC;
      }
      const [pt, pb] = tfPads(o.padding, h, wdims[2], o.strideH, oh);
      const [pl, pr] = tfPads(o.padding, wd, wdims[3], o.strideW, ow);
      const bias = op.inputs[2] != null && op.inputs[2] >= 0 ? this.need(op.inputs[2], 'bias', op) : null;
      return { kind: 'conv', weight, wdims, bias, strides: [o.strideH, o.strideW], pads: [pt, pl, pb, pr], group, relu: false, layer: `operator ${op.index}` };
    });
  }

  private poolOp(op: GraphOperator, a: Val): PlanOp {
    const o = op.options;
    if (!a.nchw) throw new NoOnnx(`${op.op} of a rank-${a.shape.length} tensor`);
    const [, oh, ow] = this.graph.parsed.tensors[op.outputs[0]].shape;
    const [pt, pb] = tfPads(o.padding, a.shape[1], o.filterH, o.strideH, oh);
    const [pl, pr] = tfPads(o.padding, a.shape[2], o.filterW, o.strideW, ow);
    if (op.op === 'MAX_POOL_2D') return { kind: 'maxpool', kernel: [o.filterH, o.filterW], strides: [o.strideH, o.strideW], pads: [pt, pl, pb, pr] };
    // Its gradient is a constant-kernel ConvTranspose: exact for unpadded, non-overlapping windows.
    if (pt || pb || pl || pr || o.strideH !== o.filterH || o.strideW !== o.filterW) throw new NoOnnx('a padded or overlapping AVERAGE_POOL_2D');
    return { kind: 'avgpool', kernel: [o.filterH, o.filterW], channels: a.shape[3] };
  }

  /** FULLY_CONNECTED: a Gemm; from an NCHW activation, with its rows reordered (TFLite flattens NHWC). */
  private dense(g: GraphBuilder, op: GraphOperator, a: Val, inference: boolean): { v: string; back: Backward } {
    const o = op.options;
    if (o.weightsFormat !== 0) throw new NoOnnx('FULLY_CONNECTED with shuffled weights');
    if (!a.nchw && a.shape.length !== 2) throw new NoOnnx(`FULLY_CONNECTED of a rank-${a.shape.length} tensor`);
    const dense = this.cached(`op${op.index}`, (): PlanOp => {
      const [units, inFeatures] = this.graph.parsed.tensors[op.inputs[1]].shape;
      const w = this.need(op.inputs[1], 'weight matrix', op);
      // [out, in] → [in, out]
      let weight: Float32Array = new Float32Array(w.length);
      for (let u = 0; u < units; u++) for (let i = 0; i < inFeatures; i++) weight[i * units + u] = w[u * inFeatures + i];
      if (a.nchw) weight = permuteRows(weight, [a.shape[3], a.shape[1], a.shape[2]], units);
      const bias = op.inputs[2] != null && op.inputs[2] >= 0 ? this.need(op.inputs[2], 'bias', op) : null;
      return { kind: 'dense', weight, inFeatures, units, bias, relu: false, layer: `operator ${op.index}` };
    });
    let input = a;
    let flatBack: Backward = (d) => d;
    if (a.nchw) {
      const f = this.plan(g, { kind: 'flatten' }, a, inference);
      input = { v: f.v, nchw: false, shape: [1, a.shape.slice(1).reduce((x, y) => x * y, 1)] };
      flatBack = f.back;
    }
    const r = this.plan(g, dense, input, inference);
    const f = activate(g, r.v, o.act);
    return { v: f.v, back: (d) => flatBack(r.back(f.back(d))) };
  }

  /** RESHAPE, SQUEEZE: in TFLite's layout, batch dimension free (the target shape is the file's output shape). */
  private reshape(g: GraphBuilder, op: GraphOperator, a: Val): Emitted {
    const target = this.graph.parsed.tensors[op.outputs[0]].shape;
    if (target.length === 0) throw new NoOnnx(`${op.op} without a static output shape`);
    const plain = this.toPlain(g, a);
    const y = g.op('Reshape', [plain.v, g.int64s('shape', [-1, ...target.slice(1)])]);
    const back = (d: string) => plain.back(g.op('Reshape', [d, g.int64s('shape', [-1, ...a.shape.slice(1)])]));
    if (target.length !== 4) return { v: y, nchw: false, back: (d) => [back(d)] };
    return {
      v: g.op('Transpose', [y], { perm: [0, 3, 1, 2] }),
      nchw: true,
      back: (d) => [back(g.op('Transpose', [d], { perm: [0, 2, 3, 1] }))],
    };
  }

  /** ADD, SUB, MUL, DIV of a computed tensor and a constant, or of two computed tensors of the output's shape. */
  private binary(g: GraphBuilder, op: GraphOperator, ins: number[], args: (Val | null)[]): Emitted {
    const p = this.graph.parsed;
    const computed = args.filter((x): x is Val => x !== null);
    if (computed.length === 0) throw new NoOnnx(`${op.op} of two constants`);
    const outShape = p.tensors[op.outputs[0]].shape.join(',');
    if (computed.some((c) => c.nchw !== computed[0].nchw || c.shape.join(',') !== outShape)) throw new NoOnnx(`a broadcasting ${op.op}`);
    const nchw = computed[0].nchw;
    const [x, y] = args.map((arg, k) => (arg ? arg.v : this.constant(g, ins[k], nchw)));
    if (op.op === 'DIV' && args[1]) throw new NoOnnx('DIV by a computed tensor');
    const name = { ADD: 'Add', SUB: 'Sub', MUL: 'Mul', DIV: 'Div' }[op.op] as string;
    const f = activate(g, g.op(name, [x, y]), op.options.act);
    const back: Vjp = (dy) => {
      const d = f.back(dy);
      switch (op.op) {
        case 'ADD':
          return [d, d];
        case 'SUB':
          return [d, g.op('Neg', [d])];
        case 'MUL':
          return [g.op('Mul', [d, y]), g.op('Mul', [d, x])];
        default:
          return [g.op('Div', [d, y]), null];
      }
    };
    return { v: f.v, nchw, back };
  }

  /** x·relu6(x + 3)/6, as rebuild.ts writes it (so with its gradient). */
  private hardSwish(g: GraphBuilder, x: string): { v: string; back: Backward } {
    const shifted = g.op('Add', [x, g.scalar(3)]);
    const r = activate(g, shifted, 'relu6');
    const six = g.scalar(6);
    const v = g.op('Div', [g.op('Mul', [x, r.v]), six]);
    return {
      v,
      back: (dy) => {
        const d = g.op('Div', [dy, six]);
        return g.op('Add', [g.op('Mul', [d, r.v]), r.back(g.op('Mul', [d, x]))]);
      },
    };
  }

  /** MEAN over H and W of an NCHW activation (global average pooling), or over any non-batch axes of a flat one. */
  private mean(g: GraphBuilder, op: GraphOperator, a: Val): Emitted {
    const rank = a.shape.length;
    const axes = (constantInts(this.graph, op.inputs[1]) ?? []).map((x) => (x < 0 ? x + rank : x));
    if (axes.includes(0)) throw new NoOnnx('MEAN over the batch dimension');
    const nchwAxes = a.nchw ? axes.map((x) => NHWC_TO_NCHW_AXIS[x]) : axes;
    if (a.nchw && !op.options.keepDims && !(axes.length === 2 && axes.includes(1) && axes.includes(2))) throw new NoOnnx('MEAN that reorders NHWC axes');
    const count = axes.reduce((n, x) => n * a.shape[x], 1);
    const y = g.op('ReduceMean', [a.v], { axes: nchwAxes, keepdims: op.options.keepDims ? 1 : 0 });
    const kept = a.nchw ? [a.shape[0], a.shape[3], a.shape[1], a.shape[2]] : [...a.shape];
    for (const x of nchwAxes) kept[x] = 1;
    const back: Vjp = (d) => [
      g.op('Div', [g.op('Expand', [g.op('Reshape', [d, g.int64s('shape', [-1, ...kept.slice(1)])]), g.op('Shape', [a.v])]), g.scalar(count)]),
    ];
    return { v: y, nchw: a.nchw && op.options.keepDims, back };
  }

  private pad(g: GraphBuilder, op: GraphOperator, a: Val): Emitted {
    const p = constantInts(this.graph, op.inputs[1]);
    if (!p) throw new NoOnnx('PAD with computed paddings');
    const rank = a.shape.length;
    const order = a.nchw ? [0, 3, 1, 2] : Array.from({ length: rank }, (_, i) => i);
    if (p[0] !== 0 || p[1] !== 0) throw new NoOnnx('PAD of the batch dimension');
    const begin = order.map((ax) => p[2 * ax]),
      end = order.map((ax) => p[2 * ax + 1]);
    const value = op.op === 'PADV2' && op.inputs[2] >= 0 ? this.need(op.inputs[2], 'pad value', op)[0] : 0;
    const y = g.op('Pad', [a.v, g.int64s('pads', [...begin, ...end]), g.scalar(value)], { mode: 'constant' });
    const dims = order.map((ax) => a.shape[ax]);
    const axes = dims.map((_, i) => i).slice(1);
    const back: Vjp = (d) => [
      g.op('Slice', [
        d,
        g.int64s(
          'starts',
          axes.map((i) => begin[i]),
        ),
        g.int64s(
          'ends',
          axes.map((i) => begin[i] + dims[i]),
        ),
        g.int64s('axes', axes),
      ]),
    ];
    return { v: y, nchw: a.nchw, back };
  }

  private concat(g: GraphBuilder, op: GraphOperator, ins: number[], args: (Val | null)[]): Emitted {
    const computed = args.filter((x): x is Val => x !== null);
    const nchw = computed[0].nchw;
    if (computed.some((c) => c.nchw !== nchw)) throw new NoOnnx('CONCATENATION of mixed layouts');
    const rank = this.graph.parsed.tensors[op.outputs[0]].shape.length;
    const axis = op.options.axis < 0 ? op.options.axis + rank : op.options.axis;
    if (axis === 0) throw new NoOnnx('CONCATENATION along the batch dimension');
    const onnxAxis = nchw ? NHWC_TO_NCHW_AXIS[axis] : axis;
    const parts = args.map((arg, k) => (arg ? arg.v : this.constant(g, ins[k], nchw)));
    const sizes = ins.map((i) => this.graph.parsed.tensors[i].shape[axis]);
    const f = activate(g, g.op('Concat', parts, { axis: onnxAxis }), op.options.act);
    const back: Vjp = (d) => g.ops('Split', [f.back(d), g.int64s('split', sizes)], { axis: onnxAxis }, sizes.length);
    return { v: f.v, nchw, back };
  }
}

/** The ONNX model of a rebuilt TFLite graph behind its input mapping, or why there is none. */
export function tfliteOnnx(graph: TfliteGraph, shape: InputShape, range: InputRange): TfliteOnnx | string {
  try {
    return new TfliteOnnx(graph, shape, range);
  } catch (e) {
    if (e instanceof NoOnnx) return `its ONNX export does not support ${e.message}`;
    throw e;
  }
}
