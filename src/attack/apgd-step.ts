/**
 * APGD's step on flat float32 rows (HWC per image), as plain loops: the same float32 operations,
 * in the same order, as the tfjs ops it replaces (sign, the η step, the momentum blend, the L∞ or
 * L2 projection), each result rounded to float32 with Math.fround, so the iterates are those the
 * tensor version computed. On a native engine the tfjs-wasm kernels of those steps (one core,
 * a fresh tensor per op and broadcast) cost about as much as the engine's gradient itself.
 */
const f = Math.fround;

/** sign(g) with sign(0) = 0 (signExact), or g/(‖g‖₂ + 1e-12) per row, times η of the row. */
function direction(g: Float32Array, o: number, d: number, norm: 'linf' | 'l2', eta: number, out: Float32Array): void {
  if (norm === 'linf') {
    for (let p = 0; p < d; p++) {
      const v = g[o + p];
      out[p] = v > 0 ? eta : v < 0 ? -eta : 0;
    }
    return;
  }
  const den = f(l2(g, o, d) + f(1e-12));
  for (let p = 0; p < d; p++) out[p] = f(eta * f(g[o + p] / den));
}

/** ‖v‖₂ of one row, summed in float32 in order (as the tfjs Sum kernel does). */
function l2(v: ArrayLike<number>, o: number, d: number): number {
  let s = 0;
  for (let p = 0; p < d; p++) s = f(s + f(v[o + p] * v[o + p]));
  return f(Math.sqrt(s));
}

const clip = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** v (one row, in place) projected on the eps ball of the norm around x, then into [0, 1]. */
function project(v: Float32Array, x: Float32Array, o: number, norm: 'linf' | 'l2', eps: number): void {
  const d = v.length;
  if (norm === 'linf') {
    const e = f(eps);
    for (let p = 0; p < d; p++) v[p] = clip(f(x[o + p] + clip(f(v[p] - x[o + p]), -e, e)), 0, 1);
    return;
  }
  for (let p = 0; p < d; p++) v[p] = f(v[p] - x[o + p]);
  const scale = Math.min(1, f(f(eps * (1 - 1e-6)) / Math.max(l2(v, 0, d), f(1e-12))));
  for (let p = 0; p < d; p++) v[p] = clip(f(x[o + p] + f(v[p] * scale)), 0, 1);
}

export interface StepRows {
  /** Clean images, current iterates, previous iterates and the gradients at the current ones. */
  x: Float32Array;
  adv: Float32Array;
  prev: Float32Array;
  grad: Float32Array;
  /** η per row. */
  eta: Float32Array;
  rows: number;
}

/**
 * The next iterate of every row: z = P(adv + η·dir), then (after the first step)
 * P(adv + α(z − adv) + (1 − α)(adv − prev)). Returns a new array; the inputs are left as they are.
 */
export function apgdStep(s: StepRows, norm: 'linf' | 'l2', eps: number, momentum: number, first: boolean): Float32Array {
  const d = s.adv.length / s.rows;
  const out = new Float32Array(s.adv.length);
  const z = new Float32Array(d);
  const a = f(momentum),
    b = f(1 - momentum);
  for (let r = 0, o = 0; r < s.rows; r++, o += d) {
    direction(s.grad, o, d, norm, f(s.eta[r]), z);
    for (let p = 0; p < d; p++) z[p] = f(s.adv[o + p] + z[p]);
    project(z, s.x, o, norm, eps);
    if (!first) {
      for (let p = 0; p < d; p++) {
        const c = s.adv[o + p];
        z[p] = f(f(c + f(f(z[p] - c) * a)) + f(f(c - s.prev[o + p]) * b));
      }
      project(z, s.x, o, norm, eps);
    }
    out.set(z, o);
  }
  return out;
}
