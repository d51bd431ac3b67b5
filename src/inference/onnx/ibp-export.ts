/**
 * IBP training's step (Gowal et al. 2018) as one ONNX graph: the loss src/inference/ibp.ts and
 * data-parallel.ts's planLoss compute on tfjs,
 *
 *   κ · CE(clean logits, target rows t) + (1 − κ) · CE(−m, one-hot y),
 *
 * m [N, k] the lower bounds of z_y − z_j over the L∞ box of radius eps around each image clipped
 * to [0, 1], with the last Dense layer folded into the margin (elidedMarginBounds: m_y = 0), and
 * its gradient w.r.t. every weight. eps and κ are scalar inputs (they ramp during training).
 *
 * The clean half is train-export.ts's forward pass and reverse pass (dropout by masks, as tfjs's
 * training-mode logits); the bounds run in eval mode (dropout is the identity, as in ibp.ts) on
 * the same weight inputs. Intervals are centre μ and radius r:
 *
 *   affine (conv, dense, rescaling)  μ' = Wμ + b, r' = |W| r;  dW = dμ'·μᵀ + sgn(W) ⊙ dr'·rᵀ
 *                                    (sgn as 1[W > 0] − 1[W < 0]), dμ = Wᵀdμ', dr = |W|ᵀdr'
 *   monotone (ReLU, max pooling f)   l = μ − r, u = μ + r, μ' = (f(l) + f(u)) / 2,
 *                                    r' = (f(u) − f(l)) / 2, each endpoint with f's own backward
 *   elided last layer (W [d, k])     D[n, :, j] = w_y − w_j,  m = Σ_d D μ − Σ_d |D| r + b_y − b_j
 *
 * The conv gradients are conv-grad.ts's (any stride), the pooling and flattening backward
 * export.ts's.
 */
import { GraphBuilder } from './graph';
import { Unsupported } from './layers';
import type { Plan, PlanOp } from './layers';
import { Backward, emitOp } from './export';
import { convInputGrad, convOutputSize, convWeightGrad } from './conv-grad';
import { backpropagate, meanCrossEntropy, ParamOp, TrainGraph, TrainParam, weightInputGraph } from './train-export';
import { DataType, encodeModel } from './proto';

/** An interval as centre and radius, both NCHW (or [N, features] after flattening). */
interface Box {
  mu: string;
  r: string;
}

/** The gradient of (μ, r) before an op from the gradient after it; null below the first weight. */
type BoxBackward = (d: Box) => Box | null;

/** The weight inputs of one conv or dense layer (the clean pass made them). */
interface LayerInputs {
  w: string;
  b: string | null;
  flipped: string | null;
}

/** Accumulates weight gradients: several terms for one weight add up. */
class GradSums {
  private readonly sums = new Map<string, string>();
  constructor(private readonly g: GraphBuilder) {}
  add(name: string, v: string): void {
    const had = this.sums.get(name);
    this.sums.set(name, had ? this.g.op('Add', [had, v]) : v);
  }
  get(name: string): string | undefined {
    return this.sums.get(name);
  }
}

function layerInputs(params: TrainParam[]): Map<string, LayerInputs> {
  const out = new Map<string, LayerInputs>();
  for (const p of params) {
    const l = out.get(p.layer) ?? { w: '', b: null, flipped: null };
    if (p.role === 'kernel') Object.assign(l, { w: p.name, flipped: p.flipped ?? null });
    else l.b = p.name;
    out.set(p.layer, l);
  }
  return out;
}

/** 1[v > 0] − 1[v < 0]: exact at every magnitude (no FLT_EPSILON cut-off), 0 only at 0. */
function signOf(g: GraphBuilder, v: string): string {
  const cast = (t: string) => g.op('Cast', [t], { to: DataType.FLOAT });
  return g.op('Sub', [cast(g.op('Greater', [v, g.scalar(0)])), cast(g.op('Less', [v, g.scalar(0)]))]);
}

const half = (g: GraphBuilder, v: string) => g.op('Mul', [v, g.scalar(0.5)]);

/** One value's recorded backward steps, last first. */
const back = (list: Backward[], d: string): string => list.reduceRight((acc, step) => step(acc), d);

