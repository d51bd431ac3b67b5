/**
 * A classifier's plan (layers.ts) as ONNX graphs with their own reverse pass, written from
 * standard operators only, so one onnxruntime call returns the logits and the input gradient:
 *
 *   forward   Transpose to NCHW, Conv, Relu, MaxPool (with indices), Flatten, Gemm, Softmax…
 *   backward  y > 0 masks for Relu, Conv with the flipped, transposed weight (the input gradient
 *             of a stride-1 convolution; ConvTranspose for strided ones: conv-grad.ts), MaxUnpool with the
 *             pooling's own indices (the gradient goes to the first maximum, as in tfjs; a
 *             scatter-add where windows overlap), Reshape for Flatten, Gemm with the transposed
 *             weight for Dense.
 *
 * Why those ops (docs/performance.md, the profile): onnxruntime's ConvTranspose is an im2col
 * GEMM plus a single-threaded col2im, while Conv runs on its blocked NCHWc kernels, so a
 * stride-1 backward as Conv costs what the forward costs; Where is a generic broadcasting kernel,
 * a Mul by a 0/1 mask is vectorised; and a ReLU in front of a max pooling is masked on the pooled
 * values (the gradient only reaches each window's maximum, positive exactly where the pooled
 * value is), a quarter of the elements.
 *
 * Four heads: `logits` (inference), `vjp` (logits, and Jᵀc for a given cotangent c), `objective`
 * (the cotangent of ce | margin | dlr computed inside the graph: cotangent.ts) and `linfStep`
 * (an objective's projected L∞ sign step, linfStepNodes).
 */
import type { AttackLoss } from '../objective';
import { GraphBuilder } from './graph';
import type { Plan, PlanOp } from './layers';
import { cotangentNodes } from './cotangent';
import { ConvOp, convInputGrad, convOutputSize } from './conv-grad';
import { DataType, encodeModel } from './proto';

export type Head =
  | { kind: 'logits' }
  | { kind: 'vjp' }
  | { kind: 'objective'; loss: AttackLoss; targeted: boolean }
  /** One L∞ sign step of the objective (FGSM, a PGD step), projected; `logits`: also those of the result. */
  | { kind: 'linfStep'; loss: AttackLoss; targeted: boolean; logits: boolean };

/** Emits the backward of one op: the gradient of its input from the gradient of its output. */
export type Backward = (d: string) => string;

/** A forward pass with its backward emitters (run in reverse, they give the NCHW input gradient). */
export interface Forward {
  out: string;
  backward: Backward[];
}

/**
 * A model that emits its own forward pass (a TFLite graph, src/tflite/onnx-graph.ts) rather than
 * a plan: from the NHWC input `x` it starts with the same Transpose to NCHW as a plan's forward.
 */
export interface OnnxModel {
  inputSize: number;
  numClasses: number;
  forward(g: GraphBuilder, x: string, inference: boolean): Forward;
}

/** d ⊙ 1[y > 0] (a zero where the mask is off may come out as −0: nothing downstream tells them apart). */
export function reluMask(g: GraphBuilder, y: string): Backward {
  return (d) => g.op('Mul', [d, g.op('Cast', [g.op('Greater', [y, g.scalar(0)])], { to: DataType.FLOAT })]);
}

/** A conv weight [cout, cin/g, kh, kw] as the weight of its input gradient: [cin, cout/g, kh, kw], spatially flipped. */
export function backwardWeight(w: Float32Array, [cout, cinG, kh, kw]: readonly number[], group: number): Float32Array {
  const coutG = cout / group;
  const out = new Float32Array(w.length);
  for (let gi = 0; gi < group; gi++)
    for (let ci = 0; ci < cinG; ci++)
      for (let co = 0; co < coutG; co++) {
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            out[(((gi * cinG + ci) * coutG + co) * kh + kh - 1 - i) * kw + kw - 1 - j] = w[(((gi * coutG + co) * cinG + ci) * kh + i) * kw + j];
          }
      }
  return out;
}

/** The input gradient of a convolution (conv-grad.ts): a Conv with the flipped weight when the stride is 1, else a ConvTranspose. */
function convBackward(g: GraphBuilder, op: ConvOp, w: string, inShape: number[], outHW: [number, number]): Backward {
  const [cout, cinG, kh, kw] = op.wdims;
  const stride1 = op.strides[0] === 1 && op.strides[1] === 1;
  return (d) => {
    const wb = stride1 ? g.floats('wb', backwardWeight(op.weight, op.wdims, op.group), [cinG * op.group, cout / op.group, kh, kw]) : null;
    return convInputGrad(g, d, op, w, wb, [inShape[1], inShape[2]], outHW);
  };
}

/** Where the op sits: a ReLU right before a max pooling leaves its mask to the pooling. */
export interface Context {
  poolNext: boolean;
  reluBefore: boolean;
  /** No reverse pass follows: a max pooling then has no indices output (which rules out onnxruntime's NCHWc pooling). */
  inference?: boolean;
}

