/**
 * Square Attack, L2 (Andriushchenko et al. 2020), as in AutoAttack's reference code: the start is a
 * 5×5 grid of square "eta" patterns (a centre-weighted bump, positive on one half, negative on the
 * other) with a random sign per image and channel, scaled to L2 = eps; each query moves the mass
 * of a second random window into the first one, redrawn as a fresh eta pattern, keeping the
 * image's total L2 at eps, and is kept when the logit margin drops. Windows shrink on the same
 * schedule as the L∞ attack (squareFraction). The perturbation is rescaled to L2 = eps before
 * clipping to [0, 1], so the budget holds by construction.
 */
import { tf } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { createRng } from '../data/random';
import { marginsFromLogits } from './common';
import { squareFraction } from './square';

export interface SquareL2Options {
  eps: number;
  /** Proposals per image (AutoAttack: 5000). */
  queries: number;
  /** Initial window fraction (AutoAttack: 0.8) and whether its schedule is rescaled to `queries`. */
  pInit: number;
  rescaleSchedule: boolean;
  seed: number;
}

/** The centre-weighted rectangle of the reference (eta_rectangles), unit L2, rows × cols. */
function etaRectangle(rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  const xc = Math.floor(rows / 2) + 1,
    yc = Math.floor(cols / 2) + 1;
  let r0 = xc - 1,
    c0 = yc - 1;
  for (let k = 0; k < Math.max(xc, yc); k++, r0--, c0--) {
    for (let r = Math.max(r0, 0); r < Math.min(r0 + 2 * k + 1, rows); r++) {
      for (let c = Math.max(0, c0); c < Math.min(c0 + 2 * k + 1, cols); c++) out[r * cols + c] += 1 / (k + 1) ** 2;
    }
  }
  return unit(out);
}

function unit(v: Float64Array): Float64Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  return v.map((x) => x / n);
}

/** An s×s eta pattern: the upper half +rectangle, the lower −rectangle, transposed at random. */
export function etaPattern(s: number, rand: () => number): Float64Array {
  const top = Math.floor(s / 2);
  const a = etaRectangle(top, s),
    b = etaRectangle(s - top, s);
  const out = new Float64Array(s * s);
  out.set(a, 0);
  for (let i = 0; i < b.length; i++) out[top * s + i] = -b[i];
  const u = unit(out);
  if (rand() > 0.5) return u.map((_, i) => u[(i % s) * s + Math.floor(i / s)]);
  return u;
}

