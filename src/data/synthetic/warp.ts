/** Warp and compositing: the projective warp of a texture onto a background at 2x supersampling, blur, downsampling, lighting and noise. */
import { SIGN_SPECS, SignShape } from '../classes';
import { Rng, createRng, hashSeed, randRange } from '../random';
import { PI, Pt } from './glyphs';
import { outline } from './geometry';
import { Texture, signTexture, textureSizeFor } from './textures';
import { SceneParams, Work } from './scene';
import { renderBackground } from './backgrounds';

type Mat3 = [number, number, number, number, number, number, number, number, number];

function mul3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) r[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
  }
  return r as Mat3;
}

function inv3(m: Mat3): Mat3 {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  const k = 1 / det;
  return [A * k, -(b * i - c * h) * k, (b * f - c * e) * k, B * k, (a * i - c * g) * k, -(a * f - c * d) * k, C * k, -(a * h - b * g) * k, (a * e - b * d) * k];
}

function apply3(m: Mat3, x: number, y: number): Pt {
  const w = m[6] * x + m[7] * y + m[8];
  return [(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w];
}

/** Homography from unit sign coords to internal pixel coords (pixel centres at i + 0.5). */
export function signHomography(p: SceneParams, shape: SignShape, R: number): Mat3 {
  const c = Math.cos(p.rotation);
  const s = Math.sin(p.rotation);
  // Rotation * [[sx, shear], [0, sy]]
  const m00 = c * p.sx;
  const m01 = c * p.shear - s * p.sy;
  const m10 = s * p.sx;
  const m11 = s * p.shear + c * p.sy;
  const P: Mat3 = [m00, m01, 0, m10, m11, 0, p.px, p.py, 1];
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const [u, v] of outline(shape)) {
    const [x, y] = apply3(P, u, v);
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const k = (p.scale * R) / Math.max(maxX - minX, maxY - minY);
  const tx = R / 2 + p.dx * R - (k * (minX + maxX)) / 2;
  const ty = R / 2 + p.dy * R - (k * (minY + maxY)) / 2;
  return mul3([k, 0, tx, 0, k, ty, 0, 0, 1], P);
}

/**
 * Warps the sign texture into `layer` (R x R premultiplied RGBA, zero outside the
 * sign), with fading and shading applied to the sign's colours.
 */
export function warpSign(tex: Texture, H: Mat3, R: number, p: SceneParams, layer: Float32Array): void {
  layer.fill(0);
  const Hi = inv3(H);
  let x0 = R;
  let x1 = 0;
  let y0 = R;
  let y1 = 0;
  for (const [u, v] of [
    [-1, -1],
    [1, -1],
    [1, 1],
    [-1, 1],
  ] as Pt[]) {
    const [x, y] = apply3(H, u, v);
    x0 = Math.min(x0, Math.floor(x));
    x1 = Math.max(x1, Math.ceil(x));
    y0 = Math.min(y0, Math.floor(y));
    y1 = Math.max(y1, Math.ceil(y));
  }
  x0 = Math.max(0, x0);
  y0 = Math.max(0, y0);
  x1 = Math.min(R - 1, x1);
  y1 = Math.min(R - 1, y1);
  const T = tex.size;
  const td = tex.data;
  const half = T / 2;
  const fade = p.fade;
  const shadeX = Math.cos(p.shadeAngle) * p.shadeAmount * 0.5;
  const shadeY = Math.sin(p.shadeAngle) * p.shadeAmount * 0.5;
  const shade0 = 1 - p.shadeAmount * 0.5;
  for (let y = y0; y <= y1; y++) {
    const py = y + 0.5;
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      const w = Hi[6] * px + Hi[7] * py + Hi[8];
      const u = (Hi[0] * px + Hi[1] * py + Hi[2]) / w;
      const v = (Hi[3] * px + Hi[4] * py + Hi[5]) / w;
      if (u < -1.02 || u > 1.02 || v < -1.02 || v > 1.02) continue;
      const tx = (u + 1) * half - 0.5;
      const ty = (v + 1) * half - 0.5;
      let ix = Math.floor(tx);
      let iy = Math.floor(ty);
      const fx = tx - ix;
      const fy = ty - iy;
      let ix1 = ix + 1;
      let iy1 = iy + 1;
      // Clamp to the edge texels (the texture border is transparent anyway).
      ix = ix < 0 ? 0 : ix > T - 1 ? T - 1 : ix;
      iy = iy < 0 ? 0 : iy > T - 1 ? T - 1 : iy;
      ix1 = ix1 < 0 ? 0 : ix1 > T - 1 ? T - 1 : ix1;
      iy1 = iy1 < 0 ? 0 : iy1 > T - 1 ? T - 1 : iy1;
      const a00 = 4 * (iy * T + ix);
      const a01 = 4 * (iy * T + ix1);
      const a10 = 4 * (iy1 * T + ix);
      const a11 = 4 * (iy1 * T + ix1);
      const w00 = (1 - fx) * (1 - fy);
      const w01 = fx * (1 - fy);
      const w10 = (1 - fx) * fy;
      const w11 = fx * fy;
      const a = td[a00 + 3] * w00 + td[a01 + 3] * w01 + td[a10 + 3] * w10 + td[a11 + 3] * w11;
      if (a <= 0) continue;
      let r = td[a00] * w00 + td[a01] * w01 + td[a10] * w10 + td[a11] * w11;
      let g = td[a00 + 1] * w00 + td[a01 + 1] * w01 + td[a10 + 1] * w10 + td[a11 + 1] * w11;
      let b = td[a00 + 2] * w00 + td[a01 + 2] * w01 + td[a10 + 2] * w10 + td[a11 + 2] * w11;
      if (fade > 0) {
        // Sun-bleached paint: desaturate, then wash towards pale grey (premultiplied).
        const l = 0.3 * r + 0.59 * g + 0.11 * b;
        r += (l - r) * fade * 0.7;
        g += (l - g) * fade * 0.7;
        b += (l - b) * fade * 0.7;
        r += (0.85 * a - r) * fade * 0.3;
        g += (0.85 * a - g) * fade * 0.3;
        b += (0.85 * a - b) * fade * 0.3;
      }
      const sh = shade0 + shadeX * u + shadeY * v;
      const o = 4 * (y * R + x);
      layer[o] = r * sh;
      layer[o + 1] = g * sh;
      layer[o + 2] = b * sh;
      layer[o + 3] = a;
    }
  }
}

