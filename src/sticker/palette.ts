/**
 * Printable colours and the non-printability score (NPS, Sharif et al. 2016).
 *
 * A printer cannot reproduce every RGB value and a camera sees printed colours shifted; a sticker
 * whose colours lie near colours the printer really produces survives printing better. The
 * default palette approximates an office inkjet on matte paper photographed in daylight (no fully
 * saturated primaries, a grey-ish black, a paper white). For real work print the calibration strip
 * in the PDF, photograph it, and load the measured colours with `loadPalette`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor, Tensor2D } from '../inference/tf';
import { UserError } from '../data/types';

export type Rgb = [number, number, number];

export interface Palette {
  /** Colours in [0, 1]. */
  colors: Rgb[];
  /** Where it came from: 'default' or a file path. */
  source: string;
}

/** 30 colours a typical inkjet reproduces (as photographed), spread over its gamut. */
export const DEFAULT_PALETTE: Palette = Object.freeze({
  source: 'default',
  colors: [
    [0.1, 0.1, 0.11],
    [0.3, 0.3, 0.31],
    [0.5, 0.5, 0.5],
    [0.72, 0.72, 0.71],
    [0.93, 0.93, 0.91],
    [0.8, 0.14, 0.15],
    [0.52, 0.1, 0.12],
    [0.4, 0.15, 0.25],
    [0.9, 0.45, 0.15],
    [0.95, 0.65, 0.35],
    [0.95, 0.85, 0.2],
    [0.96, 0.92, 0.6],
    [0.52, 0.52, 0.18],
    [0.55, 0.78, 0.4],
    [0.2, 0.62, 0.3],
    [0.1, 0.36, 0.2],
    [0.1, 0.55, 0.55],
    [0.2, 0.7, 0.85],
    [0.55, 0.75, 0.92],
    [0.15, 0.4, 0.75],
    [0.12, 0.18, 0.45],
    [0.45, 0.25, 0.6],
    [0.65, 0.5, 0.8],
    [0.82, 0.2, 0.55],
    [0.95, 0.62, 0.72],
    [0.45, 0.28, 0.15],
    [0.75, 0.6, 0.42],
    [0.9, 0.75, 0.62],
    [0.35, 0.42, 0.5],
    [0.7, 0.85, 0.95],
  ] as Rgb[],
}) as Palette;

function parseHex(s: string): Rgb | null {
  const m = /^#?([0-9a-f]{6})$/i.exec(s.trim());
  if (!m) return null;
  const v = parseInt(m[1], 16);
  return [((v >> 16) & 255) / 255, ((v >> 8) & 255) / 255, (v & 255) / 255];
}

/** Values above 1 anywhere mean the file is in 0..255 (a measured photo usually is). */
function normalise(rows: number[][], file: string): Rgb[] {
  const scale = rows.some((r) => r.some((v) => v > 1)) ? 255 : 1;
  return rows.map((r, i) => {
    if (r.some((v) => !Number.isFinite(v) || v < 0 || v > 255)) {
      throw new UserError(`palette ${file}: colour ${i + 1} (${r.join(', ')}) is outside 0..255`);
    }
    return [r[0] / scale, r[1] / scale, r[2] / scale];
  });
}

function fromJson(value: unknown, file: string): number[][] {
  const list = Array.isArray(value)
    ? value
    : value && typeof value === 'object' && Array.isArray((value as { colors?: unknown }).colors)
      ? (value as { colors: unknown[] }).colors
      : null;
  if (!list) throw new UserError(`palette ${file}: expected a JSON array of colours or {"colors": [...]}`);
  return list.map((c, i) => {
    if (typeof c === 'string') {
      const h = parseHex(c);
      if (!h) throw new UserError(`palette ${file}: colour ${i + 1} '${c}' is not #rrggbb`);
      return h.map((v) => v * 255);
    }
    if (Array.isArray(c) && c.length >= 3 && c.slice(0, 3).every((v) => typeof v === 'number')) return c.slice(0, 3) as number[];
    if (c && typeof c === 'object') {
      const o = c as Record<string, unknown>;
      if (typeof o.r === 'number' && typeof o.g === 'number' && typeof o.b === 'number') return [o.r, o.g, o.b];
    }
    throw new UserError(`palette ${file}: colour ${i + 1} must be [r, g, b], {r, g, b} or '#rrggbb'`);
  });
}

