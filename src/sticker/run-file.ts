/**
 * Reading back what `advsign sticker` writes: the run JSON (validated field by field, one-line
 * errors) and its layer PNG (see layer.ts for the contract).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { UserError } from '../data/types';
import type { LayerInfo, ModelCheck } from './layer';

/** One line of `advsign sticker --progress-json` (what a print job's parent reads). */
export type StickerProgressEvent =
  | { event: 'progress'; phase: 'optimise'; done: number; total: number; batchSuccess: number }
  | { event: 'progress'; phase: 'measure' | 'export'; done: 0; total: 0 }
  | { event: 'done'; json: string };

export interface StickerRun {
  mode: 'sticker' | 'sign';
  classId: number;
  className: string;
  target: { classId: number; name: string } | null;
  signMm: number;
  layer: LayerInfo;
  modelCheck: ModelCheck;
  /** Held-out EOT success rate the run measured (null when absent). */
  heldOutSuccess: number | null;
}

/** The layer decoded: straight RGB in [0, 1] (size²×3) and alpha (size²). */
export interface LayerImage {
  size: number;
  rgb: Float32Array;
  alpha: Float32Array;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function classIdOf(v: unknown, numClasses: number): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < numClasses ? v : null;
}

/** Validates a parsed run JSON; `where` names it in errors (a file name). */
export function parseStickerRun(v: unknown, where: string, numClasses = 43): StickerRun {
  const bad = (what: string): never => {
    throw new UserError(`${where} is not an advsign sticker run: ${what}`);
  };
  if (!isObject(v) || typeof v.advsign !== 'string') return bad("no 'advsign' version field (pick the .json that 'advsign sticker' wrote)");
  if (v.mode !== 'sticker' && v.mode !== 'sign') return bad("'mode' must be sticker or sign");
  const sign = isObject(v.sign) ? classIdOf(v.sign.classId, 1000) : null;
  if (sign === null) return bad("'sign.classId' is missing");
  let target: StickerRun['target'] = null;
  if (v.target !== null) {
    const t = isObject(v.target) ? classIdOf(v.target.classId, 1000) : null;
    if (t === null) return bad("'target' must be null or {classId, name}");
    target = { classId: t, name: String((v.target as Record<string, unknown>).name ?? t) };
  }
  const layer = v.layer;
  if (!isObject(layer) || !isObject(v.modelCheck)) {
    throw new UserError(`${where} has no sticker layer (written by an older advsign): run 'advsign sticker' again`);
  }
  if (typeof layer.file !== 'string' || path.basename(layer.file) !== layer.file || !layer.file.endsWith('.png'))
    return bad("'layer.file' must be a PNG file name");
  const size = layer.size;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 8 || size > 1024) return bad("'layer.size' must be 8…1024");
  const frac = layer.signFraction;
  if (typeof frac !== 'number' || !(frac > 0.1 && frac <= 1)) return bad("'layer.signFraction' must be in (0.1, 1]");
  const mc = v.modelCheck;
  const logits = mc.probeLogits;
  if (
    typeof mc.inputSize !== 'number' ||
    typeof mc.numClasses !== 'number' ||
    !Array.isArray(logits) ||
    logits.length !== mc.numClasses ||
    !logits.every((z) => typeof z === 'number' && Number.isFinite(z))
  ) {
    return bad("'modelCheck' must hold inputSize, numClasses and one probe logit per class");
  }
  if (sign >= numClasses || (target && target.classId >= numClasses)) {
    throw new UserError(`${where} is for a model with more classes (sign ${sign}${target ? `, target ${target.classId}` : ''}); this model has ${numClasses}`);
  }
  const signName = isObject(v.sign) && typeof v.sign.name === 'string' ? v.sign.name : String(sign);
  const held = isObject(v.heldOut) && isObject(v.heldOut.eot) && typeof v.heldOut.eot.successRate === 'number' ? v.heldOut.eot.successRate : null;
  return {
    mode: v.mode,
    classId: sign,
    className: signName,
    target,
    signMm: typeof v.signMm === 'number' ? v.signMm : 0,
    layer: { file: layer.file, size, covers: 'sign bounding square', signFraction: frac },
    modelCheck: { inputSize: mc.inputSize, numClasses: mc.numClasses, probeLogits: logits as number[] },
    heldOutSuccess: held,
  };
}

/** Reads and validates a run JSON file. */
export function readStickerRun(file: string, numClasses?: number): StickerRun {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`sticker run ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message.split('\n')[0]}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UserError(`sticker run ${file} is not JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseStickerRun(v, path.basename(file), numClasses);
}

/** Decodes a layer PNG and checks it against the run's stated size. */
export async function decodeLayer(png: Buffer, run: StickerRun, where: string): Promise<LayerImage> {
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`${where} is not a readable PNG: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
  }
  const { width, height, channels } = raw.info;
  if (width !== run.layer.size || height !== run.layer.size || channels !== 4) {
    throw new UserError(`${where} is ${width}×${height}, the run says ${run.layer.size}×${run.layer.size}: the files do not belong together`);
  }
  const n = width * height;
  const rgb = new Float32Array(n * 3),
    alpha = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = raw.data[4 * i + c] / 255;
    alpha[i] = raw.data[4 * i + 3] / 255;
  }
  return { size: width, rgb, alpha };
}

/** The layer PNG beside a run JSON file. */
export function layerFileOf(jsonFile: string, run: StickerRun): string {
  return path.join(path.dirname(jsonFile), run.layer.file);
}
