/**
 * Expectation over Transformation (Athalye et al. 2018): a family of random, differentiable
 * image transformations that stands in for "print it, stick it on a sign, photograph it".
 *
 * Input is the sign's canvas (its bounding square, RGB + alpha, R×R) and a map of which pixels
 * are printed (the sticker, or the whole sign in printed-sign mode). Per sample, in this order:
 *   1. printer colour shift on printed pixels: per channel c' = black + (white − black)·c
 *      (ink black point and paper white point, a random per-channel affine map);
 *   2. camera pose: the sign plane is rotated (yaw/pitch ±30° by default, roll), projected with a
 *      pinhole camera (perspective), scaled (distance) and shifted, and composited over a random
 *      background, at 2× the output resolution then box-averaged (anti-aliasing);
 *   3. lens/defocus blur (mixture of two Gaussian kernels, per-sample strength);
 *   4. lighting: contrast about mid-grey, exposure, white-balance cast per channel;
 *   5. sensor noise (Gaussian);
 *   6. JPEG-like degradation. Real JPEG is not differentiable; we approximate its two visible
 *      effects at this resolution: 4:2:0 chroma subsampling (2×2 chroma averaging in YCbCr) and
 *      quantisation error (uniform noise whose size grows as quality falls). High-frequency loss
 *      is covered by the blur stage;
 *   7. clip to [0, 1].
 *
 * Every random number comes from the seeded PRNG in JS, so a (seed, config) pair gives the same
 * batch bit for bit. tf.image.transform has no gradient in tfjs (and tf.gather's gradient needs a
 * kernel the wasm backend lacks), so stages 1–2 are one sparse linear map evaluated in JS with a
 * custom gradient (its transpose); stages 3–7 are ordinary tf ops.
 */
import { tf, Tensor4D } from '../inference/tf';
import { createRng, hashSeed, Rng } from '../data/random';

export type Range = [number, number];
export type Rgb3 = [number, number, number];

export interface EotConfig {
  /** Model input side (pixels). */
  outputSize: number;
  /** Supersampling of the warp (anti-aliasing). */
  supersample: number;
  /** Out-of-plane rotations (viewing angle), degrees, uniform in ±max. */
  maxYawDeg: number;
  maxPitchDeg: number;
  /** In-plane rotation, degrees. */
  maxRollDeg: number;
  /** Camera distance in sign half-widths: smaller gives stronger perspective. */
  cameraDistance: number;
  /** Sign width as a fraction of the image width (distance / framing of the crop). */
  scaleRange: Range;
  /** Shift of the sign centre, fraction of the image side, uniform in ±max. */
  maxShift: number;
  /** Printer: per-channel black point and white point of printed pixels. */
  printerBlackRange: Range;
  printerWhiteRange: Range;
  /** Camera: exposure multiplier, contrast about 0.5, per-channel white-balance gain ±max. */
  brightnessRange: Range;
  contrastRange: Range;
  maxCast: number;
  /** Gaussian blur sigma in output pixels (0..1.2 supported by the kernel mixture). */
  blurRange: Range;
  /** Sensor noise standard deviation. */
  noiseRange: Range;
  /** Probability of the JPEG-like stage, and its quality range (1..100). */
  jpegProbability: number;
  jpegQualityRange: Range;
  /** 'random' backgrounds (sky, foliage, walls…) or a plain mid-grey. */
  background: 'random' | 'plain';
}

/** The print-and-capture family used for optimisation and for held-out measurement. */
export const DEFAULT_EOT: Readonly<EotConfig> = Object.freeze({
  outputSize: 32,
  supersample: 2,
  maxYawDeg: 30,
  maxPitchDeg: 30,
  maxRollDeg: 15,
  cameraDistance: 4,
  scaleRange: [0.65, 0.95] as Range,
  maxShift: 0.06,
  printerBlackRange: [0.0, 0.12] as Range,
  printerWhiteRange: [0.85, 1.0] as Range,
  brightnessRange: [0.6, 1.35] as Range,
  contrastRange: [0.7, 1.15] as Range,
  maxCast: 0.1,
  blurRange: [0, 1.2] as Range,
  noiseRange: [0, 0.03] as Range,
  jpegProbability: 0.7,
  jpegQualityRange: [40, 95] as Range,
  background: 'random' as const,
});