export function emitOp(g: GraphBuilder, op: PlanOp, v: string, shape: number[], backward: Backward[], at: Context): { v: string; shape: number[] } {
  switch (op.kind) {
    case 'affine': {
      const dims = op.spatial ? [op.scale.length, 1, 1] : [op.scale.length];
      const scale = g.floats('scale', op.scale, dims);
      backward.push((d) => g.op('Mul', [d, scale]));
      return { v: g.op('Add', [g.op('Mul', [v, scale]), g.floats('offset', op.offset, dims)]), shape };
    }
    case 'conv': {
      const [cout, , kh, kw] = op.wdims;
      const w = g.floats('w', op.weight, op.wdims);
      const attrs = { kernel_shape: [kh, kw], strides: op.strides, pads: op.pads, group: op.group };
      let y = g.op('Conv', op.bias ? [v, w, g.floats('b', op.bias, [cout])] : [v, w], attrs);
      const [oh, ow] = convOutputSize(op, shape[1], shape[2]);
      backward.push(convBackward(g, op, w, shape, [oh, ow]));
      if (op.relu) {
        y = g.op('Relu', [y]);
        if (!at.poolNext) backward.push(reluMask(g, y));
      }
      return { v: y, shape: [cout, oh, ow] };
    }
    case 'relu': {
      const y = g.op('Relu', [v]);
      if (!at.poolNext) backward.push(reluMask(g, y));
      return { v: y, shape };
    }
    case 'maxpool': {
      const attrs = { kernel_shape: op.kernel, strides: op.strides, pads: op.pads };
      const oh = Math.floor((shape[1] + op.pads[0] + op.pads[2] - op.kernel[0]) / op.strides[0]) + 1;
      const ow = Math.floor((shape[2] + op.pads[1] + op.pads[3] - op.kernel[1]) / op.strides[1]) + 1;
      if (at.inference) return { v: g.op('MaxPool', [v], attrs), shape: [shape[0], oh, ow] };
      const [y, indices] = g.ops('MaxPool', [v], attrs, 2);
      const inShape = g.op('Shape', [v]);
      const mask = at.reluBefore ? reluMask(g, y) : (d: string) => d;
      const overlapping = op.kernel[0] > op.strides[0] || op.kernel[1] > op.strides[1];
      // MaxUnpool writes each window's gradient to its argmax; where windows overlap two can pick
      // the same element, and the gradients must add up: a scatter-add over the flat indices.
      backward.push(
        overlapping
          ? (dy) => {
              const d = mask(dy);
              const flat = g.int64s('flat', [-1]);
              const zeros = g.op('Reshape', [g.op('Mul', [v, g.scalar(0)]), flat]);
              const added = g.op('ScatterElements', [zeros, g.op('Reshape', [indices, flat]), g.op('Reshape', [d, flat])], { axis: 0, reduction: 'add' });
              return g.op('Reshape', [added, inShape]);
            }
          : (d) => g.op('MaxUnpool', [mask(d), indices, inShape], attrs),
      );
      return { v: y, shape: [shape[0], oh, ow] };
    }
    case 'avgpool': {
      const [kh, kw] = op.kernel;
      const ones = g.floats('avg', new Float32Array(op.channels * kh * kw).fill(1 / (kh * kw)), [op.channels, 1, kh, kw]);
      const oh = Math.floor(shape[1] / kh),
        ow = Math.floor(shape[2] / kw);
      const outputPadding = [shape[1] - oh * kh, shape[2] - ow * kw];
      backward.push((d) =>
        g.op('ConvTranspose', [d, ones], { kernel_shape: op.kernel, strides: op.kernel, group: op.channels, output_padding: outputPadding }),
      );
      return { v: g.op('AveragePool', [v], { kernel_shape: op.kernel, strides: op.kernel }), shape: [shape[0], oh, ow] };
    }
    case 'flatten': {
      const inShape = g.op('Shape', [v]);
      backward.push((d) => g.op('Reshape', [d, inShape]));
      return { v: g.op('Flatten', [v], { axis: 1 }), shape: [shape.reduce((a, b) => a * b, 1)] };
    }
    case 'dense': {
      const w = g.floats('w', op.weight, [op.inFeatures, op.units]);
      let y = g.op('Gemm', op.bias ? [v, w, g.floats('b', op.bias, [op.units])] : [v, w]);
      backward.push((d) => g.op('Gemm', [d, w], { transB: 1 }));
      if (op.relu) {
        y = g.op('Relu', [y]);
        backward.push(reluMask(g, y));
      }
      return { v: y, shape: [op.units] };
    }
    case 'softmax': {
      const p = g.op('Softmax', [v], { axis: 1 });
      // dz = p ⊙ (dp − Σ dp ⊙ p)
      backward.push((d) => g.op('Mul', [p, g.op('Sub', [d, g.op('ReduceSum', [g.op('Mul', [d, p]), g.int64s('axis', [1])], { keepdims: 1 })])]));
      return { v: p, shape };
    }
    case 'dropout':
      return { v, shape };
    case 'logclip': {
      // log(clip(p, 1e-12, 1)), as LayersClassifier turns probabilities into logits.
      const lo = g.scalar(1e-12),
        hi = g.scalar(1);
      const clipped = g.op('Clip', [v, lo, hi]);
      backward.push((d) => {
        const inside = g.op('And', [g.op('GreaterOrEqual', [v, lo]), g.op('LessOrEqual', [v, hi])]);
        return g.op('Where', [inside, g.op('Div', [d, clipped]), g.scalar(0)]);
      });
      return { v: g.op('Log', [clipped]), shape };
    }
  }
}