/** Scales each image's perturbation to L2 = eps and clips x + δ to [0, 1]. */
function place(x: Float32Array, delta: Float64Array, i: number, d: number, eps: number, out: Float32Array, o: number): void {
  let s = 0;
  for (let p = i * d; p < (i + 1) * d; p++) s += delta[p] * delta[p];
  const k = eps / (Math.sqrt(s) + 1e-12);
  for (let p = 0; p < d; p++) {
    const v = x[i * d + p] + delta[i * d + p] * k;
    out[o + p] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

/** Square-L2 on `n` images x (HWC floats in [0, 1], labels y); returns the images and fooled flags. */
export async function squareL2(
  model: Classifier,
  x: Float32Array,
  y: Int32Array,
  o: SquareL2Options,
): Promise<{ adversarial: Float32Array; fooled: Uint8Array }> {
  const n = y.length,
    h = model.inputSize,
    w = h,
    ch = 3,
    d = h * w * ch;
  const rand = createRng(o.seed + 11);
  const sign = () => (rand() < 0.5 ? -1 : 1);
  const at = (i: number, r: number, c: number, k: number) => i * d + (r * w + c) * ch + k;
  const margins = async (imgs: Float32Array, m: number, cls: Int32Array) => {
    const xt = tf.tensor4d(imgs, [m, h, w, ch]);
    const z = await inferLogits(model, xt);
    const v = (await z.data()) as Float32Array;
    tf.dispose([xt, z]);
    return marginsFromLogits(v, m, model.numClasses, cls, false);
  };
  // The 5×5 grid start.
  const delta = new Float64Array(n * d);
  const s0 = Math.floor(h / 5),
    off = Math.floor((h - s0 * 5) / 2);
  for (let gr = 0; gr < Math.floor(h / s0); gr++) {
    for (let gc = 0; gc < Math.floor(w / s0); gc++) {
      const e = etaPattern(s0, rand);
      for (let i = 0; i < n; i++)
        for (let k = 0; k < ch; k++) {
          const sg = sign();
          for (let r = 0; r < s0; r++)
            for (let c = 0; c < s0; c++) {
              const rr = off + gr * s0 + r,
                cc = off + gc * s0 + c;
              if (rr < h && cc < w) delta[at(i, rr, cc, k)] += e[r * s0 + c] * sg;
            }
        }
    }
  }
  const best = new Float32Array(n * d);
  for (let i = 0; i < n; i++) place(x, delta, i, d, o.eps, best, i * d);
  const margin = await margins(best, n, y);
  for (let it = 0; it < o.queries; it++) {
    const active: number[] = [];
    for (let i = 0; i < n; i++) if (margin[i] > 0) active.push(i);
    if (!active.length) break;
    let s = Math.max(Math.round(Math.sqrt(squareFraction(o.pInit, it, o.queries, o.rescaleSchedule) * h * w)), 3);
    if (s % 2 === 0) s++;
    s = Math.min(s, h - 1);
    const v1 = Math.floor(rand() * (h - s)),
      u1 = Math.floor(rand() * (w - s));
    const v2 = Math.floor(rand() * (h - s)),
      u2 = Math.floor(rand() * (w - s));
    const e = etaPattern(s, rand);
    const inWin = (r: number, c: number, v: number, u: number) => r >= v && r < v + s && c >= u && c < u + s;
    const cand = new Float32Array(active.length * d);
    const newDelta = new Float64Array(active.length * d);
    active.forEach((i, j) => {
      // Current perturbation (of the kept image) and its norms: whole image, both windows, window 1 per channel.
      const cur = new Float64Array(d);
      let total = 0,
        windows = 0;
      for (let p = 0; p < d; p++) {
        cur[p] = best[i * d + p] - x[i * d + p];
        total += cur[p] ** 2;
      }
      const win1 = new Float64Array(ch);
      for (let r = 0; r < h; r++)
        for (let c = 0; c < w; c++) {
          const a = inWin(r, c, v1, u1),
            b = inWin(r, c, v2, u2);
          for (let k = 0; k < ch; k++) {
            const q = cur[(r * w + c) * ch + k] ** 2;
            if (a || b) windows += q;
            if (a) win1[k] += q;
          }
        }
      const budget = Math.sqrt(Math.max(o.eps ** 2 - total, 0) / ch + windows);
      const nd = cur;
      for (let k = 0; k < ch; k++) {
        const sg = sign(),
          n1 = Math.sqrt(win1[k]) + 1e-12;
        const patch = new Float64Array(s * s);
        let pn = 0;
        for (let r = 0; r < s; r++)
          for (let c = 0; c < s; c++) {
            const v = e[r * s + c] * sg + cur[((v1 + r) * w + u1 + c) * ch + k] / n1;
            patch[r * s + c] = v;
            pn += v * v;
          }
        pn = Math.sqrt(pn) + 1e-12;
        for (let r = v2; r < v2 + s; r++) for (let c = u2; c < u2 + s; c++) nd[(r * w + c) * ch + k] = 0;
        for (let r = 0; r < s; r++) for (let c = 0; c < s; c++) nd[((v1 + r) * w + u1 + c) * ch + k] = (patch[r * s + c] / pn) * budget;
      }
      newDelta.set(nd, j * d);
    });
    const xs = new Float32Array(active.length * d);
    active.forEach((i, j) => xs.set(x.subarray(i * d, (i + 1) * d), j * d));
    for (let j = 0; j < active.length; j++) place(xs, newDelta, j, d, o.eps, cand, j * d);
    const m = await margins(
      cand,
      active.length,
      Int32Array.from(active, (i) => y[i]),
    );
    active.forEach((i, j) => {
      if (m[j] < margin[i] || m[j] <= 0) {
        margin[i] = m[j];
        best.set(cand.subarray(j * d, (j + 1) * d), i * d);
      }
    });
  }
  return { adversarial: best, fooled: Uint8Array.from(margin, (v) => (v <= 0 ? 1 : 0)) };
}