/**
 * No transformation: the sign face-on at 80 % of the image on mid-grey, as renderCleanSign draws
 * it. Optimising against this alone is "the perturbation optimised on one clean image".
 */
export const CLEAN_VIEW: Readonly<EotConfig> = Object.freeze({
  ...DEFAULT_EOT,
  maxYawDeg: 0,
  maxPitchDeg: 0,
  maxRollDeg: 0,
  scaleRange: [0.8, 0.8] as Range,
  maxShift: 0,
  printerBlackRange: [0, 0] as Range,
  printerWhiteRange: [1, 1] as Range,
  brightnessRange: [1, 1] as Range,
  contrastRange: [1, 1] as Range,
  maxCast: 0,
  blurRange: [0, 0] as Range,
  noiseRange: [0, 0] as Range,
  jpegProbability: 0,
  background: 'plain' as const,
});

/** One sample's parameters (angles in radians). */
export interface EotSample {
  yaw: number;
  pitch: number;
  roll: number;
  scale: number;
  shiftX: number;
  shiftY: number;
  printerBlack: Rgb3;
  printerWhite: Rgb3;
  brightness: number;
  contrast: number;
  cast: Rgb3;
  blur: number;
  noise: number;
  /** 0 when the JPEG-like stage is off for this sample. */
  jpegQuality: number;
  /** Seeds the background and the noise fields. */
  seed: number;
}

const DEG = Math.PI / 180;

function uni(rng: Rng, r: Range): number {
  return r[0] + (r[1] - r[0]) * rng();
}