/** The eps box around x [N, s, s, 3] clipped to [0, 1], as NCHW centre and radius (ibp.ts's inputBox). */
function inputBox(g: GraphBuilder, x: string, eps: string): Box {
  const clip = (v: string) => g.op('Clip', [v, g.scalar(0), g.scalar(1)]);
  const lo = clip(g.op('Sub', [x, eps])),
    hi = clip(g.op('Add', [x, eps]));
  const nchw = (v: string) => g.op('Transpose', [v], { perm: [0, 3, 1, 2] });
  return { mu: nchw(half(g, g.op('Add', [lo, hi]))), r: nchw(half(g, g.op('Sub', [hi, lo]))) };
}

/**
 * A monotone op f on the box through its endpoints; `f` emits the op on one value and pushes its
 * backward (the ReLU mask, the pooling's unpooling) onto the list it is given.
 */
function monotone(g: GraphBuilder, b: Box, f: (v: string, backward: Backward[]) => string): { box: Box; backward: BoxBackward } {
  const [bl, bu]: Backward[][] = [[], []];
  const lo = f(g.op('Sub', [b.mu, b.r]), bl),
    hi = f(g.op('Add', [b.mu, b.r]), bu);
  return {
    box: { mu: half(g, g.op('Add', [lo, hi])), r: half(g, g.op('Sub', [hi, lo])) },
    backward: (d) => {
      const dl = back(bl, half(g, g.op('Sub', [d.mu, d.r]))),
        du = back(bu, half(g, g.op('Add', [d.mu, d.r])));
      return { mu: g.op('Add', [dl, du]), r: g.op('Sub', [du, dl]) };
    },
  };
}

/** Both halves of the box through a linear op with nonnegative coefficients (flattening, average pooling). */
function nonnegativeLinear(b: Box, f: (v: string, backward: Backward[]) => string): { box: Box; backward: BoxBackward } {
  const [bm, br]: Backward[][] = [[], []];
  const box = { mu: f(b.mu, bm), r: f(b.r, br) };
  return { box, backward: (d) => ({ mu: back(bm, d.mu), r: back(br, d.r) }) };
}

/** A conv or dense layer on the box (not the last layer): μ' = Wμ + b, r' = |W| r, and the weight gradients. */
function affineParamOp(
  g: GraphBuilder,
  op: ParamOp,
  b: Box,
  shape: number[],
  inputs: LayerInputs,
  needInputGrad: boolean,
  grads: GradSums,
): { box: Box; shape: number[]; backward: BoxBackward } {
  const { w, b: bias, flipped } = inputs;
  const absW = g.op('Abs', [w]);
  const sgnW = signOf(g, w);
  const sumOver = (d: string, axes: number[]) => g.op('ReduceSum', [d, g.int64s('axes', axes)], { keepdims: 0 });
  if (op.kind === 'dense') {
    const box = { mu: g.op('Gemm', bias ? [b.mu, w, bias] : [b.mu, w]), r: g.op('Gemm', [b.r, absW]) };
    return {
      box,
      shape: [op.units],
      backward: (d) => {
        grads.add(w, g.op('Add', [g.op('Gemm', [b.mu, d.mu], { transA: 1 }), g.op('Mul', [sgnW, g.op('Gemm', [b.r, d.r], { transA: 1 })])]));
        if (bias) grads.add(bias, sumOver(d.mu, [0]));
        return needInputGrad ? { mu: g.op('Gemm', [d.mu, w], { transB: 1 }), r: g.op('Gemm', [d.r, absW], { transB: 1 }) } : null;
      },
    };
  }
  const [cout, , kh, kw] = op.wdims;
  const attrs = { kernel_shape: [kh, kw], strides: op.strides, pads: op.pads };
  const box = { mu: g.op('Conv', bias ? [b.mu, w, bias] : [b.mu, w], attrs), r: g.op('Conv', [b.r, absW], attrs) };
  const inHW: [number, number] = [shape[1], shape[2]];
  const outHW = convOutputSize(op, shape[1], shape[2]);
  return {
    box,
    shape: [cout, ...outHW],
    backward: (d) => {
      const dw = g.op('Add', [convWeightGrad(g, b.mu, d.mu, op, inHW, outHW), g.op('Mul', [sgnW, convWeightGrad(g, b.r, d.r, op, inHW, outHW)])]);
      grads.add(w, dw);
      if (bias) grads.add(bias, sumOver(d.mu, [0, 2, 3]));
      if (!needInputGrad) return null;
      const absFlipped = flipped ? g.op('Abs', [flipped]) : null;
      return { mu: convInputGrad(g, d.mu, op, w, flipped, inHW, outHW), r: convInputGrad(g, d.r, op, absW, absFlipped, inHW, outHW) };
    },
  };
}

