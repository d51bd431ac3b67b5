/**
 * The artwork of the print files (pdf.ts lays it out): the optimised sticker sampled bilinearly,
 * as the EOT warp sees it, over a crisp high-resolution rendering of the clean sign, with colours
 * extended past the cut line (the bleed) so an imprecise cut leaves no white rim.
 */
import sharp from 'sharp';
import { renderSignRGBA } from '../data/synthetic';
import type { StickerResult } from './optimize';
import { alphaOf, rasterizeMask } from './masks';

/** PDF points per millimetre. */
export const MM = 72 / 25.4;
export const mm = (v: number): number => v * MM;

/** Fills pixels where known < threshold from their known neighbours, outwards (for the bleed). */
function extend(rgb: Float32Array, known: Float32Array, size: number, threshold = 0.02): Float32Array {
  const out = Float32Array.from(rgb);
  let have = Uint8Array.from(known, (k) => (k >= threshold ? 1 : 0));
  for (let iter = 0; iter < size; iter++) {
    const next = Uint8Array.from(have);
    let changed = false;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        if (have[i]) continue;
        let r = 0,
          g = 0,
          b = 0,
          k = 0;
        for (const [dx, dy] of [
          [1, 0],
          [-1, 0],
          [0, 1],
          [0, -1],
          [1, 1],
          [-1, -1],
          [1, -1],
          [-1, 1],
        ]) {
          const nx = x + dx,
            ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= size || ny >= size) continue;
          const j = ny * size + nx;
          if (!have[j]) continue;
          r += out[3 * j];
          g += out[3 * j + 1];
          b += out[3 * j + 2];
          k++;
        }
        if (k) {
          out[3 * i] = r / k;
          out[3 * i + 1] = g / k;
          out[3 * i + 2] = b / k;
          next[i] = 1;
          changed = true;
        }
      }
    }
    have = next;
    if (!changed) break;
  }
  return out;
}

/** Bilinear lookup at relative (u, v) ∈ [0, 1]² of a size² map with `ch` channels (edge-clamped). */
function sample(img: Float32Array, size: number, ch: number, u: number, v: number, out: number[], stride = ch, offset = 0): void {
  const fx = Math.min(size - 1, Math.max(0, u * size - 0.5)),
    fy = Math.min(size - 1, Math.max(0, v * size - 0.5));
  const x0 = Math.floor(fx),
    y0 = Math.floor(fy),
    x1 = Math.min(size - 1, x0 + 1),
    y1 = Math.min(size - 1, y0 + 1);
  const ax = fx - x0,
    ay = fy - y0;
  for (let c = 0; c < ch; c++) {
    const p = (x: number, y: number) => img[(y * size + x) * stride + offset + c];
    out[c] = (p(x0, y0) * (1 - ax) + p(x1, y0) * ax) * (1 - ay) + (p(x0, y1) * (1 - ax) + p(x1, y1) * ax) * ay;
  }
}

/** Chamfer distance (in pixels) to the nearest pixel with field ≥ 0.5. */
function distanceMap(field: Float32Array, size: number): Float32Array {
  const d = new Float32Array(size * size);
  for (let i = 0; i < d.length; i++) d[i] = field[i] >= 0.5 ? 0 : 1e9;
  const D = Math.SQRT2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      if (x > 0) d[i] = Math.min(d[i], d[i - 1] + 1);
      if (y > 0) {
        d[i] = Math.min(d[i], d[i - size] + 1);
        if (x > 0) d[i] = Math.min(d[i], d[i - size - 1] + D);
        if (x < size - 1) d[i] = Math.min(d[i], d[i - size + 1] + D);
      }
    }
  }
  for (let y = size - 1; y >= 0; y--) {
    for (let x = size - 1; x >= 0; x--) {
      const i = y * size + x;
      if (x < size - 1) d[i] = Math.min(d[i], d[i + 1] + 1);
      if (y < size - 1) {
        d[i] = Math.min(d[i], d[i + size] + 1);
        if (x < size - 1) d[i] = Math.min(d[i], d[i + size + 1] + D);
        if (x > 0) d[i] = Math.min(d[i], d[i + size - 1] + D);
      }
    }
  }
  return d;
}

/** Everything needed to draw the attack at any resolution. */
export interface Artwork {
  signMm: number;
  /** High-resolution grid (Rc²) over the sign's bounding square. */
  Rc: number;
  cleanHi: Float32Array;
  alphaHi: Float32Array;
  /** Cut field: what is printed and cut out (sticker mask ∧ sign, or the sign). */
  cutHi: Float32Array;
  /** Distance to the cut region, Rc pixels. */
  cutDist: Float32Array;
  /** Low-resolution printed colours, extended past their region for the bleed (R²×3). */
  inkExt: Float32Array;
  /** Sign mode: perturbation δ (R²×3) extended. */
  deltaExt: Float32Array | null;
  R: number;
  mode: 'sticker' | 'sign';
}

export function buildArtwork(r: StickerResult, signMm: number): Artwork {
  const R = r.canvasSize;
  // ~0.5 mm per cut-grid pixel, between 512 and 1024 (the renderer's limit).
  const Rc = Math.max(512, Math.min(1024, Math.ceil(signMm * 2)));
  const hi = renderSignRGBA(r.classId, Rc, { margin: 0 }).rgba;
  const alphaHi = alphaOf(hi);
  const cutHi = r.maskSpec ? rasterizeMask(r.maskSpec, Rc, alphaHi, 2) : alphaHi;
  let inkExt: Float32Array,
    deltaExt: Float32Array | null = null;
  if (r.mode === 'sticker') {
    inkExt = extend(r.sticker, r.printed, R);
  } else {
    const delta = new Float32Array(R * R * 3);
    for (let i = 0; i < R * R; i++) for (let c = 0; c < 3; c++) delta[3 * i + c] = r.adversarial[4 * i + c] - r.clean[4 * i + c];
    const alpha = alphaOf(r.clean);
    deltaExt = extend(delta, alpha, R, 0.5);
    inkExt = extend(r.sticker, alpha, R, 0.5);
  }
  return { signMm, Rc, cleanHi: hi, alphaHi, cutHi, cutDist: distanceMap(cutHi, Rc), inkExt, deltaExt, R, mode: r.mode };
}