/** `n` samples; sample i depends only on (seed, i, config), so batches are reproducible. */
export function sampleEot(n: number, seed: number, config: EotConfig = DEFAULT_EOT): EotSample[] {
  const out: EotSample[] = [];
  for (let i = 0; i < n; i++) {
    const rng = createRng(hashSeed(seed, i, 0x5eed));
    const sym = (max: number) => (rng() * 2 - 1) * max;
    const black: Rgb3 = [uni(rng, config.printerBlackRange), uni(rng, config.printerBlackRange), uni(rng, config.printerBlackRange)];
    const white: Rgb3 = [uni(rng, config.printerWhiteRange), uni(rng, config.printerWhiteRange), uni(rng, config.printerWhiteRange)];
    out.push({
      yaw: sym(config.maxYawDeg) * DEG,
      pitch: sym(config.maxPitchDeg) * DEG,
      roll: sym(config.maxRollDeg) * DEG,
      scale: uni(rng, config.scaleRange),
      shiftX: sym(config.maxShift),
      shiftY: sym(config.maxShift),
      printerBlack: black,
      printerWhite: white,
      brightness: uni(rng, config.brightnessRange),
      contrast: uni(rng, config.contrastRange),
      cast: [1 + sym(config.maxCast), 1 + sym(config.maxCast), 1 + sym(config.maxCast)],
      blur: uni(rng, config.blurRange),
      noise: uni(rng, config.noiseRange),
      jpegQuality: rng() < config.jpegProbability ? uni(rng, config.jpegQualityRange) : 0,
      seed: Math.floor(rng() * 4294967296),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Geometry

export type Mat3 = [number, number, number, number, number, number, number, number, number];

export function mul3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9).fill(0) as Mat3;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) r[3 * i + j] += a[3 * i + k] * b[3 * k + j];
  return r;
}

function inv3(m: Mat3): Mat3 {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h,
    B = -(d * i - f * g),
    C = d * h - e * g;
  const det = a * A + b * B + c * C;
  const s = 1 / det;
  return [A * s, -(b * i - c * h) * s, (b * f - c * e) * s, B * s, (a * i - c * g) * s, -(a * f - c * d) * s, C * s, -(a * h - b * g) * s, (a * e - b * d) * s];
}

/**
 * Homography from sign coordinates (u, v) ∈ [−1, 1]² (the canvas, y down) to pixel coordinates of
 * an image of side `side`: the sign plane rotated by Rz(roll)·Rx(pitch)·Ry(yaw), placed at
 * distance d, seen by a pinhole camera whose focal length makes a face-on sign `scale` wide.
 */
export function signHomography(s: EotSample, side: number, cameraDistance: number): Mat3 {
  const cy = Math.cos(s.yaw),
    sy = Math.sin(s.yaw),
    cp = Math.cos(s.pitch),
    sp = Math.sin(s.pitch);
  const cr = Math.cos(s.roll),
    sr = Math.sin(s.roll);
  const Ry: Mat3 = [cy, 0, sy, 0, 1, 0, -sy, 0, cy];
  const Rx: Mat3 = [1, 0, 0, 0, cp, -sp, 0, sp, cp];
  const Rz: Mat3 = [cr, -sr, 0, sr, cr, 0, 0, 0, 1];
  const R = mul3(Rz, mul3(Rx, Ry));
  const d = cameraDistance;
  const f = (d * s.scale * side) / 2;
  const K: Mat3 = [f, 0, side / 2 + s.shiftX * side, 0, f, side / 2 + s.shiftY * side, 0, 0, 1];
  // [r1 r2 t] with t = (0, 0, d): points (u, v, 0) of the plane.
  const P: Mat3 = [R[0], R[1], 0, R[3], R[4], 0, R[6], R[7], d];
  return mul3(K, P);
}

/**
 * The scene formation of one batch as a sparse linear map from the sign's RGB (R×R×3) to the
 * images (n×S×S×3), plus a constant: printer shift, perspective warp (bilinear), alpha
 * compositing over the background and box downsampling are all linear in the sign's colours
 * once the sign's alpha and the printed map are fixed. Per output pixel it stores up to
 * 4·ss² taps (source pixel, weight = bilinear · alpha / ss²).
 */
interface SceneMap {
  n: number;
  S: number;
  R: number;
  /** Taps per output pixel (fixed stride, unused taps have weight 0). */
  taps: number;
  src: Int32Array;
  weight: Float32Array;
  /** Printer gain (white − black) per sample and channel: ink = rgb·(1 + P(g − 1)) + P·black. */
  gain: Float32Array;
  printed: Float32Array | null;
  constant: Float32Array;
}

/**
 * Where sample i puts the canvas and what lies behind it, at the supersampled side So: by default
 * the camera pose (signHomography) over a random street background; a real photo overrides both.
 */
export interface SceneOverride {
  /** Canvas coordinates (u, v) ∈ [−1, 1]² → pixels of the So×So image. */
  homography: Mat3;
  /** So²×3 RGB behind the canvas. */
  background: Float32Array;
}
export type SceneFn = (sample: EotSample, index: number, So: number) => SceneOverride;

function buildSceneMap(samples: EotSample[], R: number, alpha: Float32Array, printed: Float32Array | null, config: EotConfig, scene?: SceneFn): SceneMap {
  const n = samples.length,
    S = config.outputSize,
    ss = config.supersample,
    So = S * ss;
  const taps = 4 * ss * ss;
  const src = new Int32Array(n * S * S * taps);
  const weight = new Float32Array(n * S * S * taps);
  const constant = new Float32Array(n * S * S * 3);
  const gain = new Float32Array(n * 3);
  const inv = 1 / (ss * ss);
  samples.forEach((s, i) => {
    const own = scene?.(s, i, So);
    const Hi = inv3(own?.homography ?? signHomography(s, So, config.cameraDistance));
    const bg = own?.background ?? background(createRng(s.seed), So, config.background === 'plain');
    for (let c = 0; c < 3; c++) gain[3 * i + c] = s.printerWhite[c] - s.printerBlack[c];
    for (let y = 0; y < So; y++) {
      for (let x = 0; x < So; x++) {
        const px = x + 0.5,
          py = y + 0.5;
        const zz = Hi[6] * px + Hi[7] * py + Hi[8];
        const fx = (((Hi[0] * px + Hi[1] * py + Hi[2]) / zz + 1) / 2) * R - 0.5;
        const fy = (((Hi[3] * px + Hi[4] * py + Hi[5]) / zz + 1) / 2) * R - 0.5;
        const x0 = Math.floor(fx),
          y0 = Math.floor(fy);
        const ax = fx - x0,
          ay = fy - y0;
        const o = (i * S + Math.floor(y / ss)) * S + Math.floor(x / ss);
        const slot = o * taps + 4 * ((y % ss) * ss + (x % ss));
        let cover = 0,
          black0 = 0,
          black1 = 0,
          black2 = 0;
        for (let k = 0; k < 4; k++) {
          const tx = x0 + (k & 1),
            ty = y0 + (k >> 1);
          // Outside the canvas (or behind the camera) the sign is transparent: weight 0.
          if (!(zz > 0 && tx >= 0 && ty >= 0 && tx < R && ty < R)) continue;
          const sIdx = ty * R + tx;
          const wa = (k & 1 ? ax : 1 - ax) * (k >> 1 ? ay : 1 - ay) * alpha[sIdx];
          src[slot + k] = sIdx;
          weight[slot + k] = wa * inv;
          cover += wa;
          if (printed) {
            const p = wa * printed[sIdx];
            black0 += p * s.printerBlack[0];
            black1 += p * s.printerBlack[1];
            black2 += p * s.printerBlack[2];
          }
        }
        const b = 3 * (y * So + x);
        constant[3 * o] += (black0 + bg[b] * (1 - cover)) * inv;
        constant[3 * o + 1] += (black1 + bg[b + 1] * (1 - cover)) * inv;
        constant[3 * o + 2] += (black2 + bg[b + 2] * (1 - cover)) * inv;
      }
    }
  });
  return { n, S, R, taps, src, weight, gain, printed, constant };
}

/** Applies the map to rgb (R²×3): n×S²×3. */
function sceneForward(m: SceneMap, rgb: Float32Array): Float32Array {
  const out = Float32Array.from(m.constant);
  const { n, S, taps, src, weight, gain, printed } = m;
  for (let i = 0; i < n; i++) {
    const g0 = gain[3 * i] - 1,
      g1 = gain[3 * i + 1] - 1,
      g2 = gain[3 * i + 2] - 1;
    for (let p = 0; p < S * S; p++) {
      const o = i * S * S + p;
      let r = 0,
        g = 0,
        b = 0;
      for (let t = o * taps, end = t + taps; t < end; t++) {
        const w = weight[t];
        if (w === 0) continue;
        const s = src[t];
        const pr = printed ? printed[s] : 0;
        r += w * rgb[3 * s] * (1 + pr * g0);
        g += w * rgb[3 * s + 1] * (1 + pr * g1);
        b += w * rgb[3 * s + 2] * (1 + pr * g2);
      }
      out[3 * o] += r;
      out[3 * o + 1] += g;
      out[3 * o + 2] += b;
    }
  }
  return out;
}

/** The transpose: gradient of the images (n×S²×3) back onto the sign (R²×3). */
function sceneBackward(m: SceneMap, dy: Float32Array): Float32Array {
  const { n, S, R, taps, src, weight, gain, printed } = m;
  const out = new Float32Array(R * R * 3);
  for (let i = 0; i < n; i++) {
    const g0 = gain[3 * i] - 1,
      g1 = gain[3 * i + 1] - 1,
      g2 = gain[3 * i + 2] - 1;
    for (let p = 0; p < S * S; p++) {
      const o = i * S * S + p;
      const d0 = dy[3 * o],
        d1 = dy[3 * o + 1],
        d2 = dy[3 * o + 2];
      for (let t = o * taps, end = t + taps; t < end; t++) {
        const w = weight[t];
        if (w === 0) continue;
        const s = src[t];
        const pr = printed ? printed[s] : 0;
        out[3 * s] += w * d0 * (1 + pr * g0);
        out[3 * s + 1] += w * d1 * (1 + pr * g1);
        out[3 * s + 2] += w * d2 * (1 + pr * g2);
      }
    }
  }
  return out;
}

/**
 * The scene map as a differentiable op. It runs in JS on the tensor's data: for these sizes a
 * tight loop beats the wasm backend's gather, and tf.gather's gradient (UnsortedSegmentSum) does
 * not exist on wasm at all.
 */
function sceneOp(rgb: Tensor4D, m: SceneMap): Tensor4D {
  const op = tf.customGrad((...inputs: unknown[]) => {
    const x = inputs[0] as Tensor4D;
    const value = tf.tensor4d(sceneForward(m, x.dataSync() as Float32Array), [m.n, m.S, m.S, 3]);
    const gradFunc = (dy: Tensor4D) => tf.tensor4d(sceneBackward(m, dy.dataSync() as Float32Array), [1, m.R, m.R, 3]);
    return { value, gradFunc };
  });
  return op(rgb) as Tensor4D;
}

// ---------------------------------------------------------------------------
// Backgrounds and noise (JS, seeded)

const BG_BASES: Rgb3[] = [
  [0.55, 0.7, 0.9],
  [0.75, 0.82, 0.9],
  [0.25, 0.4, 0.2],
  [0.4, 0.55, 0.3],
  [0.5, 0.5, 0.5],
  [0.65, 0.6, 0.55],
  [0.45, 0.35, 0.3],
  [0.2, 0.2, 0.22],
  [0.85, 0.85, 0.85],
  [0.6, 0.45, 0.3],
];

/** A plausible street background: a base colour with a gradient and a few soft blobs. */
function background(rng: Rng, side: number, plain: boolean): Float32Array {
  const out = new Float32Array(side * side * 3);
  if (plain) return out.fill(0.5);
  const base = BG_BASES[Math.floor(rng() * BG_BASES.length)].map((v) => v * (0.7 + 0.6 * rng()));
  const ang = rng() * 2 * Math.PI,
    gx = Math.cos(ang),
    gy = Math.sin(ang),
    gs = 0.4 * rng();
  const blobs = Array.from({ length: 4 }, () => ({
    x: rng() * side,
    y: rng() * side,
    s: (0.1 + 0.25 * rng()) * side,
    a: 0.5 * rng(),
    c: [rng(), rng(), rng()],
  }));
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const g = 1 + gs * ((x / side - 0.5) * gx + (y / side - 0.5) * gy);
      const o = 3 * (y * side + x);
      for (let c = 0; c < 3; c++) out[o + c] = base[c] * g;
      for (const b of blobs) {
        const t = b.a * Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.s * b.s));
        for (let c = 0; c < 3; c++) out[o + c] = out[o + c] * (1 - t) + b.c[c] * t;
      }
      for (let c = 0; c < 3; c++) out[o + c] = Math.min(1, Math.max(0, out[o + c] + (rng() - 0.5) * 0.04));
    }
  }
  return out;
}