/**
 * The elided margin bounds m [N, k] of the last (linear) Dense layer W [d, k] over the box of its
 * input h, and the backward from dm (the gradients of W and b, and of h's box).
 */
function elidedMargins(g: GraphBuilder, b: Box, y: string, inputs: LayerInputs, grads: GradSums): { margins: string; backward: (dm: string) => Box } {
  const { w, b: bias } = inputs;
  const axis = (a: number) => g.int64s('axes', [a]);
  const wy = g.op('Gemm', [y, w], { transB: 1 }); // [n, d]: w_y per image
  const dMat = g.op('Sub', [g.op('Unsqueeze', [wy, axis(2)]), g.op('Unsqueeze', [w, axis(0)])]); // [n, d, k], exactly 0 at j = y
  const absD = g.op('Abs', [dMat]);
  const rowTimes = (v: string, m: string) => g.op('Squeeze', [g.op('MatMul', [g.op('Unsqueeze', [v, axis(1)]), m]), axis(1)]); // Σ_d v[n, d]·m[n, d, j]
  let margins = g.op('Sub', [rowTimes(b.mu, dMat), rowTimes(b.r, absD)]);
  if (bias) {
    const by = g.op('ReduceSum', [g.op('Mul', [y, bias]), axis(1)], { keepdims: 1 });
    margins = g.op('Add', [margins, g.op('Sub', [by, bias])]);
  }
  return {
    margins,
    backward: (dmIn) => {
      // m_y is identically 0 (w_y − w_y): its cotangent reaches no weight.
      const dm = g.op('Mul', [dmIn, g.op('Sub', [g.scalar(1), y])]);
      const rowSum = g.op('ReduceSum', [dm, axis(1)], { keepdims: 1 });
      const a = g.op('Sub', [g.op('Mul', [rowSum, y]), dm]); // ∂/∂(centre logits): S·e_y − dm
      const p = g.op('Mul', [signOf(g, dMat), g.op('Unsqueeze', [dm, axis(1)])]); // sgn(D) ⊙ dm, [n, d, k]
      const q = g.op('Mul', [b.r, g.op('ReduceSum', [p, axis(2)], { keepdims: 0 })]); // [n, d]
      const direct = g.op('ReduceSum', [g.op('Mul', [p, g.op('Unsqueeze', [b.r, axis(2)])]), axis(0)], { keepdims: 0 }); // [d, k]
      // dW = μᵀa − qᵀy + Σ_n r ⊙ p
      grads.add(w, g.op('Add', [g.op('Sub', [g.op('Gemm', [b.mu, a], { transA: 1 }), g.op('Gemm', [q, y], { transA: 1 })]), direct]));
      if (bias) grads.add(bias, g.op('ReduceSum', [a, axis(0)], { keepdims: 0 }));
      const dr = g.op('Neg', [g.op('Squeeze', [g.op('MatMul', [absD, g.op('Unsqueeze', [dm, axis(2)])]), axis(2)])]);
      return { mu: g.op('Gemm', [a, w], { transB: 1 }), r: dr };
    },
  };
}

