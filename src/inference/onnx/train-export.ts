/**
 * A training plan (planOf with `training`) as one ONNX graph for a training step: the forward
 * pass with the weights as graph inputs (they change every step), inverted dropout by given
 * masks, the mean softmax cross-entropy against given target rows (one-hot or label-smoothed),
 * and its gradient w.r.t. every weight, from standard operators:
 *
 *   dense   dW = xᵀ·d, db = Σ_n d, dx = d·Wᵀ (Gemm)
 *   conv    dW per kernel offset (i, j) as one Gemm over the batch: with x padded and d padded
 *           to the same grid, both flattened channel-major, dW[:, :, i, j] = d · x shifted by
 *           i·row + j (convolution as Conv(x, d as the filter) runs onnxruntime's im2col on a
 *           32×32 kernel, ten times slower); db = Σ_{n,h,w} d; dx = Conv(d, the flipped
 *           transposed weight), which the caller feeds beside the weight (a fixed permutation)
 *
 * ReLU, pooling, flattening and affine ops take their backward from export.ts. Stride-1 ungrouped
 * convolutions only (the cnn4 family); anything else raises Unsupported and training stays on tfjs.
 *
 * exportAttackOnnx is the same forward pass with the weights as inputs in eval mode (no dropout)
 * and the input gradient of the attack's CE (cotangent.ts, as tfjs's objective.ts) instead of the
 * weight gradients, followed by export.ts's linfStep head: each FGSM / FGSM-RS / PGD step of
 * adversarial training is one call with the current weights.
 */
import { GraphBuilder } from './graph';
import { Unsupported } from './layers';
import type { Plan, PlanOp } from './layers';
import { Backward, emitOp, linfStepNodes, reluMask } from './export';
import { cotangentNodes } from './cotangent';
import { DataType, encodeModel } from './proto';

/** One weight the graph takes as input `name` and whose gradient it returns as `grad_<name>`. */
export interface TrainParam {
  name: string;
  layer: string;
  role: 'kernel' | 'bias';
  dims: number[];
  /** The input name of this conv kernel's flipped, transposed copy (for the input gradient), if needed. */
  flipped?: string;
}

export interface TrainGraph {
  model: Uint8Array;
  params: TrainParam[];
  /** Dropout mask inputs [N, features], in order: 1/(1 − rate) where kept, 0 where dropped. */
  dropouts: { name: string; features: number; rate: number }[];
}

type ParamOp = Extract<PlanOp, { kind: 'conv' | 'dense' }>;

/**
 * dW [cout, cin, kh, kw] of a stride-1 convolution of x [N, cin, H, W] (pads p) with output
 * gradient d [N, cout, oh, ow]: on the padded grid Hp × Wp, x[n, c, h + i, w + j] is the flat
 * element (n·Hp + h)·Wp + w + i·Wp + j, so each offset is a contiguous shift of one flat array.
 */
function convWeightGrad(g: GraphBuilder, x: string, d: string, op: Extract<PlanOp, { kind: 'conv' }>, oh: number, ow: number): string {
  const [cout, cin, kh, kw] = op.wdims;
  const [pt, pl, pb, pr] = op.pads;
  const wp = ow + kw - 1;
  const channelMajor = (t: string, pads: number[], c: number) =>
    g.op('Reshape', [g.op('Pad', [g.op('Transpose', [t], { perm: [1, 0, 2, 3] }), g.int64s('pads', pads)]), g.int64s('shape', [c, -1])]);
  const xf = channelMajor(x, [0, 0, pt, pl, 0, 0, pb, pr], cin);
  const df = channelMajor(d, [0, 0, 0, 0, 0, 0, kh - 1, kw - 1], cout);
  // Only the first P − maxShift positions: every shift stays inside the flat array.
  const maxShift = (kh - 1) * wp + kw - 1;
  const n = g.op('Sub', [g.op('Gather', [g.op('Shape', [df]), g.int64s('one', [1])], { axis: 0 }), g.int64s('shift', [maxShift])]);
  const slice = (t: string, shift: number) =>
    g.op('Slice', [t, g.int64s('start', [shift]), g.op('Add', [n, g.int64s('shift', [shift])]), g.int64s('axis', [1])]);
  const dUsed = slice(df, 0);
  const perOffset: string[] = [];
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      perOffset.push(g.op('Unsqueeze', [g.op('Gemm', [dUsed, slice(xf, i * wp + j)], { transB: 1 }), g.int64s('axis', [2])]));
    }
  // [cout, cin, kh·kw] → [cout, cin, kh, kw]
  return g.op('Reshape', [g.op('Concat', perOffset, { axis: 2 }), g.int64s('shape', [cout, cin, kh, kw])]);
}