/** Grey metal post from the sign centre down to the bottom edge. */
function drawPole(bg: Float32Array, R: number, H: Mat3, rng: Rng): void {
  const [cx, cy] = apply3(H, 0, 0);
  const [ex] = apply3(H, 1, 0);
  const half = Math.max(1, Math.abs(ex - cx) * 0.08);
  const grey = randRange(rng, 0.35, 0.7);
  for (let y = Math.max(0, Math.floor(cy)); y < R; y++) {
    for (let x = Math.max(0, Math.floor(cx - half)); x <= Math.min(R - 1, Math.ceil(cx + half)); x++) {
      const t = (x + 0.5 - (cx - half)) / (2 * half);
      if (t < 0 || t > 1) continue;
      const v = grey * (0.75 + 0.45 * Math.sin(t * PI));
      const i = 3 * (y * R + x);
      bg[i] = v;
      bg[i + 1] = v;
      bg[i + 2] = v * 1.03;
    }
  }
}

/** One separable Gaussian pass over an R x R RGB buffer, edges clamped. */
function blurPass(src: Float32Array, dst: Float32Array, R: number, sigma: number, horizontal: boolean): void {
  const rad = Math.min(64, Math.max(1, Math.ceil(sigma * 2.5)));
  const taps = 2 * rad + 1;
  const k = new Float64Array(taps);
  let sum = 0;
  for (let i = 0; i < taps; i++) sum += k[i] = Math.exp(-((i - rad) * (i - rad)) / (2 * sigma * sigma));
  for (let i = 0; i < taps; i++) k[i] /= sum;
  // clampIdx[j] = clamp(j - rad) * stride: precomputed so the inner loop has no branches.
  const stride = horizontal ? 3 : 3 * R;
  const clampIdx = new Int32Array(R + 2 * rad);
  for (let j = 0; j < clampIdx.length; j++) clampIdx[j] = Math.min(R - 1, Math.max(0, j - rad)) * stride;
  const other = horizontal ? 3 * R : 3;
  for (let a = 0; a < R; a++) {
    const base = a * other;
    for (let b = 0; b < R; b++) {
      let r = 0;
      let g = 0;
      let bl = 0;
      for (let t = 0; t < taps; t++) {
        const j = base + clampIdx[b + t];
        const wt = k[t];
        r += src[j] * wt;
        g += src[j + 1] * wt;
        bl += src[j + 2] * wt;
      }
      const o = base + clampIdx[b + rad];
      dst[o] = r;
      dst[o + 1] = g;
      dst[o + 2] = bl;
    }
  }
}

/** Separable Gaussian blur of an R x R RGB buffer in place (tmp: scratch of the same size or larger). */
function gaussianBlur(buf: Float32Array, R: number, sigmaX: number, sigmaY: number, tmp: Float32Array): void {
  if (sigmaX >= 0.2) {
    blurPass(buf, tmp, R, sigmaX, true);
    buf.set(tmp.subarray(0, buf.length));
  }
  if (sigmaY >= 0.2) {
    blurPass(buf, tmp, R, sigmaY, false);
    buf.set(tmp.subarray(0, buf.length));
  }
}

const workCache = new Map<number, Work>();