/**
 * The adversarial sign's colour at relative (u, v): sticker mode mixes the crisp clean sign and the
 * sticker by the high-resolution mask; sign mode adds the perturbation to the crisp clean sign.
 */
function adversarialAt(a: Artwork, u: number, v: number, out: number[], tmp: number[]): void {
  const clean = [0, 0, 0, 0];
  sample(a.cleanHi, a.Rc, 4, u, v, clean);
  if (a.mode === 'sticker') {
    sample(a.cutHi, a.Rc, 1, u, v, tmp);
    const m = tmp[0];
    sample(a.inkExt, a.R, 3, u, v, tmp);
    for (let c = 0; c < 3; c++) out[c] = clean[c] * (1 - m) + tmp[c] * m;
  } else {
    sample(a.deltaExt as Float32Array, a.R, 3, u, v, tmp);
    for (let c = 0; c < 3; c++) out[c] = Math.min(1, Math.max(0, clean[c] + tmp[c]));
  }
  out[3] = clean[3];
}

/**
 * Raster of the region [x, x+w]×[y, y+h] (mm, sign coordinates) at `dpi`. kind 'piece': printed
 * colours inside the cut region and the bleed, white beyond (or transparent with `alpha`);
 * kind 'sign': the whole adversarial sign, white/transparent outside it.
 */
export function raster(
  a: Artwork,
  box: { x: number; y: number; w: number; h: number },
  dpi: number,
  kind: 'piece' | 'sign',
  bleedMm: number,
  alpha: boolean,
): { data: Buffer; width: number; height: number } {
  const W = Math.max(1, Math.round((box.w / 25.4) * dpi)),
    H = Math.max(1, Math.round((box.h / 25.4) * dpi));
  const ch = alpha ? 4 : 3;
  const data = Buffer.alloc(W * H * ch);
  const col = [0, 0, 0, 0],
    tmp = [0, 0, 0, 0];
  const pxMm = a.signMm / a.Rc;
  for (let py = 0; py < H; py++) {
    const v = (box.y + ((py + 0.5) / H) * box.h) / a.signMm;
    for (let px = 0; px < W; px++) {
      const u = (box.x + ((px + 0.5) / W) * box.w) / a.signMm;
      let cover: number;
      if (kind === 'sign') {
        adversarialAt(a, u, v, col, tmp);
        cover = u < 0 || v < 0 || u > 1 || v > 1 ? 0 : col[3];
      } else {
        // Distance (mm) to the cut region, plus how far outside the sign's square we are.
        const gx = Math.min(a.Rc - 1, Math.max(0, Math.floor(u * a.Rc))),
          gy = Math.min(a.Rc - 1, Math.max(0, Math.floor(v * a.Rc)));
        const outside = Math.hypot(Math.max(0, -u, u - 1), Math.max(0, -v, v - 1)) * a.signMm;
        cover = a.cutDist[gy * a.Rc + gx] * pxMm + outside <= bleedMm ? 1 : 0;
        if (cover === 0) {
          // Nothing printed here: white paper (or transparent); skip the sampling.
          const o = (py * W + px) * ch;
          if (alpha) data[o + 3] = 0;
          else data.fill(255, o, o + 3);
          continue;
        }
        if (a.mode === 'sign') {
          adversarialAt(a, u, v, col, tmp);
          // Past the sign's edge (the bleed) continue the printed colours outwards.
          if (col[3] < 0.5 || outside > 0) sample(a.inkExt, a.R, 3, u, v, col);
        } else {
          sample(a.inkExt, a.R, 3, u, v, col);
        }
      }
      const o = (py * W + px) * ch;
      for (let c = 0; c < 3; c++) {
        const val = Math.min(1, Math.max(0, col[c]));
        // Opaque output is composited over white paper.
        data[o + c] = Math.round((alpha ? val : val * cover + (1 - cover)) * 255);
      }
      if (alpha) data[o + 3] = Math.round(cover * 255);
    }
  }
  return { data, width: W, height: H };
}

export async function png(r: { data: Buffer; width: number; height: number }, channels: 3 | 4, dpi: number): Promise<Buffer> {
  return sharp(r.data, { raw: { width: r.width, height: r.height, channels } })
    .withMetadata({ density: dpi })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** A 600 px preview of the clean or the adversarial sign on white (the overview page). */
export async function previewPng(a: Artwork, kind: 'clean' | 'adv'): Promise<Buffer> {
  const px = 600;
  const data = Buffer.alloc(px * px * 3);
  const col = [0, 0, 0, 0],
    tmp = [0, 0, 0, 0];
  for (let py = 0; py < px; py++) {
    for (let qx = 0; qx < px; qx++) {
      const u = (qx + 0.5) / px,
        v = (py + 0.5) / px;
      if (kind === 'clean') sample(a.cleanHi, a.Rc, 4, u, v, col);
      else adversarialAt(a, u, v, col, tmp);
      for (let c = 0; c < 3; c++) data[3 * (py * px + qx) + c] = Math.round((Math.min(1, Math.max(0, col[c])) * col[3] + (1 - col[3])) * 255);
    }
  }
  return sharp(data, { raw: { width: px, height: px, channels: 3 } })
    .png()
    .toBuffer();
}