/** The conv or dense op with weights as inputs; its backward also emits the weight gradients. */
function emitParamOp(
  g: GraphBuilder,
  op: ParamOp,
  v: string,
  shape: number[],
  needInputGrad: boolean,
  params: TrainParam[],
  grads: Map<string, string> | null,
): { y: string; shape: number[]; backward: Backward } {
  const id = params.length;
  const input = (role: 'kernel' | 'bias', dims: number[], flipped?: string): string => {
    const name = g.input(`${op.layer}_${role}_${id}`, DataType.FLOAT, dims);
    params.push({ name, layer: op.layer, role, dims, ...(flipped ? { flipped } : {}) });
    return name;
  };
  const sumOver = (d: string, axes: number[]) => g.op('ReduceSum', [d, g.int64s('axes', axes)], { keepdims: 0 });
  if (op.kind === 'dense') {
    const w = input('kernel', [op.inFeatures, op.units]);
    const b = op.bias ? input('bias', [op.units]) : null;
    const y = g.op('Gemm', b ? [v, w, b] : [v, w]);
    return {
      y,
      shape: [op.units],
      backward: (d) => {
        grads?.set(w, g.op('Gemm', [v, d], { transA: 1 }));
        if (b) grads?.set(b, sumOver(d, [0]));
        return needInputGrad ? g.op('Gemm', [d, w], { transB: 1 }) : '';
      },
    };
  }
  if (op.group !== 1 || op.strides[0] !== 1 || op.strides[1] !== 1) throw new Unsupported(`${op.layer}: training a strided or grouped convolution`);
  const [cout, cin, kh, kw] = op.wdims;
  const flipped = needInputGrad ? g.input(`${op.layer}_flipped_${id}`, DataType.FLOAT, [cin, cout, kh, kw]) : undefined;
  const w = input('kernel', [...op.wdims], flipped);
  const b = op.bias ? input('bias', [cout]) : null;
  const y = g.op('Conv', b ? [v, w, b] : [v, w], { kernel_shape: [kh, kw], strides: [1, 1], pads: op.pads });
  const [oh, ow] = [shape[1] + op.pads[0] + op.pads[2] - kh + 1, shape[2] + op.pads[1] + op.pads[3] - kw + 1];
  return {
    y,
    shape: [cout, oh, ow],
    backward: (d) => {
      grads?.set(w, convWeightGrad(g, v, d, op, oh, ow));
      if (b) grads?.set(b, sumOver(d, [0, 2, 3]));
      if (!flipped) return '';
      const [pt, pl, pb, pr] = op.pads;
      return g.op('Conv', [d, flipped], { kernel_shape: [kh, kw], strides: [1, 1], pads: [kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr] });
    },
  };
}

interface WeightInputForward {
  logits: string;
  backward: Backward[];
  params: TrainParam[];
  dropouts: TrainGraph['dropouts'];
}

/**
 * The forward pass of `plan` on x [N, s, s, 3] with the weights as graph inputs, recording each
 * op's backward. `grads` null: no weight gradients, no dropout (eval mode) and the input gradient
 * through every op (the attack graph); else weight gradients into `grads`, dropout by mask inputs
 * and the input gradient only as far as the first weight.
 */
