/**
 * The attack objectives' cotangents on the logits as ONNX nodes: the same definitions, op for op,
 * as src/inference/objective.ts (CE with its underflow-free fallback, margin, DLR), so the fused
 * graph's gradient is the one tfjs computes.
 */
import type { AttackLoss } from '../objective';
import type { GraphBuilder } from './graph';

const CE_UNDERFLOW = 1e-30;

/** The values a cotangent is computed from: logits z [N, K] and float one-hot rows y (and t). */
export interface CotangentInputs {
  z: string;
  y: string;
  t: string | null;
  numClasses: number;
}

function rowSum(g: GraphBuilder, v: string): string {
  return g.op('ReduceSum', [v, g.int64s('axis', [1])], { keepdims: 1 });
}

/** One-hot rows of argmax over z with the class `exclude` (one-hot) masked out. */
function argmaxOtherOneHot(g: GraphBuilder, z: string, exclude: string, k: number): string {
  const masked = g.op('Sub', [z, g.op('Mul', [exclude, g.scalar(1e30)])]);
  return oneHot(g, g.op('ArgMax', [masked], { axis: 1, keepdims: 0 }), k);
}

function oneHot(g: GraphBuilder, indices: string, k: number): string {
  return g.op('OneHot', [indices, g.int64s('depth', [k], []), g.floats('onoff', [0, 1], [2])], { axis: -1 });
}

function softmaxOthers(g: GraphBuilder, z: string, exclude: string): string {
  const masked = g.op('Sub', [z, g.op('Mul', [exclude, g.scalar(1e30)])]);
  return g.op('Mul', [g.op('Softmax', [masked], { axis: 1 }), g.op('Sub', [g.scalar(1), exclude])]);
}

/** softmax(z) − e_c with the c entry as −Σ_{j≠c} p_j (objective.ts: p_c − 1 cancels in float32). */
function softmaxMinusOneHot(g: GraphBuilder, z: string, cls: string): string {
  const others = g.op('Mul', [g.op('Softmax', [z], { axis: 1 }), g.op('Sub', [g.scalar(1), cls])]);
  return g.op('Sub', [others, g.op('Mul', [cls, rowSum(g, others)])]);
}

function ce(g: GraphBuilder, z: string, cls: string, targeted: boolean): string {
  const u = softmaxMinusOneHot(g, z, cls);
  const plain = targeted ? g.op('Neg', [u]) : u;
  const others = softmaxOthers(g, z, cls);
  const rescaled = targeted ? g.op('Sub', [cls, others]) : g.op('Sub', [others, cls]);
  const biggest = g.op('ReduceMax', [g.op('Abs', [plain])], { axes: [1], keepdims: 1 });
  return g.op('Where', [g.op('Less', [biggest, g.scalar(CE_UNDERFLOW)]), rescaled, plain]);
}

function margin(g: GraphBuilder, z: string, cls: string, targeted: boolean, k: number): string {
  const other = argmaxOtherOneHot(g, z, cls, k);
  return targeted ? g.op('Sub', [cls, other]) : g.op('Sub', [other, cls]);
}

/** One-hot rows of the classes ranked r (0 = largest logit), for each r asked. */
function rankedOneHots(g: GraphBuilder, z: string, ranks: number[], k: number): string[] {
  const m = Math.min(k, Math.max(...ranks) + 1);
  const [, indices] = g.ops('TopK', [z, g.int64s('k', [m])], { axis: 1, largest: 1, sorted: 1 }, 2);
  return ranks.map((r) => oneHot(g, g.op('Gather', [indices, g.int64s('rank', [Math.min(r, m - 1)], [])], { axis: 1 }), k));
}

function dlr(g: GraphBuilder, { z, y, t, numClasses: k }: CotangentInputs): string {
  const zy = rowSum(g, g.op('Mul', [z, y]));
  let num: string, dNum: string, dDen: string;
  if (t) {
    const [p1, p3, p4] = rankedOneHots(g, z, [0, 2, 3], k);
    dDen = g.op('Sub', [p1, g.op('Div', [g.op('Add', [p3, p4]), g.scalar(2)])]);
    num = g.op('Sub', [zy, rowSum(g, g.op('Mul', [z, t]))]);
    dNum = g.op('Sub', [y, t]);
  } else {
    const [p1, p3] = rankedOneHots(g, z, [0, 2], k);
    const other = argmaxOtherOneHot(g, z, y, k);
    num = g.op('Sub', [zy, rowSum(g, g.op('Mul', [z, other]))]);
    dNum = g.op('Sub', [y, other]);
    dDen = g.op('Sub', [p1, p3]);
  }
  const d = g.op('Add', [rowSum(g, g.op('Mul', [z, dDen])), g.scalar(1e-12)]);
  // objective = −num/d  ⇒  ∂ = −∂num/d + num·∂d/d²
  const first = g.op('Neg', [g.op('Div', [dNum, d])]);
  return g.op('Add', [first, g.op('Mul', [g.op('Div', [num, g.op('Mul', [d, d])]), dDen])]);
}

/** ∂objective/∂z [N, K] for `loss`, as objectiveCotangent computes it. */
export function cotangentNodes(g: GraphBuilder, loss: AttackLoss, inputs: CotangentInputs): string {
  const { z, y, t, numClasses } = inputs;
  if (loss === 'dlr') return dlr(g, inputs);
  if (loss === 'margin') return margin(g, z, t ?? y, t !== null, numClasses);
  return ce(g, z, t ?? y, t !== null);
}