/** The box through every op of `plan` but the last; returns the last layer's input box and the backward steps. */
function intervalForward(g: GraphBuilder, plan: Plan, box: Box, inputs: Map<string, LayerInputs>, grads: GradSums): { box: Box; backward: BoxBackward[] } {
  const backward: BoxBackward[] = [];
  const firstParam = plan.ops.findIndex((op) => op.kind === 'conv' || op.kind === 'dense');
  let shape = [3, plan.inputSize, plan.inputSize];
  let outShape = shape;
  // export.ts's op on one value (an endpoint, or μ or r): its backward goes onto `list`.
  const single = (op: PlanOp) => (v: string, list: Backward[]) => {
    const r = emitOp(g, op, v, shape, list, { poolNext: false, reluBefore: false });
    outShape = r.shape;
    return r.v;
  };
  const apply = (step: { box: Box; backward: BoxBackward }) => {
    backward.push(step.backward);
    box = step.box;
  };
  plan.ops.slice(0, -1).forEach((op, i) => {
    switch (op.kind) {
      case 'conv':
      case 'dense': {
        const r = affineParamOp(g, op, box, shape, inputs.get(op.layer) as LayerInputs, i > firstParam, grads);
        apply(r);
        shape = r.shape;
        if (op.relu) apply(monotone(g, box, single({ kind: 'relu' })));
        return;
      }
      case 'affine': {
        const dims = op.spatial ? [op.scale.length, 1, 1] : [op.scale.length];
        const scale = g.floats('scale', op.scale, dims),
          absScale = g.floats('abs_scale', op.scale.map(Math.abs), dims);
        apply({
          box: { mu: g.op('Add', [g.op('Mul', [box.mu, scale]), g.floats('offset', op.offset, dims)]), r: g.op('Mul', [box.r, absScale]) },
          backward: (d) => ({ mu: g.op('Mul', [d.mu, scale]), r: g.op('Mul', [d.r, absScale]) }),
        });
        return;
      }
      case 'relu':
      case 'maxpool':
        apply(monotone(g, box, single(op)));
        shape = outShape;
        return;
      case 'avgpool':
      case 'flatten':
        apply(nonnegativeLinear(box, single(op)));
        shape = outShape;
        return;
      case 'dropout':
        return; // the identity at inference, as ibp.ts bounds it
      default:
        throw new Unsupported(`IBP training through a ${op.kind} op`);
    }
  });
  return { box, backward };
}

/**
 * IBP training's step graph of a training plan. Inputs: x [N, s, s, 3], t [N, k] target rows of
 * the clean CE (one-hot or label-smoothed), y [N, k] one-hot labels, the scalars eps and kappa,
 * the params, the dropout masks. Outputs: loss, logits (clean, with dropout), margins (the elided
 * lower bounds m) and grad_<param> for every param.
 */
export function exportIbpTrainingOnnx(plan: Plan): TrainGraph {
  const last = plan.ops[plan.ops.length - 1];
  if (last?.kind !== 'dense' || last.relu) throw new Unsupported('IBP training of a model whose last layer is not a linear Dense layer');
  const cleanGrads = new Map<string, string>();
  const { g, rows: t, logits, backward, params, dropouts } = weightInputGraph(plan, 't', cleanGrads);
  const k = plan.numClasses;
  const y = g.input('y', DataType.FLOAT, ['N', k]);
  const eps = g.input('eps', DataType.FLOAT, []),
    kappa = g.input('kappa', DataType.FLOAT, []);
  const robustWeight = g.op('Sub', [g.scalar(1), kappa]);

  const clean = meanCrossEntropy(g, logits, t);
  backpropagate(backward, g.op('Mul', [clean.cotangent, kappa]));

  const grads = new GradSums(g);
  const inputs = layerInputs(params);
  const chain = intervalForward(g, plan, inputBox(g, 'x', eps), inputs, grads);
  const elided = elidedMargins(g, chain.box, y, inputs.get(last.layer) as LayerInputs, grads);
  const robust = meanCrossEntropy(g, g.op('Neg', [elided.margins]), y);
  // dm = −(1 − κ)·∂CE/∂(−m); then back through the chain as far as the first weight.
  let d: Box | null = elided.backward(g.op('Neg', [g.op('Mul', [robust.cotangent, robustWeight])]));
  for (let i = chain.backward.length - 1; i >= 0 && d; i--) d = chain.backward[i](d);

  g.output(g.op('Add', [g.op('Mul', [clean.loss, kappa]), g.op('Mul', [robust.loss, robustWeight])]), 'loss', DataType.FLOAT, []);
  g.output(elided.margins, 'margins', DataType.FLOAT, ['N', k]);
  for (const p of params) {
    const sum = [cleanGrads.get(p.name), grads.get(p.name)].filter((v): v is string => v !== undefined);
    g.output(sum.length === 2 ? g.op('Add', sum) : sum[0], `grad_${p.name}`, DataType.FLOAT, p.dims);
  }
  return { model: encodeModel(g.build('ibp_train_step')), params, dropouts };
}