function gauss(rng: Rng): number {
  const u = 1 - rng(),
    v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * Additive noise per pixel: Gaussian sensor noise, plus for JPEG samples uniform quantisation
 * error (luma ±q, chroma ±2q, q = 0.0008·(100 − quality)), converted from YCbCr to RGB.
 */
function noiseField(s: EotSample, rng: Rng, side: number, out: Float32Array, offset: number): void {
  const q = s.jpegQuality > 0 ? 0.0008 * (100 - s.jpegQuality) : 0;
  for (let i = 0; i < side * side; i++) {
    const o = offset + 3 * i;
    let r = 0,
      g = 0,
      b = 0;
    if (s.noise > 0) {
      r = s.noise * gauss(rng);
      g = s.noise * gauss(rng);
      b = s.noise * gauss(rng);
    }
    if (q > 0) {
      const dy = (rng() * 2 - 1) * q,
        dcb = (rng() * 2 - 1) * 2 * q,
        dcr = (rng() * 2 - 1) * 2 * q;
      r += dy + 1.402 * dcr;
      g += dy - 0.344136 * dcb - 0.714136 * dcr;
      b += dy + 1.772 * dcb;
    }
    out[o] = r;
    out[o + 1] = g;
    out[o + 2] = b;
  }
}

// ---------------------------------------------------------------------------
// The differentiable pipeline

/** 5×5 Gaussian as a [5, 5, 3, 3] diagonal filter (a plain conv2d: its gradient is registered on wasm). */
function gaussianFilter(sigma: number): tf.Tensor4D {
  const k = [-2, -1, 0, 1, 2].map((d) => Math.exp(-(d * d) / (2 * sigma * sigma)));
  const s = k.reduce((a, b) => a + b, 0);
  const f = new Float32Array(5 * 5 * 3 * 3);
  for (let y = 0; y < 5; y++) for (let x = 0; x < 5; x++) for (let c = 0; c < 3; c++) f[((y * 5 + x) * 3 + c) * 3 + c] = (k[y] * k[x]) / (s * s);
  return tf.tensor4d(f, [5, 5, 3, 3]);
}

const BLUR_SIGMAS = [0.6, 1.2];

const RGB_TO_YCC = [0.299, -0.168736, 0.5, 0.587, -0.331264, -0.418688, 0.114, 0.5, -0.081312];
const YCC_TO_RGB = [1, 1, 1, 0, -0.344136, 1.772, 1.402, -0.714136, 0];

function perSample(values: number[], n: number, c = 1): tf.Tensor4D {
  return tf.tensor4d(values, [n, 1, 1, c]);
}

/**
 * Applies `samples` to the sign: rgb [1, R, R, 3] (straight colours in [0, 1]), alpha (R², the
 * sign's shape), printed (R², 1 where the printer's colour shift applies; null = nothing printed).
 * Returns [n, S, S, 3] in [0, 1], differentiable with respect to rgb.
 */
export function applyEot(
  rgb: Tensor4D,
  alpha: Float32Array,
  printed: Float32Array | null,
  samples: EotSample[],
  config: EotConfig = DEFAULT_EOT,
  scene?: SceneFn,
): Tensor4D {
  const n = samples.length;
  const R = rgb.shape[1];
  const S = config.outputSize;
  if (rgb.shape[0] !== 1 || rgb.shape[2] !== R || rgb.shape[3] !== 3) throw new Error(`sign must be [1, R, R, 3], got [${rgb.shape.join(', ')}]`);
  if (alpha.length !== R * R || (printed && printed.length !== R * R)) throw new Error(`alpha and printed must have ${R * R} values`);
  if (S % 2 !== 0) throw new Error('outputSize must be even (JPEG chroma subsampling works on 2×2 blocks)');
  const map = buildSceneMap(samples, R, alpha, printed, config, scene);
  const noise = new Float32Array(n * S * S * 3);
  samples.forEach((s, i) => noiseField(s, createRng(hashSeed(s.seed, 0x0153)), S, noise, i * S * S * 3));
  return tf.tidy(() => {
    // 1–2. Printer, pose, background, anti-aliasing (one linear map).
    let x = sceneOp(rgb, map);
    // 3. Blur: per sample, a piecewise-linear mix of x, G(0.6) and G(1.2) that matches sigma.
    if (samples.some((s) => s.blur > 0)) {
      const t = samples.map((s) => Math.min(2, s.blur / BLUR_SIGMAS[0]));
      const w0 = perSample(
        t.map((v) => Math.max(0, 1 - v)),
        n,
      );
      const w1 = perSample(
        t.map((v) => (v <= 1 ? v : 2 - v)),
        n,
      );
      const w2 = perSample(
        t.map((v) => Math.max(0, v - 1)),
        n,
      );
      const b1 = tf.conv2d(x, gaussianFilter(BLUR_SIGMAS[0]), 1, 'same');
      const b2 = tf.conv2d(x, gaussianFilter(BLUR_SIGMAS[1]), 1, 'same');
      x = tf.addN([tf.mul(x, w0), tf.mul(b1, w1), tf.mul(b2, w2)]) as Tensor4D;
    }
    // 4. Lighting: contrast about mid-grey, exposure, white balance.
    const k = perSample(
      samples.map((s) => s.contrast),
      n,
    );
    const gain = perSample(
      samples.flatMap((s) => s.cast.map((c) => c * s.brightness)),
      n,
      3,
    );
    x = tf.mul(tf.add(tf.mul(x, k), tf.mul(tf.sub(1, k), 0.5)), gain);
    // 6a. JPEG chroma subsampling (the quantisation error is in the noise field). Channels are
    // split with matMuls rather than slices (strided slices are slow on wasm).
    const jpeg = samples.map((s) => (s.jpegQuality > 0 ? 1 : 0));
    if (jpeg.some((v) => v)) {
      const flat = tf.reshape(x, [-1, 3]);
      const luma = tf.matMul(flat, tf.tensor2d([RGB_TO_YCC[0], RGB_TO_YCC[3], RGB_TO_YCC[6]], [3, 1]));
      const chroma = tf.reshape(
        tf.matMul(
          flat,
          tf.tensor2d(
            [1, 2, 4, 5, 7, 8].map((j) => RGB_TO_YCC[j]),
            [3, 2],
          ),
        ),
        [n, S / 2, 2, S / 2, 2, 2],
      );
      // Broadcasting against ones repeats each 2×2 block (tile has no rank-6 gradient in tfjs).
      const up = tf.reshape(tf.mul(tf.mean(chroma, [2, 4], true), tf.ones([1, 1, 2, 1, 2, 1])), [-1, 2]);
      const back = tf.add(tf.matMul(luma, tf.ones([1, 3])), tf.matMul(up, tf.tensor2d(YCC_TO_RGB.slice(3), [2, 3])));
      const on = perSample(jpeg, n);
      x = tf.add(tf.mul(tf.reshape(back, [n, S, S, 3]), on), tf.mul(x, tf.sub(1, on)));
    }
    // 5 + 6b. Sensor noise and quantisation error.
    x = tf.add(x, tf.tensor4d(noise, [n, S, S, 3]));
    return tf.clipByValue(x, 0, 1) as Tensor4D;
  });
}

/** Splits straight RGBA (R²×4) into RGB (R²×3) and alpha (R²). */
export function splitRgba(rgba: Float32Array): { rgb: Float32Array; alpha: Float32Array } {
  const n = rgba.length / 4;
  const rgb = new Float32Array(n * 3),
    alpha = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = rgba[4 * i];
    rgb[3 * i + 1] = rgba[4 * i + 1];
    rgb[3 * i + 2] = rgba[4 * i + 2];
    alpha[i] = rgba[4 * i + 3];
  }
  return { rgb, alpha };
}

/**
 * Convenience for non-differentiable use (measurement): applies the samples in chunks and returns
 * the images as one Float32Array [n*S*S*3].
 */
export async function renderEot(
  rgb: Tensor4D,
  alpha: Float32Array,
  printed: Float32Array | null,
  samples: EotSample[],
  config: EotConfig = DEFAULT_EOT,
  chunk = 64,
  scene?: SceneFn,
): Promise<Float32Array> {
  const S = config.outputSize;
  const out = new Float32Array(samples.length * S * S * 3);
  for (let i = 0; i < samples.length; i += chunk) {
    const part = samples.slice(i, i + chunk);
    const t = applyEot(rgb, alpha, printed, part, config, scene && ((s, j, So) => scene(s, i + j, So)));
    out.set((await t.data()) as Float32Array, i * S * S * 3);
    t.dispose();
  }
  return out;
}