function work(R: number): Work {
  let w = workCache.get(R);
  if (!w) {
    w = {
      R,
      bg: new Float32Array(R * R * 3),
      layer: new Float32Array(R * R * 4),
      tmp: new Float32Array(R * R * 4),
      noiseA: new Float32Array(R * R),
      noiseB: new Float32Array(R * R),
    };
    workCache.set(R, w);
  }
  return w;
}

export function supersampling(size: number): number {
  return size <= 64 ? 2 : 1;
}

const GAMMA_STEPS = 256;

/**
 * Standard normal quantiles at (i + 0.5) / N: sensor noise is a table lookup per
 * value instead of log/sqrt/cos (which took a third of the render time).
 */
const NORMAL_TABLE_SIZE = 4096;
const NORMAL_TABLE = ((): Float64Array => {
  const t = new Float64Array(NORMAL_TABLE_SIZE);
  for (let i = 0; i < NORMAL_TABLE_SIZE; i++) t[i] = normalQuantile((i + 0.5) / NORMAL_TABLE_SIZE);
  return t;
})();

/** Inverse normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(q: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (q < lo || q > 1 - lo) {
    const u = Math.sqrt(-2 * Math.log(q < lo ? q : 1 - q));
    const x = (((((c[0] * u + c[1]) * u + c[2]) * u + c[3]) * u + c[4]) * u + c[5]) / ((((d[0] * u + d[1]) * u + d[2]) * u + d[3]) * u + 1);
    return q < lo ? x : -x;
  }
  const r = (q - 0.5) * (q - 0.5);
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (q - 0.5)) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

export function renderScene(classId: number, p: SceneParams, size: number, out: Float32Array, offset: number): void {
  const ss = supersampling(size);
  const R = size * ss;
  const w = work(R);
  const { bg, layer, tmp } = w;
  const shape = SIGN_SPECS[classId].shape;
  const H = signHomography(p, shape, R);
  renderBackground(p, R, bg, w);
  if (p.pole) drawPole(bg, R, H, createRng(hashSeed(p.backgroundSeed, 3)));
  warpSign(signTexture(classId, textureSizeFor(R)), H, R, p, layer);
  for (let i = 0; i < R * R; i++) {
    const ia = 1 - layer[4 * i + 3];
    bg[3 * i] = layer[4 * i] + bg[3 * i] * ia;
    bg[3 * i + 1] = layer[4 * i + 1] + bg[3 * i + 1] * ia;
    bg[3 * i + 2] = layer[4 * i + 2] + bg[3 * i + 2] * ia;
  }
  if (p.blurX >= 0.1 || p.blurY >= 0.1) gaussianBlur(bg, R, p.blurX * ss, p.blurY * ss, tmp);
  const n3 = size * size * 3;
  // Writes go straight to out[offset + i] (a subarray view here made V8 deoptimise repeatedly).
  const dst = out;
  // Box downsample.
  if (ss === 1) {
    for (let i = 0; i < n3; i++) dst[offset + i] = bg[i];
  } else {
    const inv = 1 / (ss * ss);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let sy = 0; sy < ss; sy++) {
          let j = 3 * ((y * ss + sy) * R + x * ss);
          for (let sx = 0; sx < ss; sx++, j += 3) {
            r += bg[j];
            g += bg[j + 1];
            b += bg[j + 2];
          }
        }
        const o = offset + 3 * (y * size + x);
        dst[o] = r * inv;
        dst[o + 1] = g * inv;
        dst[o + 2] = b * inv;
      }
    }
  }
  // Camera response: colour cast, contrast, exposure, gamma, then sensor noise.
  const m0 = p.brightness * p.contrast * p.cast[0];
  const m1 = p.brightness * p.contrast * p.cast[1];
  const m2 = p.brightness * p.contrast * p.cast[2];
  const add = p.brightness * 0.5 * (1 - p.contrast);
  // Math.pow per value dominated the render time; a 257-entry table with linear interpolation is plenty.
  const gammaLut = p.gamma !== 1 ? new Float64Array(GAMMA_STEPS + 2) : null;
  if (gammaLut) {
    for (let i = 0; i <= GAMMA_STEPS; i++) gammaLut[i] = Math.pow(i / GAMMA_STEPS, p.gamma);
    gammaLut[GAMMA_STEPS + 1] = 1;
  }
  const rng = p.noise > 0 ? createRng(p.noiseSeed) : null;
  const nt = NORMAL_TABLE;
  for (let i = 0; i < n3; i++) {
    const c = i % 3;
    let v = dst[offset + i] * (c === 0 ? m0 : c === 1 ? m1 : m2) + add;
    if (gammaLut) {
      const t = (v <= 0 ? 0 : v >= 1 ? 1 : v) * GAMMA_STEPS;
      const k = Math.floor(t);
      v = gammaLut[k] + (gammaLut[k + 1] - gammaLut[k]) * (t - k);
    }
    if (rng) v += p.noise * nt[(rng() * NORMAL_TABLE_SIZE) | 0];
    dst[offset + i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}
