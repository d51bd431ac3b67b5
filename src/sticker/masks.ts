/**
 * Where the sticker goes. Coordinates are relative to the sign's bounding square (the square
 * renderSignRGBA draws the sign into, wider side edge to edge): x right, y down, both in [0, 1].
 * So a mask means the same place on a 100 mm desk sign and a 600 mm road sign.
 *
 * Masks rasterise to soft coverage in [0, 1] (supersampled) and are always intersected with the
 * sign's alpha: a sticker never hangs off the sign. The PDF needs the cut outline and the separate
 * pieces, so this file also has marching squares and connected components.
 */
import * as fs from 'node:fs';
import sharp from 'sharp';
import { UserError } from '../data/types';

export interface RelRect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export type MaskSpec =
  | { kind: 'rect'; rect: RelRect }
  /** Two (or more) horizontal bars, as in RP2 (Eykholt et al. 2018) on the stop sign. */
  | { kind: 'stripes'; rects: RelRect[] }
  | { kind: 'circle'; cx: number; cy: number; r: number }
  /** A mask image stretched over the sign's bounding square: values in [0, 1], row-major. */
  | { kind: 'image'; file: string; width: number; height: number; values: Float32Array }
  /** Chosen by the optimiser where a whole-sign sticker changed most (auto-mask.ts); values as for 'image'. */
  | { kind: 'auto'; width: number; height: number; values: Float32Array; pieces: number };

export const MASK_KINDS = ['stripes', 'rect', 'circle'] as const;
export type MaskKind = (typeof MASK_KINDS)[number];

/** Defaults chosen for the stop sign's layout: stripes above and below the word, a patch below it. */
export function defaultMask(kind: MaskKind): MaskSpec {
  switch (kind) {
    case 'stripes':
      return {
        kind: 'stripes',
        rects: [
          { x: 0.12, y: 0.2, w: 0.76, h: 0.11 },
          { x: 0.12, y: 0.69, w: 0.76, h: 0.11 },
        ],
      };
    case 'rect':
      return { kind: 'rect', rect: { x: 0.3, y: 0.64, w: 0.4, h: 0.2 } };
    case 'circle':
      return { kind: 'circle', cx: 0.5, cy: 0.74, r: 0.13 };
  }
}

function numbers(text: string, count: number, what: string): number[] {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (v.length !== count || v.some((x) => !Number.isFinite(x))) {
    throw new UserError(`mask '${what}' needs ${count} comma-separated numbers (fractions of the sign's size)`);
  }
  return v;
}

function checkRect(r: RelRect, what: string): RelRect {
  if (!(r.w > 0 && r.h > 0) || r.x < 0 || r.y < 0 || r.x + r.w > 1 + 1e-9 || r.y + r.h > 1 + 1e-9) {
    throw new UserError(`mask '${what}': the rectangle must have positive size and lie inside the sign (0..1)`);
  }
  return r;
}

/**
 * Parses --mask: 'stripes', 'rect', 'circle' (defaults), 'rect:x,y,w,h', 'circle:cx,cy,r',
 * 'stripes:y1,y2,h' (fractions of the sign's size), or an image file (PNG, JPEG…).
 */
export async function parseMaskSpec(text: string): Promise<MaskSpec> {
  const t = text.trim();
  const [head, rest] = t.includes(':') && !fs.existsSync(t) ? [t.slice(0, t.indexOf(':')).toLowerCase(), t.slice(t.indexOf(':') + 1)] : [t.toLowerCase(), ''];
  if ((MASK_KINDS as readonly string[]).includes(head)) {
    if (rest === '') return defaultMask(head as MaskKind);
    if (head === 'rect') {
      const [x, y, w, h] = numbers(rest, 4, t);
      return { kind: 'rect', rect: checkRect({ x, y, w, h }, t) };
    }
    if (head === 'circle') {
      const [cx, cy, r] = numbers(rest, 3, t);
      if (!(r > 0) || cx < 0 || cx > 1 || cy < 0 || cy > 1) throw new UserError(`mask '${t}': centre must be in 0..1 and radius > 0`);
      return { kind: 'circle', cx, cy, r };
    }
    const [y1, y2, h] = numbers(rest, 3, t);
    return { kind: 'stripes', rects: [y1, y2].map((y) => checkRect({ x: 0.12, y, w: 0.76, h }, t)) };
  }
  if (/\.(png|jpe?g|webp|gif|tiff?|bmp|svg)$/i.test(t) || fs.existsSync(t)) return loadMaskImage(t);
  throw new UserError(`unknown mask '${text}': use stripes, rect, circle, rect:x,y,w,h, circle:cx,cy,r or a mask image (PNG)`);
}