function forward(g: GraphBuilder, plan: Plan, x: string, inference: boolean): Forward {
  const backward: Backward[] = [];
  let v = g.op('Transpose', [x], { perm: [0, 3, 1, 2] });
  let shape = [3, plan.inputSize, plan.inputSize];
  plan.ops.forEach((op, i) => {
    const prev = plan.ops[i - 1];
    const at = { poolNext: plan.ops[i + 1]?.kind === 'maxpool', reluBefore: prev?.kind === 'relu' || (prev?.kind === 'conv' && prev.relu), inference };
    ({ v, shape } = emitOp(g, op, v, shape, backward, at));
  });
  return { out: v, backward };
}

/** Runs the recorded backward emitters in reverse and returns the NHWC input gradient. */
function inputGradient(g: GraphBuilder, f: Forward, cotangent: string): string {
  let d = cotangent;
  for (let i = f.backward.length - 1; i >= 0; i--) d = f.backward[i](d);
  return g.op('Transpose', [d], { perm: [0, 2, 3, 1] });
}

/**
 * The linfStep head (also the training attack graph's, train-export.ts): inputs clean [N, s, s, 3]
 * and the scalars eps and step; sign(grad) with sign(0) = 0 (as signExact in tf.ts), times step,
 * added to x, projected on the eps ball around clean and on [0, 1]: the same float32 operations,
 * in the same order, as the tfjs step of one-step.ts and iterative.ts, so the result is the one
 * they compute from this gradient. Returns adv.
 */
export function linfStepNodes(g: GraphBuilder, x: string, grad: string, image: readonly (number | string)[]): string {
  const clean = g.input('clean', DataType.FLOAT, image);
  const [eps, step] = [g.input('eps', DataType.FLOAT, []), g.input('step', DataType.FLOAT, [])];
  const cast = (v: string) => g.op('Cast', [v], { to: DataType.FLOAT });
  const sign = g.op('Sub', [cast(g.op('Greater', [grad, g.scalar(0)])), cast(g.op('Less', [grad, g.scalar(0)]))]);
  const stepped = g.op('Add', [x, g.op('Mul', [sign, step])]);
  const d = g.op('Clip', [g.op('Sub', [stepped, clean]), g.op('Neg', [eps]), eps]);
  return g.op('Clip', [g.op('Add', [clean, d]), g.scalar(0), g.scalar(1)]);
}

/**
 * The serialised ONNX model of `plan` with `head`. Inputs: x [N, s, s, 3] (+ c, or y and t as float
 * one-hot rows; a linfStep also clean [N, s, s, 3] and the scalars eps and step). Outputs: logits
 * (of x; a linfStep's of adv, when asked), grad, or adv.
 */
export function exportOnnx(plan: Plan | OnnxModel, head: Head): Uint8Array {
  const g = new GraphBuilder();
  const s = plan.inputSize,
    k = plan.numClasses;
  const image = ['N', s, s, 3];
  const run = (v: string, inference: boolean) => ('ops' in plan ? forward(g, plan, v, inference) : plan.forward(g, v, inference));
  const x = g.input('x', DataType.FLOAT, image);
  const f = run(x, head.kind === 'logits');
  let c: string | null = null;
  if (head.kind === 'vjp') {
    c = g.input('c', DataType.FLOAT, ['N', k]);
  } else if (head.kind === 'objective' || head.kind === 'linfStep') {
    const y = g.input('y', DataType.FLOAT, ['N', k]);
    const t = head.targeted ? g.input('t', DataType.FLOAT, ['N', k]) : null;
    c = cotangentNodes(g, head.loss, { z: f.out, y, t, numClasses: k });
  }
  if (head.kind === 'linfStep') {
    const adv = linfStepNodes(g, x, inputGradient(g, f, c as string), image);
    g.output(adv, 'adv', DataType.FLOAT, image);
    if (head.logits) g.output(run(adv, true).out, 'logits', DataType.FLOAT, ['N', k]);
  } else {
    g.output(f.out, 'logits', DataType.FLOAT, ['N', k]);
    if (c) g.output(inputGradient(g, f, c), 'grad', DataType.FLOAT, image);
  }
  const name = head.kind === 'objective' || head.kind === 'linfStep' ? `${head.kind}_${head.loss}${head.targeted ? '_targeted' : ''}` : head.kind;
  return encodeModel(g.build(name));
}
