/**
 * Deterministic synthetic GTSRB-like traffic signs: the embedded default dataset.
 *
 * Each class is drawn once (per texture size) with @napi-rs/canvas from
 * SIGN_SPECS into a premultiplied RGBA texture covering the unit square
 * [-1, 1]^2. Text and digits are drawn as our own stroke glyphs, never with
 * fillText, so the result does not depend on installed fonts. Augmented images
 * are produced in plain JS: a projective warp of the texture onto a generated
 * background at 2x supersampling, blur, box downsampling, lighting and noise,
 * all driven by the seeded PRNG, so equal seeds give bit-identical output.
 *
 * The parts, in drawing order: colours, glyphs, geometry, pictograms, textures (one canvas
 * drawing per class), scene (the random parameters), backgrounds, warp (compositing); this file
 * holds the public functions.
 */
import { writeFileSync } from 'fs';
import { createCanvas } from '@napi-rs/canvas';
import { ImageSet, UserError } from '../types';
import { NUM_CLASSES, SIGN_SPECS } from '../classes';
import { createRng, hashSeed } from '../random';
import { DatasetOptions, PreviewOptions, RenderOptions, SignRGBA } from './types';

export type { DatasetOptions, PreviewOptions, RenderOptions, SignRGBA } from './types';
import { drawText } from './glyphs';
import { signTexture, textureSizeFor } from './textures';
import { canonicalParams, jitterParams, sampleParams } from './scene';
import { renderScene, signHomography, supersampling, warpSign } from './warp';

function checkSize(size: number): number {
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw new UserError(`image size must be an integer in 8..1024, got ${size}`);
  return size;
}

function checkClass(classId: number): void {
  if (!Number.isInteger(classId) || classId < 0 || classId >= NUM_CLASSES) {
    throw new UserError(`class id must be an integer in 0..${NUM_CLASSES - 1}, got ${classId}`);
  }
}

/** One synthetic image of `classId`: size*size*3 floats in [0, 1], NHWC RGB. */
export function renderSign(classId: number, opts: RenderOptions): Float32Array {
  checkClass(classId);
  const size = checkSize(opts.size ?? 32);
  const augment = opts.augment ?? true;
  const background = opts.background ?? (augment ? 'random' : 'plain');
  const seed = hashSeed(opts.seed, classId);
  const p = augment ? sampleParams(createRng(seed), background) : canonicalParams(background, seed);
  const out = new Float32Array(size * size * 3);
  renderScene(classId, p, size, out, 0);
  return out;
}

/** The sign without augmentation, centred at 80 % of the image on a neutral grey background. */
export function renderCleanSign(classId: number, size = 32): Float32Array {
  return renderSign(classId, { size, seed: 0, augment: false, background: 'plain' });
}

/**
 * The sign alone with transparency, scaled so its wider side spans the image
 * minus `margin` (fraction of the side) on each edge.
 */
export function renderSignRGBA(classId: number, size: number, opts: { margin?: number } = {}): SignRGBA {
  checkClass(classId);
  checkSize(size);
  const margin = opts.margin ?? 0;
  if (!(margin >= 0 && margin < 0.5)) throw new UserError(`margin must be in [0, 0.5), got ${margin}`);
  const ss = supersampling(size);
  const R = size * ss;
  const p = canonicalParams('plain', 0);
  p.scale = 1 - 2 * margin;
  const shape = SIGN_SPECS[classId].shape;
  const layer = new Float32Array(R * R * 4);
  warpSign(signTexture(classId, textureSizeFor(R)), signHomography(p, shape, R), R, p, layer);
  const rgba = new Float32Array(size * size * 4);
  const inv = 1 / (ss * ss);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const acc = [0, 0, 0, 0];
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const o = 4 * ((y * ss + sy) * R + x * ss + sx);
          for (let c = 0; c < 4; c++) acc[c] += layer[o + c];
        }
      }
      const a = acc[3] * inv;
      const o = 4 * (y * size + x);
      // Un-premultiply so colours stay true at antialiased edges.
      for (let c = 0; c < 3; c++) rgba[o + c] = a > 0 ? Math.min(1, (acc[c] * inv) / a) : 0;
      rgba[o + 3] = Math.min(1, a);
    }
  }
  return { rgba, size, classId, shape };
}