/**
 * Reads a mask image: its alpha channel when it has transparency, else its luminance
 * (white = sticker, black = no sticker).
 */
export async function loadMaskImage(file: string): Promise<MaskSpec> {
  if (!fs.existsSync(file)) throw new UserError(`mask image not found: ${file}`);
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(file).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`mask image ${file} cannot be read: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
  }
  const { width, height } = raw.info;
  const n = width * height;
  const d = raw.data;
  let transparent = false;
  for (let i = 0; i < n && !transparent; i++) if (d[4 * i + 3] < 255) transparent = true;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    values[i] = transparent ? d[4 * i + 3] / 255 : (0.2126 * d[4 * i] + 0.7152 * d[4 * i + 1] + 0.0722 * d[4 * i + 2]) / 255;
  }
  return { kind: 'image', file, width, height, values };
}

/** A short human description, for summaries and the PDF. */
export function describeMask(spec: MaskSpec): string {
  const f = (v: number) => v.toFixed(3).replace(/0+$/, '').replace(/\.$/, '');
  switch (spec.kind) {
    case 'rect':
      return `rect x=${f(spec.rect.x)} y=${f(spec.rect.y)} w=${f(spec.rect.w)} h=${f(spec.rect.h)}`;
    case 'stripes':
      return `stripes ${spec.rects.map((r) => `y=${f(r.y)}..${f(r.y + r.h)}`).join(', ')} x=${f(spec.rects[0].x)}..${f(spec.rects[0].x + spec.rects[0].w)}`;
    case 'circle':
      return `circle cx=${f(spec.cx)} cy=${f(spec.cy)} r=${f(spec.r)}`;
    case 'image':
      return `image ${spec.file} (${spec.width}x${spec.height})`;
    case 'auto':
      return `auto: ${spec.pieces} piece${spec.pieces === 1 ? '' : 's'} where a whole-sign sticker worked most`;
  }
}

function inside(spec: MaskSpec, x: number, y: number): number {
  switch (spec.kind) {
    case 'rect': {
      const r = spec.rect;
      return x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h ? 1 : 0;
    }
    case 'stripes':
      return spec.rects.some((r) => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h) ? 1 : 0;
    case 'circle':
      return (x - spec.cx) ** 2 + (y - spec.cy) ** 2 < spec.r * spec.r ? 1 : 0;
    case 'image':
    case 'auto': {
      // Bilinear lookup, image stretched over the unit square.
      const fx = Math.min(spec.width - 1, Math.max(0, x * spec.width - 0.5));
      const fy = Math.min(spec.height - 1, Math.max(0, y * spec.height - 0.5));
      const x0 = Math.floor(fx),
        y0 = Math.floor(fy);
      const x1 = Math.min(spec.width - 1, x0 + 1),
        y1 = Math.min(spec.height - 1, y0 + 1);
      const ax = fx - x0,
        ay = fy - y0;
      const v = spec.values,
        w = spec.width;
      return (v[y0 * w + x0] * (1 - ax) + v[y0 * w + x1] * ax) * (1 - ay) + (v[y1 * w + x0] * (1 - ax) + v[y1 * w + x1] * ax) * ay;
    }
  }
}

/**
 * Soft coverage of the mask on a size×size grid over the sign's bounding square, multiplied by
 * the sign's alpha (size*size, straight alpha) when given.
 */
export function rasterizeMask(spec: MaskSpec, size: number, signAlpha: Float32Array | null = null, supersample = 4): Float32Array {
  if (signAlpha && signAlpha.length !== size * size) throw new RangeError(`sign alpha has ${signAlpha.length} values, expected ${size * size}`);
  const out = new Float32Array(size * size);
  const ss = spec.kind === 'image' || spec.kind === 'auto' ? Math.max(1, Math.min(supersample, Math.ceil(spec.width / size))) : supersample;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let acc = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) acc += inside(spec, (x + (sx + 0.5) / ss) / size, (y + (sy + 0.5) / ss) / size);
      }
      const i = y * size + x;
      out[i] = (acc / (ss * ss)) * (signAlpha ? signAlpha[i] : 1);
    }
  }
  return out;
}

/** Alpha channel of a straight-alpha RGBA buffer. */
export function alphaOf(rgba: Float32Array): Float32Array {
  const a = new Float32Array(rgba.length / 4);
  for (let i = 0; i < a.length; i++) a[i] = rgba[4 * i + 3];
  return a;
}

/** Sum of a coverage map (area in pixels). */
export function coverage(mask: Float32Array): number {
  let s = 0;
  for (const v of mask) s += v;
  return s;
}

/** Throws a UserError when the mask covers (almost) none of the sign. */
export function requireNonEmpty(mask: Float32Array, spec: MaskSpec): void {
  if (coverage(mask) < 1) throw new UserError(`mask (${describeMask(spec)}) covers none of the sign: move it onto the sign or make it larger`);
}

// ---------------------------------------------------------------------------
// Pieces and cut lines

export interface Component {
  /** Pixel count (coverage ≥ 0.5). */
  pixels: number;
  /** Bounding box in relative coordinates [0, 1]. */
  bbox: RelRect;
  /** Closed outlines in relative coordinates, each a list of [x, y]. */
  outlines: [number, number][][];
}

/** 4-connected components of field ≥ 0.5, largest first, ignoring those under minPixels. */
export function components(field: Float32Array, size: number, minPixels = 1): Component[] {
  const label = new Int32Array(size * size).fill(-1);
  const comps: { pixels: number; x0: number; y0: number; x1: number; y1: number; id: number }[] = [];
  const stack: number[] = [];
  for (let start = 0; start < size * size; start++) {
    if (field[start] < 0.5 || label[start] >= 0) continue;
    const id = comps.length;
    const c = { pixels: 0, x0: size, y0: size, x1: -1, y1: -1, id };
    label[start] = id;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop() as number;
      const x = p % size,
        y = (p - x) / size;
      c.pixels++;
      c.x0 = Math.min(c.x0, x);
      c.x1 = Math.max(c.x1, x);
      c.y0 = Math.min(c.y0, y);
      c.y1 = Math.max(c.y1, y);
      for (const [dx, dy] of [
        [1, 0],
        [-1, 0],
        [0, 1],
        [0, -1],
      ]) {
        const nx = x + dx,
          ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= size || ny >= size) continue;
        const q = ny * size + nx;
        if (field[q] >= 0.5 && label[q] < 0) {
          label[q] = id;
          stack.push(q);
        }
      }
    }
    comps.push(c);
  }
  return comps
    .filter((c) => c.pixels >= minPixels)
    .sort((a, b) => b.pixels - a.pixels)
    .map((c) => {
      // This component's own field: other components' pixels are blanked so their outlines stay out.
      const own = new Float32Array(size * size);
      for (let y = Math.max(0, c.y0 - 1); y <= Math.min(size - 1, c.y1 + 1); y++) {
        for (let x = Math.max(0, c.x0 - 1); x <= Math.min(size - 1, c.x1 + 1); x++) {
          const i = y * size + x;
          own[i] = label[i] === c.id || label[i] < 0 ? field[i] : 0;
        }
      }
      return {
        pixels: c.pixels,
        bbox: { x: c.x0 / size, y: c.y0 / size, w: (c.x1 + 1 - c.x0) / size, h: (c.y1 + 1 - c.y0) / size },
        outlines: outlines(own, size).map((l) => l.map(([x, y]): [number, number] => [x / size, y / size])),
      };
    });
}

/**
 * Iso-0.5 contours of a field sampled at pixel centres (marching squares with linear
 * interpolation), in pixel coordinates, chained into closed polylines and lightly simplified.
 */
export function outlines(field: Float32Array, size: number): [number, number][][] {
  // Pad by one zero pixel so every contour closes.
  const W = size + 2;
  const v = (x: number, y: number): number => (x <= 0 || y <= 0 || x > size || y > size ? 0 : field[(y - 1) * size + (x - 1)]);
  // Edge ids: horizontal edge from corner (x, y) to (x+1, y) = 2*(y*W+x); vertical to (x, y+1) = +1.
  const point = new Map<number, [number, number]>();
  const adj = new Map<number, number[]>();
  const cross = (x0: number, y0: number, horizontal: boolean): number => {
    const id = 2 * (y0 * W + x0) + (horizontal ? 0 : 1);
    if (!point.has(id)) {
      const a = v(x0, y0),
        b = horizontal ? v(x0 + 1, y0) : v(x0, y0 + 1);
      const t = Math.abs(b - a) < 1e-12 ? 0.5 : (0.5 - a) / (b - a);
      // Grid corner (x, y) of the padded grid is the centre of pixel (x-1, y-1): coordinate x-0.5.
      point.set(id, horizontal ? [x0 - 0.5 + t, y0 - 0.5] : [x0 - 0.5, y0 - 0.5 + t]);
    }
    return id;
  };
  const link = (a: number, b: number) => {
    (adj.get(a) ?? (adj.set(a, []).get(a) as number[])).push(b);
    (adj.get(b) ?? (adj.set(b, []).get(b) as number[])).push(a);
  };
  for (let y = 0; y < W - 1; y++) {
    for (let x = 0; x < W - 1; x++) {
      const tl = v(x, y) >= 0.5 ? 1 : 0,
        tr = v(x + 1, y) >= 0.5 ? 1 : 0;
      const br = v(x + 1, y + 1) >= 0.5 ? 1 : 0,
        bl = v(x, y + 1) >= 0.5 ? 1 : 0;
      const code = tl * 8 + tr * 4 + br * 2 + bl;
      if (code === 0 || code === 15) continue;
      const T = () => cross(x, y, true),
        B = () => cross(x, y + 1, true);
      const L = () => cross(x, y, false),
        R = () => cross(x + 1, y, false);
      const centreIn = (v(x, y) + v(x + 1, y) + v(x + 1, y + 1) + v(x, y + 1)) / 4 >= 0.5;
      switch (code) {
        case 1:
        case 14:
          link(L(), B());
          break;
        case 2:
        case 13:
          link(B(), R());
          break;
        case 3:
        case 12:
          link(L(), R());
          break;
        case 4:
        case 11:
          link(T(), R());
          break;
        case 6:
        case 9:
          link(T(), B());
          break;
        case 7:
        case 8:
          link(L(), T());
          break;
        case 5:
          if (centreIn) {
            link(L(), T());
            link(B(), R());
          } else {
            link(L(), B());
            link(T(), R());
          }
          break;
        case 10:
          if (centreIn) {
            link(T(), R());
            link(L(), B());
          } else {
            link(L(), T());
            link(B(), R());
          }
          break;
      }
    }
  }
  const seen = new Set<number>();
  const lines: [number, number][][] = [];
  for (const start of adj.keys()) {
    if (seen.has(start)) continue;
    const ids: number[] = [start];
    seen.add(start);
    let prev = -1,
      cur = start;
    for (;;) {
      const next = (adj.get(cur) as number[]).find((n) => n !== prev && !seen.has(n));
      if (next === undefined) break;
      seen.add(next);
      ids.push(next);
      prev = cur;
      cur = next;
    }
    if (ids.length >= 3)
      lines.push(
        simplify(
          ids.map((id) => point.get(id) as [number, number]),
          0.2,
        ),
      );
  }
  return lines;
}

/** Douglas–Peucker on a closed polyline (tolerance in pixels). */
function simplify(pts: [number, number][], tol: number): [number, number][] {
  if (pts.length < 8) return pts;
  const keep = new Uint8Array(pts.length);
  keep[0] = 1;
  const far = pts.reduce(
    (best, p, i) => ((p[0] - pts[0][0]) ** 2 + (p[1] - pts[0][1]) ** 2 > (pts[best][0] - pts[0][0]) ** 2 + (pts[best][1] - pts[0][1]) ** 2 ? i : best),
    0,
  );
  keep[far] = 1;
  const rec = (a: number, b: number) => {
    let worst = -1,
      wd = tol;
    const [ax, ay] = pts[a],
      [bx, by] = pts[b % pts.length];
    const len = Math.hypot(bx - ax, by - ay) || 1e-12;
    for (let i = a + 1; i < b; i++) {
      const d = Math.abs((bx - ax) * (ay - pts[i][1]) - (ax - pts[i][0]) * (by - ay)) / len;
      if (d > wd) {
        wd = d;
        worst = i;
      }
    }
    if (worst >= 0) {
      keep[worst] = 1;
      rec(a, worst);
      rec(worst, b);
    }
  };
  rec(0, far);
  rec(far, pts.length);
  return pts.filter((_, i) => keep[i]);
}

// ---------------------------------------------------------------------------
// Masks at a given share of the sign

/** The default mask of `kind` grown or shrunk by one size parameter t (stripe height, rect width, circle radius). */
function scaledDefault(kind: MaskKind, t: number): MaskSpec {
  const base = defaultMask(kind);
  if (base.kind === 'stripes') {
    return { kind: 'stripes', rects: base.rects.map((r) => ({ ...r, y: Math.max(0, r.y + r.h / 2 - t / 2), h: Math.min(t, 1) })) };
  }
  if (base.kind === 'rect') {
    const w = Math.min(t, 1),
      h = w / 2,
      cy = Math.min(base.rect.y + base.rect.h / 2, 1 - h / 2);
    return { kind: 'rect', rect: { x: 0.5 - w / 2, y: cy - h / 2, w, h } };
  }
  const c = base as { cx: number; cy: number };
  const r = Math.min(t, 0.5);
  return { kind: 'circle', cx: c.cx, cy: Math.min(c.cy, 1 - r), r };
}

/**
 * The default mask of `kind` sized so that it covers `area` (a share of the sign's own area,
 * sticker ∧ sign / sign), found by bisection on its size. UserError when the shape cannot reach it.
 */
export function maskAtArea(kind: MaskKind, area: number, signAlpha: Float32Array, size: number): MaskSpec {
  const signArea = coverage(signAlpha);
  const share = (t: number) => coverage(rasterizeMask(scaledDefault(kind, t), size, signAlpha)) / signArea;
  const tMax = kind === 'circle' ? 0.5 : kind === 'rect' ? 1 : 0.49;
  if (share(tMax) < area) throw new UserError(`--area ${area}: the ${kind} mask covers at most ${(share(tMax) * 100).toFixed(0)} % of this sign`);
  let lo = 0,
    hi = tMax;
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (share(mid) < area) lo = mid;
    else hi = mid;
  }
  return scaledDefault(kind, hi);
}

/** Parses --area: a share of the sign's area in (0, 0.5], as a fraction (0.1) or a percentage (10%). */
export function parseArea(text: string, flag = '--area'): number {
  const t = text.trim();
  const v = t.endsWith('%') ? Number(t.slice(0, -1)) / 100 : Number(t);
  if (!Number.isFinite(v) || !(v > 0 && v <= 0.5))
    throw new UserError(`${flag} must be a share of the sign's area in (0, 0.5] (e.g. 0.1 or 10%), got '${text}'`);
  return v;
}