/**
 * CSV/TSV: one colour per line, the last three numbers of the line are r, g, b (so 'name,r,g,b'
 * and 'r g b' both work), or '#rrggbb'; blank lines, '#' comments and a header line are skipped.
 */
function fromCsv(text: string, file: string): number[][] {
  const rows: number[][] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || (line.startsWith('#') && !parseHex(line.split(/[,;\s]+/)[0]))) return;
    const cells = line.split(/[,;\t ]+/).filter((c) => c !== '');
    const hex = cells.map(parseHex).find((h) => h !== null);
    if (hex) {
      rows.push(hex.map((v) => v * 255));
      return;
    }
    const nums = cells.map(Number).filter((v) => Number.isFinite(v));
    if (nums.length >= 3) {
      rows.push(nums.slice(-3));
      return;
    }
    if (rows.length === 0 && nums.length === 0) return; // header
    throw new UserError(`palette ${file}: line ${i + 1} has no r, g, b values: '${line.slice(0, 60)}'`);
  });
  return rows;
}

/** Loads a measured palette from JSON or CSV (values 0..1 or 0..255). */
export function loadPalette(file: string): Palette {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `palette file not found: ${file}` : `cannot read palette ${file} (${code ?? String(e)})`);
  }
  let rows: number[][];
  if (path.extname(file).toLowerCase() === '.json' || /^\s*[[{]/.test(text)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new UserError(`palette ${file}: invalid JSON (${(e as Error).message.split('\n')[0]})`);
    }
    rows = fromJson(parsed, file);
  } else {
    rows = fromCsv(text, file);
  }
  if (rows.length < 4) throw new UserError(`palette ${file}: needs at least 4 colours, found ${rows.length}`);
  return { colors: normalise(rows, file), source: file };
}

/**
 * Differentiable NPS: the mean over pixels (weighted, e.g. by the sticker mask) of the distance to
 * the nearest palette colour. Sharif et al. use the product of distances to all colours, which
 * underflows in float32 for 30 colours; the nearest-colour distance has the same zeros and is
 * what most later patch papers use (e.g. Thys et al. 2019).
 * pixels [n, 3], weights [n] or null.
 */
export function npsLoss(pixels: Tensor2D, palette: Tensor2D, weights: Tensor | null): tf.Scalar {
  return tf.tidy(() => {
    const d = tf.sub(tf.expandDims(pixels, 1), tf.expandDims(palette, 0)); // [n, k, 3]
    const dist = tf.sqrt(tf.add(tf.sum(tf.square(d), 2), 1e-8)); // [n, k]
    const nearest = tf.min(dist, 1); // [n]
    if (!weights) return tf.mean(nearest) as tf.Scalar;
    const w = tf.reshape(weights, [-1]);
    return tf.div(tf.sum(tf.mul(nearest, w)), tf.maximum(tf.sum(w), 1e-6)) as tf.Scalar;
  });
}

/** The NPS of an RGB image (h*w*3 floats) over the pixels where weights > 0, as a number. */
export function npsScore(rgb: Float32Array, weights: Float32Array | null, palette: Palette): number {
  let sum = 0,
    wsum = 0;
  const n = rgb.length / 3;
  for (let i = 0; i < n; i++) {
    const w = weights ? weights[i] : 1;
    if (w <= 0) continue;
    let best = Infinity;
    for (const c of palette.colors) {
      const d = (rgb[3 * i] - c[0]) ** 2 + (rgb[3 * i + 1] - c[1]) ** 2 + (rgb[3 * i + 2] - c[2]) ** 2;
      if (d < best) best = d;
    }
    sum += w * Math.sqrt(best);
    wsum += w;
  }
  return wsum > 0 ? sum / wsum : 0;
}

/** The palette as a [k, 3] tensor (caller disposes). */
export function paletteTensor(p: Palette): Tensor2D {
  return tf.tensor2d(p.colors.flat(), [p.colors.length, 3]);
}

/** Index of the nearest palette colour to (r, g, b). */
export function nearestColor(p: Palette, r: number, g: number, b: number): number {
  let best = 0,
    bd = Infinity;
  p.colors.forEach((c, i) => {
    const d = (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2;
    if (d < bd) {
      bd = d;
      best = i;
    }
  });
  return best;
}