/**
 * A labelled synthetic dataset: `perClass` images per class, in groups of
 * `groupSize` frames named `synthetic-<class>-<k>` that share background and base
 * pose (like a GTSRB track), so splits by group never leak near-duplicates.
 */
export function renderDataset(opts: DatasetOptions): ImageSet {
  const size = checkSize(opts.size ?? 32);
  const seed = opts.seed ?? 1;
  const augment = opts.augment ?? true;
  const groupSize = opts.groupSize ?? 5;
  const perClass = opts.perClass;
  if (!Number.isInteger(perClass) || perClass < 0) throw new UserError(`perClass must be a non-negative integer, got ${perClass}`);
  if (!Number.isInteger(groupSize) || groupSize < 1) throw new UserError(`groupSize must be a positive integer, got ${groupSize}`);
  const classes = opts.classes ?? Array.from({ length: NUM_CLASSES }, (_, i) => i);
  for (const c of classes) checkClass(c);
  const n = perClass * classes.length;
  const px = size * size * 3;
  const images = new Float32Array(n * px);
  const labels = new Int32Array(n);
  const groups: string[] = new Array<string>(n);
  let idx = 0;
  for (const c of classes) {
    for (let k = 0; k * groupSize < perClass; k++) {
      const groupSeed = hashSeed(seed, c, k);
      const base = augment ? sampleParams(createRng(groupSeed), 'random') : canonicalParams('random', groupSeed);
      const frames = Math.min(groupSize, perClass - k * groupSize);
      for (let f = 0; f < frames; f++) {
        const p = augment ? jitterParams(base, createRng(hashSeed(groupSeed, f + 1)), f) : base;
        renderScene(c, p, size, images, idx * px);
        labels[idx] = c;
        groups[idx] = `synthetic-${c}-${k}`;
        idx++;
      }
      opts.onProgress?.(idx, n);
    }
  }
  return { images, labels, groups, size, n };
}

/** PNG bytes of a grid of all 43 classes (class id under each cell), for docs and eyeballing. */
export function renderPreviewPng(opts: PreviewOptions = {}): Buffer {
  const size = checkSize(opts.size ?? 64);
  const zoom = opts.zoom ?? (size < 48 ? 2 : 1);
  if (!Number.isInteger(zoom) || zoom < 1 || zoom > 16) throw new UserError(`zoom must be an integer in 1..16, got ${zoom}`);
  const columns = opts.columns ?? 9;
  const labels = opts.labels ?? true;
  const seed = opts.seed ?? 1;
  const cell = size * zoom;
  const pad = 6;
  const labelH = labels ? 16 : 0;
  const rows = Math.ceil(NUM_CLASSES / columns);
  const width = columns * (cell + pad) + pad;
  const height = rows * (cell + pad + labelH) + pad;
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  for (let c = 0; c < NUM_CLASSES; c++) {
    const img = opts.augment ? renderSign(c, { size, seed, augment: true }) : renderCleanSign(c, size);
    const data = ctx.createImageData(cell, cell);
    for (let y = 0; y < cell; y++) {
      for (let x = 0; x < cell; x++) {
        const s = 3 * (Math.floor(y / zoom) * size + Math.floor(x / zoom));
        const d = 4 * (y * cell + x);
        data.data[d] = Math.round(img[s] * 255);
        data.data[d + 1] = Math.round(img[s + 1] * 255);
        data.data[d + 2] = Math.round(img[s + 2] * 255);
        data.data[d + 3] = 255;
      }
    }
    const gx = pad + (c % columns) * (cell + pad);
    const gy = pad + Math.floor(c / columns) * (cell + pad + labelH);
    ctx.putImageData(data, gx, gy);
    if (labels) {
      ctx.strokeStyle = '#000000';
      drawText(ctx, String(c), gx + cell / 2, gy + cell + labelH / 2 + 1, 10, 1.6, 2);
    }
  }
  return canvas.toBuffer('image/png');
}

/** Writes renderPreviewPng(opts) to `path`. */
export function writePreview(path: string, opts: PreviewOptions = {}): void {
  writeFileSync(path, renderPreviewPng(opts));
}
