/**
 * The two gradients of a convolution as ONNX nodes, at any stride, for the graphs that take the
 * weights as inputs (train-export.ts, ibp-export.ts) and the fixed-weight ones (export.ts):
 *
 *   weight  dW[o, c, i, j] = Σ_{n,h,w} d[n, o, h, w] · x_pad[n, c, s·h + i, s·w + j]. With
 *           i = s·i' + a, that is x_pad's phase (a, b) (the stepped slice of rows a, a + s, … and
 *           columns b, b + s, …) at (h + i', w + j'): a stride-1 correlation of the phase. On a
 *           grid of Hq × Wq (Hq = oh + ⌈kh/s⌉ − 1), both flattened channel-major, each offset is a
 *           contiguous shift of one flat array, so dW[:, :, i, j] is one Gemm over the batch
 *           (convolution as Conv(x, d as the filter) runs onnxruntime's im2col on a 32×32 kernel,
 *           ten times slower). At stride 1 there is one phase and no slice: the grid is x_pad's.
 *   input   at stride 1 a Conv with the flipped, transposed weight (onnxruntime's blocked NCHWc
 *           kernels: the backward costs what the forward costs); strided, a ConvTranspose of the
 *           weight itself, with output_padding for the rows the stride dropped.
 */
import type { GraphBuilder } from './graph';
import type { PlanOp } from './layers';
import { Unsupported } from './layers';

export type ConvOp = Extract<PlanOp, { kind: 'conv' }>;

/** Output height and width of `op` on an input of height h and width w. */
export function convOutputSize(op: ConvOp, h: number, w: number): [number, number] {
  const [, , kh, kw] = op.wdims;
  const [pt, pl, pb, pr] = op.pads;
  return [Math.floor((h + pt + pb - kh) / op.strides[0]) + 1, Math.floor((w + pl + pr - kw) / op.strides[1]) + 1];
}

/** x [N, cin, H, W] (or d) as [c, N·rows·cols] after zero padding: the channel-major flat layout of the shifted Gemms. */
function channelMajor(
  g: GraphBuilder,
  t: string,
  c: number,
  pads: number[],
  steps: { start: [number, number]; rows: number; cols: number; s: [number, number] } | null,
): string {
  let v = g.op('Pad', [g.op('Transpose', [t], { perm: [1, 0, 2, 3] }), g.int64s('pads', pads)]);
  if (steps) {
    const { start, rows, cols, s } = steps;
    const ends = [start[0] + s[0] * rows, start[1] + s[1] * cols];
    v = g.op('Slice', [v, g.int64s('start', start), g.int64s('end', ends), g.int64s('axes', [2, 3]), g.int64s('steps', s)]);
  }
  return g.op('Reshape', [v, g.int64s('shape', [c, -1])]);
}

/** dW [cout, cin, kh, kw] of the (ungrouped) convolution `op` of x [N, cin, H, W] with output gradient d [N, cout, oh, ow]. */
export function convWeightGrad(g: GraphBuilder, x: string, d: string, op: ConvOp, [h, w]: [number, number], [oh, ow]: [number, number]): string {
  if (op.group !== 1) throw new Unsupported(`${op.layer}: training a grouped convolution`);
  const [cout, cin, kh, kw] = op.wdims;
  const [pt, pl] = op.pads;
  const [sh, sw] = op.strides;
  const [qh, qw] = [Math.ceil(kh / sh), Math.ceil(kw / sw)];
  const [hq, wq] = [oh + qh - 1, ow + qw - 1];
  // Zero rows and columns up to sh·hq × sw·wq: every phase then has hq × wq elements (a stride-1
  // padding is exactly op.pads; extra rows only ever meet d's zero padding).
  const xPads = [0, 0, pt, pl, 0, 0, Math.max(0, sh * hq - h - pt), Math.max(0, sw * wq - w - pl)];
  const strided = sh !== 1 || sw !== 1;
  const phases = new Map<string, string>();
  const phase = (a: number, b: number): string => {
    const key = `${a},${b}`;
    let v = phases.get(key);
    if (!v) {
      v = channelMajor(g, x, cin, xPads, strided ? { start: [a, b], rows: hq, cols: wq, s: [sh, sw] } : null);
      phases.set(key, v);
    }
    return v;
  };
  const df = channelMajor(g, d, cout, [0, 0, 0, 0, 0, 0, hq - oh, wq - ow], null);
  // Only the first P − maxShift positions: every shift stays inside the flat array.
  const maxShift = (qh - 1) * wq + qw - 1;
  const n = g.op('Sub', [g.op('Gather', [g.op('Shape', [df]), g.int64s('one', [1])], { axis: 0 }), g.int64s('shift', [maxShift])]);
  const slice = (t: string, shift: number) =>
    g.op('Slice', [t, g.int64s('start', [shift]), g.op('Add', [n, g.int64s('shift', [shift])]), g.int64s('axis', [1])]);
  const dUsed = slice(df, 0);
  const perOffset: string[] = [];
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const shifted = slice(phase(i % sh, j % sw), Math.floor(i / sh) * wq + Math.floor(j / sw));
      perOffset.push(g.op('Unsqueeze', [g.op('Gemm', [dUsed, shifted], { transB: 1 }), g.int64s('axis', [2])]));
    }
  // [cout, cin, kh·kw] → [cout, cin, kh, kw]
  return g.op('Reshape', [g.op('Concat', perOffset, { axis: 2 }), g.int64s('shape', [cout, cin, kh, kw])]);
}

/**
 * The input gradient [N, cin, H, W] of `op` from d [N, cout, oh, ow]: at stride 1 a Conv with
 * `flipped` (export.ts's backwardWeight of the weight, required there), else a ConvTranspose of `w`.
 */
export function convInputGrad(
  g: GraphBuilder,
  d: string,
  op: ConvOp,
  w: string,
  flipped: string | null,
  [h, wd]: [number, number],
  [oh, ow]: [number, number],
): string {
  const [, , kh, kw] = op.wdims;
  const [pt, pl, pb, pr] = op.pads;
  if (op.strides[0] === 1 && op.strides[1] === 1) {
    if (!flipped) throw new Error(`${op.layer}: a stride-1 input gradient needs the flipped weight`);
    return g.op('Conv', [d, flipped], { kernel_shape: [kh, kw], strides: [1, 1], pads: [kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr], group: op.group });
  }
  const outputPadding = [h - (op.strides[0] * (oh - 1) + kh - pt - pb), wd - (op.strides[1] * (ow - 1) + kw - pl - pr)];
  return g.op('ConvTranspose', [d, w], { kernel_shape: [kh, kw], strides: op.strides, pads: op.pads, group: op.group, output_padding: outputPadding });
}
