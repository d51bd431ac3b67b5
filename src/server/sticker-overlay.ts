/**
 * The virtual sticker: a `sticker` run's layer drawn onto the sign in the region of interest, so
 * the class sees what the printed sticker does before printing it. The layer covers the sign's
 * bounding square; in the model input that square is centred and spans `layer.signFraction` of
 * the side (the run's clean view), so the layer is scaled to the ROI, not to the sign found in it.
 *
 * The layer is resampled once, at load, to the model input (premultiplied, 8×8 samples per
 * pixel: an area average), so each frame costs one blend over the model input:
 *   input' = input · (1 − A) + P
 * which equals drawing the layer onto the ROI at full resolution and then shrinking it.
 */
import * as fs from 'node:fs';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import { CLASS_NAMES } from '../data/classes';
import { requireSameModel } from '../sticker/layer';
import { decodeLayer, LayerImage, layerFileOf, parseStickerRun, readStickerRun, StickerRun } from '../sticker/run-file';
import type { StickerSummary } from './protocol';

export class StickerOverlay {
  /** Premultiplied colour (s²×3) and coverage (s²) at the model input's size. */
  private readonly premul: Float32Array;
  private readonly cover: Float32Array;

  constructor(
    layer: LayerImage,
    signFraction: number,
    readonly size: number,
  ) {
    const s = size,
      L = layer.size,
      SS = 8;
    this.premul = new Float32Array(s * s * 3);
    this.cover = new Float32Array(s * s);
    const side = signFraction * s;
    const x0 = (s - side) / 2;
    const inv = 1 / (SS * SS);
    for (let oy = 0; oy < s; oy++) {
      for (let ox = 0; ox < s; ox++) {
        let a = 0,
          r = 0,
          g = 0,
          b = 0;
        for (let j = 0; j < SS; j++) {
          const v = (oy + (j + 0.5) / SS - x0) / side;
          if (v < 0 || v >= 1) continue;
          const ly = Math.min(L - 1, Math.floor(v * L));
          for (let i = 0; i < SS; i++) {
            const u = (ox + (i + 0.5) / SS - x0) / side;
            if (u < 0 || u >= 1) continue;
            const k = ly * L + Math.min(L - 1, Math.floor(u * L));
            const al = layer.alpha[k];
            a += al;
            r += al * layer.rgb[3 * k];
            g += al * layer.rgb[3 * k + 1];
            b += al * layer.rgb[3 * k + 2];
          }
        }
        const o = oy * s + ox;
        this.cover[o] = a * inv;
        this.premul[3 * o] = r * inv;
        this.premul[3 * o + 1] = g * inv;
        this.premul[3 * o + 2] = b * inv;
      }
    }
  }

  /** The model input (s²×3 in [0, 1]) with the sticker drawn on: a new array. */
  apply(input: Float32Array): Float32Array {
    const out = new Float32Array(input.length);
    for (let p = 0, i = 0; p < this.cover.length; p++) {
      const keep = 1 - this.cover[p];
      for (let c = 0; c < 3; c++, i++) out[i] = input[i] * keep + this.premul[i];
    }
    return out;
  }

  /** Share of the model input the sticker covers (for the page and the logs). */
  coverage(): number {
    let a = 0;
    for (const v of this.cover) a += v;
    return a / this.cover.length;
  }
}

export interface LoadedSticker {
  summary: StickerSummary;
  run: StickerRun;
  overlay: StickerOverlay;
}

export function stickerName(run: StickerRun): string {
  const to = run.target ? (CLASS_NAMES[run.target.classId] ?? run.target.name) : 'any other class';
  return `${CLASS_NAMES[run.classId] ?? run.className} → ${to}`;
}

/**
 * Builds a virtual sticker from a run (already parsed) and its layer PNG, after checking both
 * belong to this classifier. `where` names the source in error messages.
 */
export async function stickerFromRun(
  run: StickerRun,
  png: Buffer,
  clf: Classifier,
  meta: Pick<StickerSummary, 'id' | 'origin' | 'pdf'>,
  where: string,
): Promise<LoadedSticker> {
  await requireSameModel(run.modelCheck, clf, where);
  const layer = await decodeLayer(png, run, run.layer.file);
  const overlay = new StickerOverlay(layer, run.layer.signFraction, clf.inputSize);
  if (overlay.coverage() === 0) throw new UserError(`${run.layer.file} is fully transparent: there is no sticker to draw`);
  return {
    run,
    overlay,
    summary: {
      ...meta,
      name: stickerName(run),
      classId: run.classId,
      className: CLASS_NAMES[run.classId] ?? run.className,
      target: run.target,
      mode: run.mode,
      signMm: run.signMm,
      heldOutSuccess: run.heldOutSuccess,
    },
  };
}

/** `serve --sticker RUN.json`: the run JSON and the layer PNG beside it. */
export async function stickerFromFile(jsonFile: string, clf: Classifier, meta: Pick<StickerSummary, 'id' | 'origin' | 'pdf'>): Promise<LoadedSticker> {
  const run = readStickerRun(jsonFile, clf.numClasses);
  const layerFile = layerFileOf(jsonFile, run);
  let png: Buffer;
  try {
    png = fs.readFileSync(layerFile);
  } catch {
    throw new UserError(`sticker layer ${layerFile} not found: it is written beside the run's JSON by 'advsign sticker'`);
  }
  return stickerFromRun(run, png, clf, meta, jsonFile);
}

/** An uploaded run (the page's file picker): the JSON's text and the layer's bytes. */
export async function stickerFromUpload(
  jsonText: string,
  png: Buffer,
  clf: Classifier,
  meta: Pick<StickerSummary, 'id' | 'origin' | 'pdf'>,
  name: string,
): Promise<LoadedSticker> {
  let v: unknown;
  try {
    v = JSON.parse(jsonText);
  } catch {
    throw new UserError(`${name} is not JSON: pick the .json file 'advsign sticker' wrote`);
  }
  return stickerFromRun(parseStickerRun(v, name, clf.numClasses), png, clf, meta, name);
}
