/**
 * The colour calibration strip printed in the sticker PDF, as geometry (millimetres, origin at
 * the strip's top-left): the palette's patches in reading order, 10 per row, on paper white, and
 * four identical corner marks (a black square ring with a dot in the middle) that `advsign
 * calibrate` finds in a photo. The PDF draws from this layout and the calibrator measures with it,
 * so they cannot drift apart. Also sRGB → CIELAB and ΔE (CIE76) for the per-patch table.
 */
import type { Rgb } from './palette';

export interface StripLayout {
  width: number;
  height: number;
  /** Patch squares: top-left corner and side, mm. */
  patches: { x: number; y: number; size: number }[];
  /** Centres of the corner marks: top-left, top-right, bottom-right, bottom-left. */
  marks: [number, number][];
  /** Outer side of a mark, its white inner square, its dot. */
  mark: { outer: number; inner: number; dot: number };
  /** Paper white kept clear around the strip (the PDF prints nothing there). */
  quietZone: number;
}

export const STRIP_PER_ROW = 10;
const WIDTH = 180,
  MARK = 10,
  PATCH = 12,
  PITCH = 15.2,
  SIDE = 14;

/** The layout for a palette of `count` colours. */
export function stripLayout(count: number): StripLayout {
  const rows = Math.max(1, Math.ceil(count / STRIP_PER_ROW));
  const height = Math.max(rows * PITCH - (PITCH - PATCH), 2 * MARK + 4);
  const x0 = SIDE + (WIDTH - 2 * SIDE - (STRIP_PER_ROW * PITCH - (PITCH - PATCH))) / 2;
  const y0 = (height - (rows * PITCH - (PITCH - PATCH))) / 2;
  const patches = Array.from({ length: count }, (_, i) => ({
    x: x0 + (i % STRIP_PER_ROW) * PITCH,
    y: y0 + Math.floor(i / STRIP_PER_ROW) * PITCH,
    size: PATCH,
  }));
  const h = MARK / 2;
  return {
    width: WIDTH,
    height,
    patches,
    marks: [
      [h, h],
      [WIDTH - h, h],
      [WIDTH - h, height - h],
      [h, height - h],
    ],
    mark: { outer: MARK, inner: 6, dot: 2.4 },
    quietZone: 5,
  };
}

/** Paper points around patch i (mid-gap, a ring of 12) where the calibrator reads the local white. */
export function paperPoints(l: StripLayout, i: number): [number, number][] {
  const p = l.patches[i];
  const gap = (PITCH - PATCH) / 2;
  const out: [number, number][] = [];
  for (const t of [0.2, 0.5, 0.8]) {
    out.push([p.x + t * p.size, p.y - gap], [p.x + t * p.size, p.y + p.size + gap], [p.x - gap, p.y + t * p.size], [p.x + p.size + gap, p.y + t * p.size]);
  }
  return out;
}

/**
 * The strip rasterised (RGB floats, paper = 1), with the quiet zone around it: what a perfect
 * print looks like, `pxPerMm` pixels per millimetre. `colors` are the printed patch colours.
 */
export function renderStrip(colors: Rgb[], pxPerMm: number): { data: Float32Array; width: number; height: number; originPx: number } {
  const l = stripLayout(colors.length);
  const q = l.quietZone;
  const width = Math.round((l.width + 2 * q) * pxPerMm),
    height = Math.round((l.height + 2 * q) * pxPerMm);
  const data = new Float32Array(width * height * 3).fill(1);
  const fill = (x: number, y: number, w: number, h: number, c: Rgb) => {
    for (let py = Math.round((y + q) * pxPerMm); py < Math.round((y + h + q) * pxPerMm); py++) {
      for (let px = Math.round((x + q) * pxPerMm); px < Math.round((x + w + q) * pxPerMm); px++) {
        if (px < 0 || py < 0 || px >= width || py >= height) continue;
        data.set(c, 3 * (py * width + px));
      }
    }
  };
  for (const [mx, my] of l.marks) {
    const m = l.mark;
    fill(mx - m.outer / 2, my - m.outer / 2, m.outer, m.outer, [0, 0, 0]);
    fill(mx - m.inner / 2, my - m.inner / 2, m.inner, m.inner, [1, 1, 1]);
    fill(mx - m.dot / 2, my - m.dot / 2, m.dot, m.dot, [0, 0, 0]);
  }
  l.patches.forEach((p, i) => fill(p.x, p.y, p.size, p.size, colors[i]));
  return { data, width, height, originPx: q * pxPerMm };
}

// ---------------------------------------------------------------------------
// Colour difference

function linear(v: number): number {
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

/** sRGB in [0, 1] → CIELAB (D65). */
export function rgbToLab(c: Rgb): [number, number, number] {
  const [r, g, b] = c.map(linear);
  const X = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
  const Y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const Z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
  const f = (t: number) => (t > 216 / 24389 ? Math.cbrt(t) : ((24389 / 27) * t + 16) / 116);
  const fx = f(X),
    fy = f(Y),
    fz = f(Z);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

/** CIE76 colour difference of two sRGB colours. */
export function deltaE(a: Rgb, b: Rgb): number {
  const p = rgbToLab(a),
    q = rgbToLab(b);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}
