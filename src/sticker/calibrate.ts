/**
 * Printer colours from a photo of the PDF's calibration strip (as RP2 measured theirs): find the
 * four corner marks (black square rings with a dot: under a local-mean threshold, so uneven light
 * does not matter, they are the only dark components with a dark dot alone in a light hole), map
 * the strip's layout into the photo with the homography they give (perspective), and read every
 * patch (median of its inner part) relative to the paper white right around it, which cancels
 * uneven light and the camera's white balance. The four cyclic orders of the marks are tried and
 * the one that matches the intended colours best wins (the photo may be upside down).
 */
import { RgbImage, resizeRgb } from '../data/image-io';
import { UserError } from '../data/types';
import { deltaE, paperPoints, stripLayout, StripLayout } from './calibration-strip';
import type { Rgb } from './palette';

export interface PatchReading {
  index: number;
  intended: Rgb;
  /** As printed and photographed, relative to the paper white around it. */
  printed: Rgb;
  deltaE: number;
}

export interface Calibration {
  patches: PatchReading[];
  /** Mark centres found in the photo (pixels of the photo), top-left first, clockwise. */
  marks: [number, number][];
  meanDeltaE: number;
  maxDeltaE: number;
}

type H8 = number[];

/** Homography (8 parameters, h33 = 1) mapping src[i] → dst[i], 4 point pairs. */
export function homography4(src: [number, number][], dst: [number, number][]): H8 | null {
  const A: number[][] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = src[i],
      [u, v] = dst[i];
    A.push([x, y, 1, 0, 0, 0, -u * x, -u * y, u]);
    A.push([0, 0, 0, x, y, 1, -v * x, -v * y, v]);
  }
  for (let c = 0; c < 8; c++) {
    let p = c;
    for (let r = c + 1; r < 8; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    if (Math.abs(A[p][c]) < 1e-12) return null;
    [A[c], A[p]] = [A[p], A[c]];
    for (let r = 0; r < 8; r++) {
      if (r === c) continue;
      const f = A[r][c] / A[c][c];
      for (let k = c; k < 9; k++) A[r][k] -= f * A[c][k];
    }
  }
  return A.map((row, i) => row[8] / row[i]);
}

function apply(h: H8, x: number, y: number): [number, number] {
  const z = h[6] * x + h[7] * y + 1;
  return [(h[0] * x + h[1] * y + h[2]) / z, (h[3] * x + h[4] * y + h[5]) / z];
}

function luma(img: RgbImage): Float32Array {
  const n = img.width * img.height,
    L = new Float32Array(n);
  for (let i = 0; i < n; i++) L[i] = 0.299 * img.data[3 * i] + 0.587 * img.data[3 * i + 1] + 0.114 * img.data[3 * i + 2];
  return L;
}

/** Dark = well below the local mean (box window of radius r, via an integral image). */
function darkMask(L: Float32Array, w: number, h: number, r: number): Uint8Array {
  const I = new Float64Array((w + 1) * (h + 1));
  for (let y = 0; y < h; y++) {
    let row = 0;
    for (let x = 0; x < w; x++) {
      row += L[y * w + x];
      I[(y + 1) * (w + 1) + x + 1] = I[y * (w + 1) + x + 1] + row;
    }
  }
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const y0 = Math.max(0, y - r),
      y1 = Math.min(h, y + r + 1);
    for (let x = 0; x < w; x++) {
      const x0 = Math.max(0, x - r),
        x1 = Math.min(w, x + r + 1);
      const s = I[y1 * (w + 1) + x1] - I[y0 * (w + 1) + x1] - I[y1 * (w + 1) + x0] + I[y0 * (w + 1) + x0];
      out[y * w + x] = L[y * w + x] < 0.65 * (s / ((x1 - x0) * (y1 - y0))) ? 1 : 0;
    }
  }
  return out;
}

interface Blob {
  area: number;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  sx: number;
  sy: number;
}

function blobs(mask: Uint8Array, w: number, h: number): { label: Int32Array; list: Blob[] } {
  const label = new Int32Array(w * h).fill(-1);
  const list: Blob[] = [];
  const stack: number[] = [];
  for (let s = 0; s < w * h; s++) {
    if (!mask[s] || label[s] >= 0) continue;
    const b: Blob = { area: 0, x0: w, y0: h, x1: 0, y1: 0, sx: 0, sy: 0 };
    label[s] = list.length;
    stack.push(s);
    while (stack.length) {
      const p = stack.pop() as number;
      const x = p % w,
        y = (p - x) / w;
      b.area++;
      b.sx += x;
      b.sy += y;
      if (x < b.x0) b.x0 = x;
      if (x > b.x1) b.x1 = x;
      if (y < b.y0) b.y0 = y;
      if (y > b.y1) b.y1 = y;
      for (const q of [x > 0 ? p - 1 : -1, x < w - 1 ? p + 1 : -1, y > 0 ? p - w : -1, y < h - 1 ? p + w : -1]) {
        if (q >= 0 && mask[q] && label[q] < 0) {
          label[q] = list.length;
          stack.push(q);
        }
      }
    }
    list.push(b);
  }
  return { label, list };
}

