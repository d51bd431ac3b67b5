/**
 * What a model that is not ours expects, and the adapter that gives it that: every Classifier
 * takes float32 NHWC RGB images in [0, 1] at a square size; a model trained on raw 0–255 pixels,
 * on −1…1, on grayscale or on a non-square H×W gets its own input from the adapter, inside the
 * differentiable graph (so attack budgets stay in [0, 1] pixel units).
 */
import * as fs from 'node:fs';
import { tf, Tensor4D } from './tf';
import { Preprocess, UserError } from '../data/types';

/** The model's pixel values: [0, 1] images are mapped linearly onto [lo, hi]. */
export interface InputRange {
  lo: number;
  hi: number;
}

export type { Preprocess };
export const PREPROCESS_MODES: readonly Preprocess[] = ['crop', 'whole'];

export interface ModelInputOptions {
  /** null: 0…1 for a float input; for a quantised one, the range its quantisation represents. */
  inputRange: InputRange | null;
  preprocess: Preprocess;
  /** One name per model output (a --labels file); null: the model's card, else GTSRB's 43 classes. */
  labels: string[] | null;
  /** Where the labels came from (for messages). */
  labelsFile: string | null;
}

export const DEFAULT_MODEL_INPUT: Readonly<ModelInputOptions> = Object.freeze({
  inputRange: null,
  preprocess: 'crop',
  labels: null,
  labelsFile: null,
});

/** Parses 'LO,HI' (e.g. 0,1 · 0,255 · -1,1). */
export function parseInputRange(text: string, where = '--input-range'): InputRange {
  const parts = text.split(',').map((s) => s.trim());
  const [lo, hi] = parts.map((s) => (s === '' ? NaN : Number(s)));
  if (parts.length !== 2 || !Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw new UserError(`${where} must be two numbers LO,HI such as 0,1 or 0,255 or -1,1, got '${text}'`);
  }
  if (!(hi > lo)) throw new UserError(`${where} ${text}: HI must be above LO`);
  return { lo, hi };
}

export function parsePreprocess(text: string, where = '--preprocess'): Preprocess {
  const v = text.trim().toLowerCase();
  if (!(PREPROCESS_MODES as readonly string[]).includes(v)) throw new UserError(`${where} must be crop or whole, got '${text}'`);
  return v as Preprocess;
}

/** Reads a labels file: one class name per line (blank lines and # comments skipped). */
export function readLabels(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`labels file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`);
  }
  const names = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (names.length === 0) throw new UserError(`labels file ${file} has no names (one class name per line)`);
  return names;
}

export const UNIT_RANGE: Readonly<InputRange> = Object.freeze({ lo: 0, hi: 1 });

/** Round half to even, as tf.round does (so JS and tfjs quantise a value alike). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The pixel value a [0, 1] image value x becomes, computed in float32 in the same order as
 * toModelInput (x·(hi − lo), then + lo), so the interpreter and the tfjs graph see equal inputs.
 */
export function mapPixel(x: number, r: InputRange): number {
  return r.lo === 0 && r.hi === 1 ? x : Math.fround(Math.fround(x * Math.fround(r.hi - r.lo)) + r.lo);
}

export function isIdentityRange(r: InputRange): boolean {
  return r.lo === 0 && r.hi === 1;
}

export function describeRange(r: InputRange): string {
  return `${r.lo}…${r.hi}`;
}

/** The model's input geometry. */
export interface InputShape {
  height: number;
  width: number;
  /** 3 (RGB) or 1 (grayscale: luma of the RGB image). */
  channels: number;
}

/** The square image side a Classifier takes for this model: its larger side. */
export function squareSide(s: InputShape): number {
  return Math.max(s.height, s.width);
}

/**
 * [out, size]: bilinear resampling of one axis with half-pixel centres (tf.image.resizeBilinear's
 * weights, no corner alignment) as a matrix. Resizing with it keeps the gradient exact: tfjs's own
 * ResizeBilinearGrad ignores halfPixelCenters and differentiates a shifted grid.
 */
export function bilinearMatrix(size: number, out: number): Float32Array {
  const m = new Float32Array(out * size);
  const ratio = size / out;
  for (let o = 0; o < out; o++) {
    const src = ratio * (o + 0.5) - 0.5;
    const frac = src - Math.floor(src);
    m[o * size + Math.max(0, Math.floor(src))] += 1 - frac;
    m[o * size + Math.min(size - 1, Math.ceil(src))] += frac;
  }
  return m;
}

/** Resizes axis 1 (H) or 2 (W) of NHWC images to `out` by a MatMul with bilinearMatrix. */
function resizeAxis(x: Tensor4D, axis: 1 | 2, out: number): Tensor4D {
  // The resized axis goes last: [n, ·, c, size] · [size, out].
  const perm = axis === 2 ? [0, 1, 3, 2] : [0, 2, 3, 1];
  const t = tf.transpose(x, perm);
  const [a, b, c, size] = t.shape;
  const m = tf.transpose(tf.tensor2d(bilinearMatrix(size, out), [out, size]));
  const y = tf.reshape(tf.matMul(tf.reshape(t, [-1, size]), m), [a, b, c, out]);
  return tf.transpose(y, axis === 2 ? [0, 1, 3, 2] : [0, 3, 1, 2]) as Tensor4D;
}

/**
 * NHWC images bilinearly resized to height × width (half-pixel centres, no corner alignment:
 * tf.image.resizeBilinear's values) with an exact gradient, unlike tfjs's own resize.
 */
export function resizeBilinear(images: Tensor4D, height: number, width: number): Tensor4D {
  return tf.tidy(() => {
    let x = images;
    if (x.shape[2] !== width) x = resizeAxis(x, 2, width);
    if (x.shape[1] !== height) x = resizeAxis(x, 1, height);
    return x;
  });
}

/**
 * [n, s, s, 3] images in [0, 1] → the model's own input: resized to H×W (bilinear, half-pixel
 * centres) when it is not square, to luma for 1-channel models, then mapped onto `range`
 * (pass null to keep [0, 1], e.g. when quantisation does the mapping). Differentiable.
 */
export function toModelInput(images: Tensor4D, shape: InputShape, range: InputRange | null): Tensor4D {
  return tf.tidy(() => {
    let x = resizeBilinear(images, shape.height, shape.width);
    if (shape.channels === 1) x = tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), -1, true) as Tensor4D;
    if (range && !isIdentityRange(range)) x = tf.add(tf.mul(x, range.hi - range.lo), range.lo) as Tensor4D;
    return x;
  });
}
