/**
 * A training plan (planOf with `training`) as one ONNX graph for a training step: the forward
 * pass with the weights as graph inputs (they change every step), inverted dropout by given
 * masks, the mean softmax cross-entropy against given target rows (one-hot or label-smoothed),
 * and its gradient w.r.t. every weight, from standard operators:
 *
 *   dense   dW = xᵀ·d, db = Σ_n d, dx = d·Wᵀ (Gemm)
 *   conv    dW per kernel offset (i, j) as one Gemm over the batch of x's shifted (and, when
 *           strided, stepped) copy (conv-grad.ts); db = Σ_{n,h,w} d; dx = Conv(d, the flipped
 *           transposed weight), which the caller feeds beside the weight (a fixed permutation),
 *           or at a stride above 1 a ConvTranspose of the weight
 *
 * ReLU, pooling, flattening and affine ops take their backward from export.ts. Ungrouped
 * convolutions only (the cnn4 family, cnn2-ibp's strided ones); anything else raises Unsupported
 * and training stays on tfjs. ibp-export.ts builds IBP training's graph on the same forward pass.
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
import { convInputGrad, convOutputSize, convWeightGrad } from './conv-grad';

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

export type ParamOp = Extract<PlanOp, { kind: 'conv' | 'dense' }>;

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
  if (op.group !== 1) throw new Unsupported(`${op.layer}: training a grouped convolution`);
  const [cout, cin, kh, kw] = op.wdims;
  const stride1 = op.strides[0] === 1 && op.strides[1] === 1;
  // A stride-1 input gradient is a Conv with the flipped weight (fed beside it); a strided one a ConvTranspose of the weight.
  const flipped = needInputGrad && stride1 ? g.input(`${op.layer}_flipped_${id}`, DataType.FLOAT, [cin, cout, kh, kw]) : undefined;
  const w = input('kernel', [...op.wdims], flipped);
  const b = op.bias ? input('bias', [cout]) : null;
  const y = g.op('Conv', b ? [v, w, b] : [v, w], { kernel_shape: [kh, kw], strides: op.strides, pads: op.pads });
  const inHW: [number, number] = [shape[1], shape[2]];
  const outHW = convOutputSize(op, shape[1], shape[2]);
  return {
    y,
    shape: [cout, ...outHW],
    backward: (d) => {
      grads?.set(w, convWeightGrad(g, v, d, op, inHW, outHW));
      if (b) grads?.set(b, sumOver(d, [0, 2, 3]));
      return needInputGrad ? convInputGrad(g, d, op, w, flipped ?? null, inHW, outHW) : '';
    },
  };
}

export interface WeightInputForward {
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
export function weightInputGraph(
  plan: Plan,
  rows: string,
  grads: Map<string, string> | null,
): WeightInputForward & { g: GraphBuilder; x: string; rows: string } {
  if (plan.ops.some((op) => op.kind === 'softmax' || op.kind === 'logclip')) throw new Unsupported('training a model with a softmax output');
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['N', plan.inputSize, plan.inputSize, 3]);
  const r = g.input(rows, DataType.FLOAT, ['N', plan.numClasses]);
  const f = weightInputForward(g, plan, x, grads);
  g.output(f.logits, 'logits', DataType.FLOAT, ['N', plan.numClasses]);
  return { ...f, g, x, rows: r };
}

/** The mean cross-entropy over the batch of logits z [N, k] against target rows t, and its cotangent (softmax(z) − t) / N. */
export function meanCrossEntropy(g: GraphBuilder, z: string, t: string): { loss: string; cotangent: string } {
  const n = g.op('Cast', [g.op('Gather', [g.op('Shape', [z]), g.int64s('zero', [0], [])], { axis: 0 })], { to: DataType.FLOAT });
  const ce = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [t, g.op('LogSoftmax', [z], { axis: 1 })]), g.int64s('all', [0, 1])], { keepdims: 0 })]);
  return { loss: g.op('Div', [ce, n]), cotangent: g.op('Div', [g.op('Sub', [g.op('Softmax', [z], { axis: 1 }), t]), n]) };
}

/** Runs the recorded backward emitters in reverse from d, as far as the first weight (an emitter returning ''). */
export function backpropagate(backward: Backward[], d: string): void {
  for (let i = backward.length - 1; i >= 0 && d !== ''; i--) d = backward[i](d);
}

/** The training-step graph of `plan`. Inputs: x [N, s, s, 3], t [N, k] target rows, the params, the dropout masks. */
export function exportTrainingOnnx(plan: Plan): TrainGraph {
  const grads = new Map<string, string>();
  const { g, rows: t, logits, backward, params, dropouts } = weightInputGraph(plan, 't', grads);
  const ce = meanCrossEntropy(g, logits, t);
  g.output(ce.loss, 'loss', DataType.FLOAT, []);
  // The input gradient of the images is not needed.
  backpropagate(backward, ce.cotangent);
  for (const p of params) g.output(grads.get(p.name) as string, `grad_${p.name}`, DataType.FLOAT, p.dims);
  return { model: encodeModel(g.build('train_step')), params, dropouts };
}

/**
 * The attack graph of `plan`: inputs x [N, s, s, 3], y [N, k] one-hot label rows, the params
 * (every stride-1 conv with its flipped copy) and the linfStep head's clean, eps and step; outputs
 * logits, `grad`, the input gradient of untargeted CE in eval mode (what adversarial-plan.ts's tfjs
 * attack differentiates), and `adv`, x after one projected sign step of it.
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