/** Corner-mark candidates: ring-shaped dark blobs whose centre holds a small dark dot. Centres in pixels. */
function findMarks(img: RgbImage): [number, number][] {
  const { width: w, height: h } = img;
  const dark = darkMask(luma(img), w, h, Math.max(8, Math.round(Math.max(w, h) / 12)));
  const { label, list } = blobs(dark, w, h);
  const found: { c: [number, number]; area: number }[] = [];
  list.forEach((b, id) => {
    const bw = b.x1 - b.x0 + 1,
      bh = b.y1 - b.y0 + 1;
    if (bw < 6 || bh < 6 || bw / bh > 3 || bh / bw > 3) return;
    const fill = b.area / (bw * bh);
    if (fill < 0.25 || fill > 0.85) return;
    const cx = Math.round(b.sx / b.area),
      cy = Math.round(b.sy / b.area);
    const dotId = label[cy * w + cx];
    if (dotId < 0 || dotId === id) return;
    const d = list[dotId];
    if (d.area < 0.01 * b.area || d.area > 0.3 * b.area || d.x0 <= b.x0 || d.x1 >= b.x1 || d.y0 <= b.y0 || d.y1 >= b.y1) return;
    found.push({ c: [(b.sx + d.sx) / (b.area + d.area), (b.sy + d.sy) / (b.area + d.area)], area: b.area });
  });
  return found
    .sort((a, b) => b.area - a.area)
    .slice(0, 4)
    .map((f) => f.c);
}

function bilinear(img: RgbImage, x: number, y: number, out: number[]): boolean {
  const fx = x - 0.5,
    fy = y - 0.5;
  const x0 = Math.floor(fx),
    y0 = Math.floor(fy);
  if (x0 < 0 || y0 < 0 || x0 + 1 >= img.width || y0 + 1 >= img.height) return false;
  const ax = fx - x0,
    ay = fy - y0;
  for (let c = 0; c < 3; c++) {
    const p = (yy: number, xx: number) => img.data[3 * (yy * img.width + xx) + c];
    out[c] = (p(y0, x0) * (1 - ax) + p(y0, x0 + 1) * ax) * (1 - ay) + (p(y0 + 1, x0) * (1 - ax) + p(y0 + 1, x0 + 1) * ax) * ay;
  }
  return true;
}

function medianColour(img: RgbImage, h: H8, pts: [number, number][]): Rgb | null {
  const ch: number[][] = [[], [], []];
  const px = [0, 0, 0];
  for (const [x, y] of pts) {
    const [u, v] = apply(h, x, y);
    if (bilinear(img, u, v, px)) for (let c = 0; c < 3; c++) ch[c].push(px[c]);
  }
  if (ch[0].length < pts.length / 2) return null;
  return ch.map((v) => v.sort((a, b) => a - b)[v.length >> 1]) as Rgb;
}

function readPatches(img: RgbImage, l: StripLayout, h: H8, intended: Rgb[]): PatchReading[] | null {
  const out: PatchReading[] = [];
  for (let i = 0; i < l.patches.length; i++) {
    const p = l.patches[i];
    const inner: [number, number][] = [];
    for (let a = 0; a < 7; a++) for (let b = 0; b < 7; b++) inner.push([p.x + p.size * (0.2 + 0.1 * a), p.y + p.size * (0.2 + 0.1 * b)]);
    const colour = medianColour(img, h, inner),
      white = medianColour(img, h, paperPoints(l, i));
    if (!colour || !white || Math.min(...white) < 0.03) return null;
    const printed = colour.map((v, c) => Math.min(1, Math.max(0, v / white[c]))) as Rgb;
    out.push({ index: i + 1, intended: intended[i], printed, deltaE: deltaE(printed, intended[i]) });
  }
  return out;
}

/** Reads the strip of `intended` colours in a photo; UserError when it is not found. */
export function calibrateFromPhoto(photo: RgbImage, intended: Rgb[], where: string): Calibration {
  // Detection and reading at ≤ 1600 px: marks and patches stay tens of pixels wide, and it is fast.
  const scale = Math.min(1, 1600 / Math.max(photo.width, photo.height));
  const img = scale < 1 ? resizeRgb(photo, Math.round(photo.width * scale), Math.round(photo.height * scale)) : photo;
  const marks = findMarks(img);
  if (marks.length < 4)
    throw new UserError(
      `no calibration strip found in ${where}: ${marks.length} of its 4 corner marks seen (photograph the whole strip, flat and in focus, the marks clear of the edges)`,
    );
  const cx = marks.reduce((s, m) => s + m[0], 0) / 4,
    cy = marks.reduce((s, m) => s + m[1], 0) / 4;
  const order = marks.slice().sort((a, b) => Math.atan2(a[1] - cy, a[0] - cx) - Math.atan2(b[1] - cy, b[0] - cx));
  const l = stripLayout(intended.length);
  let best: { patches: PatchReading[]; marks: [number, number][]; mean: number } | null = null;
  for (let r = 0; r < 4; r++) {
    const dst = [0, 1, 2, 3].map((k) => order[(k + r) % 4]);
    const h = homography4(l.marks, dst);
    const patches = h ? readPatches(img, l, h, intended) : null;
    if (!patches) continue;
    const mean = patches.reduce((s, p) => s + p.deltaE, 0) / patches.length;
    if (!best || mean < best.mean) best = { patches, marks: dst, mean };
  }
  if (!best) throw new UserError(`no calibration strip found in ${where}: the corner marks do not frame a readable strip`);
  return {
    patches: best.patches,
    marks: best.marks.map(([x, y]) => [x / scale, y / scale]),
    meanDeltaE: best.mean,
    maxDeltaE: Math.max(...best.patches.map((p) => p.deltaE)),
  };
}
