/**
 * The sticker layer: what a `sticker` run prints, alone, over the sign's bounding square, plus
 * the run-JSON fields that say where it goes and which model it was made for. Written by
 * `advsign sticker`, read by the live daemon's virtual sticker (and later tools).
 *
 * Contract (`<base>-layer.png` beside `<base>.json`; the JSON's `layer` and `modelCheck` blocks):
 *   - the PNG is RGBA, `layer.size` × `layer.size` pixels, covering the sign's bounding square
 *     (the square the sign is drawn into, its wider side edge to edge: the mask coordinates);
 *   - alpha = printed coverage (sticker ∧ sign; the whole sign in `--mode sign`), RGB = the
 *     printed colours, straight (not premultiplied); fully transparent pixels carry black;
 *   - `layer.signFraction`: in a model-input crop of the sign, its bounding square is centred and
 *     spans this fraction of the crop's side (the clean view the optimisation is centred on);
 *   - `modelCheck`: the model's input size, class count and its logits on a fixed probe image, so
 *     a reader can refuse a layer made for another model.
 */
import sharp from 'sharp';
import { tf } from '../inference/tf';
import { Classifier, inferLogits } from '../inference/model';
import { UserError } from '../data/types';
import { CLEAN_VIEW } from './eot';
import type { StickerResult } from './optimize';

export const LAYER_SIGN_FRACTION = CLEAN_VIEW.scaleRange[0];

export interface LayerInfo {
  /** File name of the layer PNG, in the run JSON's folder. */
  file: string;
  size: number;
  covers: 'sign bounding square';
  signFraction: number;
}

export interface ModelCheck {
  inputSize: number;
  numClasses: number;
  /** Logits on probeImage(inputSize), rounded to 4 decimals. */
  probeLogits: number[];
}

/** The layer of an optimised sticker (or printed sign) as an 8-bit RGBA PNG. */
export async function layerPng(r: Pick<StickerResult, 'canvasSize' | 'sticker' | 'printed'>): Promise<Buffer> {
  const R = r.canvasSize;
  const out = Buffer.alloc(R * R * 4);
  const byte = (v: number) => Math.max(0, Math.min(255, Math.round(v * 255)));
  for (let i = 0; i < R * R; i++) {
    const a = byte(r.printed[i]);
    if (a === 0) continue;
    for (let c = 0; c < 3; c++) out[4 * i + c] = byte(r.sticker[3 * i + c]);
    out[4 * i + 3] = a;
  }
  return sharp(out, { raw: { width: R, height: R, channels: 4 } })
    .png()
    .toBuffer();
}

/**
 * A fixed image that depends on nothing but its size (plain arithmetic, no renderer, no RNG),
 * so its logits identify a model's weights across versions and backends.
 */
export function probeImage(size: number): Float32Array {
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) out[3 * (y * size + x) + c] = ((x * 7 + y * 13 + c * 29) % 32) / 31;
    }
  }
  return out;
}

export async function modelCheck(clf: Classifier): Promise<ModelCheck> {
  const s = clf.inputSize;
  const x = tf.tensor4d(probeImage(s), [1, s, s, 3]);
  const z = await inferLogits(clf, x);
  const logits = Array.from(await z.data(), (v) => Math.round(v * 1e4) / 1e4);
  tf.dispose([x, z]);
  return { inputSize: s, numClasses: clf.numClasses, probeLogits: logits };
}

/**
 * Throws a one-line UserError unless `clf` is the model `check` was made with. Logits may differ
 * by float rounding between backends (~1e-4); another model's differ by whole units.
 */
export async function requireSameModel(check: ModelCheck, clf: Classifier, what: string): Promise<void> {
  if (check.inputSize !== clf.inputSize) {
    throw new UserError(`${what} was made for a ${check.inputSize}×${check.inputSize} model; this model takes ${clf.inputSize}×${clf.inputSize}`);
  }
  if (check.numClasses !== clf.numClasses) {
    throw new UserError(`${what} was made for a model with ${check.numClasses} classes; this one has ${clf.numClasses}`);
  }
  const mine = await modelCheck(clf);
  let worst = 0;
  for (let i = 0; i < mine.probeLogits.length; i++) {
    const d = Math.abs(mine.probeLogits[i] - check.probeLogits[i]) / (1 + Math.abs(check.probeLogits[i]));
    worst = Math.max(worst, d);
  }
  if (!(worst <= 1e-2))
    throw new UserError(`${what} was made for another model (its probe logits differ from this model's): run 'advsign sticker' with this model`);
}