function weightInputForward(g: GraphBuilder, plan: Plan, x: string, grads: Map<string, string> | null): WeightInputForward {
  const params: TrainParam[] = [],
    dropouts: TrainGraph['dropouts'] = [],
    backward: Backward[] = [];
  const firstParam = grads ? plan.ops.findIndex((op) => op.kind === 'conv' || op.kind === 'dense') : -1;
  let v = g.op('Transpose', [x], { perm: [0, 3, 1, 2] });
  let shape = [3, plan.inputSize, plan.inputSize];
  plan.ops.forEach((op, i) => {
    const prev = plan.ops[i - 1];
    const at = { poolNext: plan.ops[i + 1]?.kind === 'maxpool', reluBefore: prev?.kind === 'relu' || (prev?.kind === 'conv' && prev.relu) };
    if (op.kind === 'conv' || op.kind === 'dense') {
      const r = emitParamOp(g, op, v, shape, i > firstParam, params, grads);
      backward.push(r.backward);
      ({ y: v, shape } = r);
      if (op.relu) {
        v = g.op('Relu', [v]);
        if (!at.poolNext) backward.push(reluMask(g, v));
      }
    } else if (op.kind === 'dropout') {
      if (!grads) return;
      if (shape.length !== 1) throw new Unsupported('dropout before flattening');
      const mask = g.input(`dropout_${dropouts.length}`, DataType.FLOAT, ['N', op.features]);
      dropouts.push({ name: mask, features: op.features, rate: op.rate });
      v = g.op('Mul', [v, mask]);
      backward.push((d) => g.op('Mul', [d, mask]));
    } else {
      ({ v, shape } = emitOp(g, op, v, shape, backward, at));
    }
  });
  return { logits: v, backward, params, dropouts };
}

/** A graph of `plan` on inputs x [N, s, s, 3] and `rows` [N, k] (one row per image), the weights after them; logits out. */
function weightInputGraph(plan: Plan, rows: string, grads: Map<string, string> | null): WeightInputForward & { g: GraphBuilder; x: string; rows: string } {
  if (plan.ops.some((op) => op.kind === 'softmax' || op.kind === 'logclip')) throw new Unsupported('training a model with a softmax output');
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['N', plan.inputSize, plan.inputSize, 3]);
  const r = g.input(rows, DataType.FLOAT, ['N', plan.numClasses]);
  const f = weightInputForward(g, plan, x, grads);
  g.output(f.logits, 'logits', DataType.FLOAT, ['N', plan.numClasses]);
  return { ...f, g, x, rows: r };
}

/** The training-step graph of `plan`. Inputs: x [N, s, s, 3], t [N, k] target rows, the params, the dropout masks. */
export function exportTrainingOnnx(plan: Plan): TrainGraph {
  const grads = new Map<string, string>();
  const { g, rows: t, logits: v, backward, params, dropouts } = weightInputGraph(plan, 't', grads);
  // Mean cross-entropy over the batch and its cotangent (softmax − t) / N.
  const n = g.op('Cast', [g.op('Gather', [g.op('Shape', [v]), g.int64s('zero', [0], [])], { axis: 0 })], { to: DataType.FLOAT });
  const ce = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [t, g.op('LogSoftmax', [v], { axis: 1 })]), g.int64s('all', [0, 1])], { keepdims: 0 })]);
  g.output(g.op('Div', [ce, n]), 'loss', DataType.FLOAT, []);
  let d = g.op('Div', [g.op('Sub', [g.op('Softmax', [v], { axis: 1 }), t]), n]);
  // Backward only as far as the first weight: the input gradient of the images is not needed.
  for (let i = backward.length - 1; i >= 0 && d !== ''; i--) d = backward[i](d);
  for (const p of params) g.output(grads.get(p.name) as string, `grad_${p.name}`, DataType.FLOAT, p.dims);
  return { model: encodeModel(g.build('train_step')), params, dropouts };
}

/**
 * The attack graph of `plan`: inputs x [N, s, s, 3], y [N, k] one-hot label rows, the params
 * (every conv with its flipped copy) and the linfStep head's clean, eps and step; outputs logits,
 * `grad`, the input gradient of untargeted CE in eval mode (what adversarial-plan.ts's tfjs attack
 * differentiates), and `adv`, x after one projected sign step of it.
 */
export function exportAttackOnnx(plan: Plan): TrainGraph {
  const { g, x, rows: y, logits, backward, params } = weightInputGraph(plan, 'y', null);
  const image = ['N', plan.inputSize, plan.inputSize, 3];
  let d = cotangentNodes(g, 'ce', { z: logits, y, t: null, numClasses: plan.numClasses });
  for (let i = backward.length - 1; i >= 0; i--) d = backward[i](d);
  const grad = g.op('Transpose', [d], { perm: [0, 2, 3, 1] });
  g.output(grad, 'grad', DataType.FLOAT, image);
  g.output(linfStepNodes(g, x, grad, image), 'adv', DataType.FLOAT, image);
  return { model: encodeModel(g.build('attack_step')), params, dropouts: [] };
}
