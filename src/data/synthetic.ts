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
 */
import { writeFileSync } from 'fs';
import { createCanvas, SKRSContext2D } from '@napi-rs/canvas';
import { ImageSet, UserError } from './types';
import { NUM_CLASSES, SIGN_SPECS, SignColor, SignShape, SignSpec, SymbolName, ArrowName } from './classes';
import { Rng, createRng, hashSeed, randRange, randInt, randBool, randNormal, pick } from './random';

// ---------------------------------------------------------------------------
// Public API types

export interface RenderOptions {
  /** Output side length in pixels (default 32). */
  size?: number;
  /** Seed of the scene; together with the class id it fixes the image. */
  seed: number;
  /** Random pose, lighting, blur and noise (default true). */
  augment?: boolean;
  /**
   * 'random': generated sky/foliage/building/gradient/blob background;
   * 'plain': one uniform colour (seeded when augmenting, neutral grey otherwise).
   * Default: 'random' when augmenting, else 'plain'.
   */
  background?: 'random' | 'plain';
}

export interface DatasetOptions {
  /** Images per class. */
  perClass: number;
  /** Side length in pixels (default 32). */
  size?: number;
  /** Base seed (default 1). */
  seed?: number;
  /** Class ids to render (default all 43), in this order. */
  classes?: number[];
  /** Default true; false gives canonical poses on random backgrounds. */
  augment?: boolean;
  /** Frames per group ("track"), sharing background and base pose (default 5). */
  groupSize?: number;
  /** Called after each group with the number of images rendered so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** A sign with transparency, for stickers and compositing. */
export interface SignRGBA {
  /** size * size * 4 floats in [0, 1], straight (not premultiplied) alpha; alpha = sign mask. */
  rgba: Float32Array;
  size: number;
  classId: number;
  shape: SignShape;
}

export interface PreviewOptions {
  /** Pixel size of each rendered sign (default 64). */
  size?: number;
  /** Augmented renders instead of clean ones (default false). */
  augment?: boolean;
  seed?: number;
  /** Grid columns (default 9). */
  columns?: number;
  /** Integer nearest-neighbour upscaling of each sign (default: 2 below 48 px, else 1). */
  zoom?: number;
  /** Class ids drawn under each cell (default true). */
  labels?: boolean;
}

// ---------------------------------------------------------------------------
// Colours

type Rgb = [number, number, number];

const PALETTE: Record<Exclude<SignColor, 'none'>, Rgb> = {
  red: [0.78, 0.09, 0.13],
  white: [0.95, 0.95, 0.93],
  blue: [0.06, 0.3, 0.66],
  yellow: [0.98, 0.77, 0.06],
  black: [0.07, 0.07, 0.08],
  grey: [0.5, 0.5, 0.51],
};

function css(c: Rgb): string {
  return `rgb(${Math.round(c[0] * 255)},${Math.round(c[1] * 255)},${Math.round(c[2] * 255)})`;
}

function colorOf(c: SignColor): string {
  return c === 'none' ? 'rgba(0,0,0,0)' : css(PALETTE[c]);
}

// ---------------------------------------------------------------------------
// Stroke glyphs (box: x in [0, width], y in [0, 1], y down)

type Pt = [number, number];

interface Glyph {
  width: number;
  strokes: Pt[][];
}

function arcPts(cx: number, cy: number, rx: number, ry: number, a0: number, a1: number, steps = 24): Pt[] {
  const pts: Pt[] = [];
  for (let i = 0; i <= steps; i++) {
    const a = a0 + ((a1 - a0) * i) / steps;
    pts.push([cx + rx * Math.cos(a), cy + ry * Math.sin(a)]);
  }
  return pts;
}

function quadPts(p0: Pt, p1: Pt, p2: Pt, steps = 16): Pt[] {
  const pts: Pt[] = [];
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    const a = (1 - t) * (1 - t);
    const b = 2 * t * (1 - t);
    const c = t * t;
    pts.push([a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]]);
  }
  return pts;
}

const PI = Math.PI;

/** Stadium shape used for 0 and O (DIN-like narrow round digits read better than ellipses at 32 px). */
function stadium(w: number): Pt[] {
  const r = w / 2;
  return [...arcPts(r, r, r, r, PI, 2 * PI, 16), ...arcPts(r, 1 - r, r, r, 0, PI, 16), [0, r]];
}

const SIX: Pt[][] = [
  [...arcPts(0.3, 0.69, 0.3, 0.31, 0, 2 * PI, 32)],
  [...quadPts([0.5, 0.04], [0.0, 0.02], [0.0, 0.69])],
];

const GLYPHS: Record<string, Glyph> = {
  '0': { width: 0.6, strokes: [stadium(0.6)] },
  '1': { width: 0.42, strokes: [[[0.02, 0.25], [0.36, 0], [0.36, 1]]] },
  '2': { width: 0.6, strokes: [[...arcPts(0.3, 0.29, 0.29, 0.29, PI + 0.45, 2 * PI + 0.6), [0.0, 1.0], [0.6, 1.0]]] },
  '3': {
    width: 0.6,
    strokes: [
      [...arcPts(0.3, 0.24, 0.27, 0.24, PI + 0.5, 2 * PI + PI / 2), ...arcPts(0.3, 0.74, 0.3, 0.26, -PI / 2, PI - 0.45)],
      [[0.14, 0.48], [0.3, 0.48]],
    ],
  },
  '4': { width: 0.62, strokes: [[[0.47, 1], [0.47, 0], [0, 0.7], [0.62, 0.7]]] },
  '5': {
    width: 0.6,
    strokes: [[[0.56, 0], [0.08, 0], [0.05, 0.47], ...arcPts(0.3, 0.69, 0.3, 0.31, PI + 0.9, 2 * PI + PI / 2 + 0.75)]],
  },
  '6': { width: 0.6, strokes: SIX },
  '7': { width: 0.6, strokes: [[[0, 0], [0.6, 0], [0.18, 1]]] },
  '8': {
    width: 0.6,
    strokes: [arcPts(0.3, 0.25, 0.25, 0.25, 0, 2 * PI, 32), arcPts(0.3, 0.73, 0.3, 0.27, 0, 2 * PI, 32)],
  },
  '9': { width: 0.6, strokes: SIX.map((s) => s.map(([x, y]): Pt => [0.6 - x, 1 - y])) },
  S: {
    width: 0.6,
    strokes: [[...arcPts(0.3, 0.26, 0.28, 0.26, 2 * PI - 0.35, PI / 2), ...arcPts(0.3, 0.75, 0.3, 0.25, -PI / 2, PI - 0.35)]],
  },
  T: { width: 0.6, strokes: [[[0, 0], [0.6, 0]], [[0.3, 0], [0.3, 1]]] },
  O: { width: 0.62, strokes: [stadium(0.62)] },
  P: { width: 0.58, strokes: [[[0, 1], [0, 0], [0.32, 0], ...arcPts(0.32, 0.26, 0.26, 0.26, -PI / 2, PI / 2), [0, 0.52]]] },
};

function strokePolyline(ctx: SKRSContext2D, pts: Pt[]): void {
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  const last = pts[pts.length - 1];
  if (Math.abs(last[0] - pts[0][0]) < 1e-6 && Math.abs(last[1] - pts[0][1]) < 1e-6) ctx.closePath();
  ctx.stroke();
}

/**
 * Draws `text` centred on (cx, cy); `height` is the glyph box height (strokes
 * extend lineWidth/2 beyond it), `squeeze` narrows glyphs for 3-digit numbers.
 */
function drawText(
  ctx: SKRSContext2D,
  text: string,
  cx: number,
  cy: number,
  height: number,
  lineWidth: number,
  gap: number,
  squeeze = 1,
): void {
  const glyphs = [...text].map((ch) => {
    const g = GLYPHS[ch];
    if (!g) throw new Error(`no glyph for ${JSON.stringify(ch)}`);
    return g;
  });
  const total = glyphs.reduce((s, g) => s + g.width * height * squeeze, 0) + gap * (glyphs.length - 1);
  let x = cx - total / 2;
  const y = cy - height / 2;
  ctx.save();
  ctx.lineWidth = lineWidth;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  for (const g of glyphs) {
    for (const s of g.strokes) strokePolyline(ctx, s.map(([gx, gy]): Pt => [x + gx * height * squeeze, y + gy * height]));
    x += g.width * height * squeeze + gap;
  }
  ctx.restore();
}

// ---------------------------------------------------------------------------
// Sign geometry (unit coordinates: the sign's bounding box spans [-1, 1] on its wider axis)

interface RegularPolygon {
  cx: number;
  cy: number;
  /** Inradius (centre to side). */
  rin: number;
  n: number;
  /** Angle of the first vertex. */
  rot: number;
}

const POLYGONS: Record<Exclude<SignShape, 'circle'>, RegularPolygon> = {
  // Equilateral, side 2, bbox y in [-0.866, 0.866]; centre = incentre.
  triangle: { cx: 0, cy: Math.sqrt(3) / 2 - 1 / Math.sqrt(3), rin: 1 / Math.sqrt(3), n: 3, rot: -PI / 2 },
  'inverted-triangle': { cx: 0, cy: -(Math.sqrt(3) / 2 - 1 / Math.sqrt(3)), rin: 1 / Math.sqrt(3), n: 3, rot: PI / 2 },
  octagon: { cx: 0, cy: 0, rin: 1, n: 8, rot: PI / 8 },
  diamond: { cx: 0, cy: 0, rin: Math.SQRT1_2, n: 4, rot: 0 },
};

function polygonVertices(p: RegularPolygon, rin: number): Pt[] {
  const rc = rin / Math.cos(PI / p.n);
  const pts: Pt[] = [];
  for (let k = 0; k < p.n; k++) {
    const a = p.rot + (2 * PI * k) / p.n;
    pts.push([p.cx + rc * Math.cos(a), p.cy + rc * Math.sin(a)]);
  }
  return pts;
}

const OUTLINES = new Map<SignShape, Pt[]>();

/** Outline points of a shape, used to frame the sign after warping. */
function outline(shape: SignShape): Pt[] {
  let pts = OUTLINES.get(shape);
  if (!pts) {
    pts = shape === 'circle' ? arcPts(0, 0, 1, 1, 0, 2 * PI, 48) : polygonVertices(POLYGONS[shape], POLYGONS[shape].rin);
    OUTLINES.set(shape, pts);
  }
  return pts;
}

/** Fills the polygon shrunk by `inset`, with corners rounded by `corner`. */
function fillRoundedPolygon(ctx: SKRSContext2D, p: RegularPolygon, inset: number, corner: number, color: string): void {
  const pts = polygonVertices(p, p.rin - inset - corner);
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.closePath();
  ctx.fillStyle = color;
  ctx.fill();
  ctx.strokeStyle = color;
  ctx.lineWidth = 2 * corner;
  ctx.lineJoin = 'round';
  ctx.stroke();
}

function disk(ctx: SKRSContext2D, r: number, color: string, cx = 0, cy = 0): void {
  ctx.beginPath();
  ctx.arc(cx, cy, r, 0, 2 * PI);
  ctx.fillStyle = color;
  ctx.fill();
}

function poly(ctx: SKRSContext2D, pts: Pt[]): void {
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.closePath();
  ctx.fill();
}

function rect(ctx: SKRSContext2D, x: number, y: number, w: number, h: number, r = 0): void {
  ctx.beginPath();
  if (r <= 0) {
    ctx.rect(x, y, w, h);
  } else {
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
  }
  ctx.fill();
}

function line(ctx: SKRSContext2D, pts: Pt[], width: number, cap: 'round' | 'butt' = 'round'): void {
  ctx.lineWidth = width;
  ctx.lineCap = cap;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.stroke();
}

/** Filled arrow head with its tip at (x, y) pointing along angle `dir`. */
function arrowHead(ctx: SKRSContext2D, x: number, y: number, dir: number, len: number, halfWidth: number): void {
  const c = Math.cos(dir);
  const s = Math.sin(dir);
  const bx = x - c * len;
  const by = y - s * len;
  poly(ctx, [
    [x, y],
    [bx - s * halfWidth, by + c * halfWidth],
    [bx + s * halfWidth, by - c * halfWidth],
  ]);
}

// ---------------------------------------------------------------------------
// Pictograms (local coordinates, roughly [-1, 1]^2, y down; fill/stroke style set by caller)

/** Car seen from behind, width 1, y in [-0.42, 0.48]. */
function carRear(ctx: SKRSContext2D): void {
  rect(ctx, -0.5, -0.06, 1.0, 0.38, 0.08);
  poly(ctx, [[-0.4, -0.04], [-0.3, -0.42], [0.3, -0.42], [0.4, -0.04]]);
  rect(ctx, -0.46, 0.28, 0.22, 0.2, 0.03);
  rect(ctx, 0.24, 0.28, 0.22, 0.2, 0.03);
}

/** Lorry seen from behind, width 1, y in [-0.62, 0.48]. */
function truckRear(ctx: SKRSContext2D): void {
  rect(ctx, -0.5, -0.62, 1.0, 0.94, 0.04);
  rect(ctx, -0.48, 0.28, 0.28, 0.2, 0.03);
  rect(ctx, 0.2, 0.28, 0.28, 0.2, 0.03);
}

/** Lorry side view, x in [-0.85, 0.85], y in [-0.5, 0.5]. */
function truckSide(ctx: SKRSContext2D): void {
  poly(ctx, [[-0.85, 0.25], [-0.85, -0.1], [-0.72, -0.38], [-0.46, -0.38], [-0.46, 0.25]]);
  rect(ctx, -0.4, -0.5, 1.25, 0.7, 0.03);
  rect(ctx, -0.85, 0.18, 1.7, 0.12);
  disk(ctx, 0.15, ctx.fillStyle as string, -0.62, 0.34);
  disk(ctx, 0.15, ctx.fillStyle as string, 0.36, 0.34);
  disk(ctx, 0.15, ctx.fillStyle as string, 0.66, 0.34);
}

/** Walking/running stick figure facing left, feet at y ~ 0.95. */
function walker(ctx: SKRSContext2D, running: boolean): void {
  disk(ctx, 0.17, ctx.fillStyle as string, 0.02, -0.76);
  line(ctx, [[0.04, -0.52], [-0.04, 0.12]], 0.24);
  const lw = 0.15;
  if (running) {
    line(ctx, [[-0.04, 0.1], [-0.42, 0.45], [-0.5, 0.9]], lw);
    line(ctx, [[-0.04, 0.1], [0.25, 0.5], [0.52, 0.75]], lw);
    line(ctx, [[0.03, -0.42], [-0.35, -0.12], [-0.5, -0.3]], lw);
    line(ctx, [[0.03, -0.42], [0.38, -0.15]], lw);
  } else {
    line(ctx, [[-0.04, 0.1], [-0.3, 0.92]], lw);
    line(ctx, [[-0.04, 0.1], [0.2, 0.5], [0.22, 0.92]], lw);
    line(ctx, [[0.03, -0.42], [-0.3, -0.02]], lw);
    line(ctx, [[0.03, -0.42], [0.3, -0.05]], lw);
  }
}

function drawSymbol(ctx: SKRSContext2D, name: SymbolName): void {
  const fill = ctx.fillStyle as string;
  ctx.strokeStyle = fill;
  switch (name) {
    case 'crossroad':
      poly(ctx, [[-0.09, -0.95], [0.09, -0.95], [0.19, 0.95], [-0.19, 0.95]]);
      rect(ctx, -0.72, -0.08, 1.44, 0.17);
      break;
    case 'exclamation':
      poly(ctx, [[-0.15, -0.95], [0.15, -0.95], [0.08, 0.4], [-0.08, 0.4]]);
      disk(ctx, 0.16, fill, 0, 0.73);
      break;
    case 'curve-left':
    case 'curve-right': {
      ctx.save();
      if (name === 'curve-right') ctx.scale(-1, 1);
      ctx.lineWidth = 0.3;
      ctx.lineCap = 'butt';
      ctx.beginPath();
      ctx.moveTo(0.28, 0.95);
      ctx.lineTo(0.28, 0.05);
      ctx.quadraticCurveTo(0.28, -0.55, -0.3, -0.55);
      ctx.stroke();
      arrowHead(ctx, -0.7, -0.55, PI, 0.45, 0.32);
      ctx.restore();
      break;
    }
    case 'double-curve':
      ctx.lineWidth = 0.26;
      ctx.lineCap = 'butt';
      ctx.beginPath();
      ctx.moveTo(0.3, 0.95);
      ctx.lineTo(0.3, 0.55);
      ctx.bezierCurveTo(0.3, 0.2, -0.32, 0.25, -0.32, -0.1);
      ctx.bezierCurveTo(-0.32, -0.4, 0.25, -0.35, 0.25, -0.6);
      ctx.stroke();
      arrowHead(ctx, 0.25, -1.0, -PI / 2, 0.42, 0.28);
      break;
    case 'bumps':
      ctx.beginPath();
      ctx.moveTo(-0.95, 0.8);
      ctx.lineTo(-0.95, 0.45);
      ctx.arc(-0.47, 0.45, 0.44, PI, 2 * PI);
      ctx.arc(0.47, 0.45, 0.44, PI, 2 * PI);
      ctx.lineTo(0.95, 0.8);
      ctx.closePath();
      ctx.fill();
      break;
    case 'slippery':
      ctx.save();
      ctx.translate(0.05, -0.45);
      ctx.rotate(-0.3);
      ctx.scale(0.95, 0.95);
      carRear(ctx);
      ctx.restore();
      for (const x0 of [-0.35, 0.3]) {
        const pts: Pt[] = [];
        for (let i = 0; i <= 20; i++) {
          const t = i / 20;
          pts.push([x0 + 0.18 * Math.sin(t * 2 * PI) - 0.15 * t, 0.15 + 0.8 * t]);
        }
        line(ctx, pts, 0.12);
      }
      break;
    case 'narrows-right':
      line(ctx, [[-0.42, -0.95], [-0.42, 0.95]], 0.2, 'butt');
      ctx.lineWidth = 0.2;
      ctx.beginPath();
      ctx.moveTo(0.5, 0.95);
      ctx.lineTo(0.5, 0.3);
      ctx.bezierCurveTo(0.5, 0.0, 0.12, 0.05, 0.12, -0.3);
      ctx.lineTo(0.12, -0.95);
      ctx.stroke();
      break;
    case 'road-work':
      // Worker shovelling a pile of earth.
      disk(ctx, 0.16, fill, -0.38, -0.7);
      line(ctx, [[-0.33, -0.48], [-0.15, 0.18]], 0.24);
      line(ctx, [[-0.15, 0.18], [-0.42, 0.92]], 0.15);
      line(ctx, [[-0.15, 0.18], [0.05, 0.55], [0.02, 0.92]], 0.15);
      line(ctx, [[-0.3, -0.35], [-0.05, -0.1], [0.1, 0.12]], 0.13);
      line(ctx, [[-0.22, -0.2], [0.32, 0.52]], 0.08);
      poly(ctx, [[0.24, 0.5], [0.42, 0.38], [0.58, 0.6], [0.4, 0.72]]);
      ctx.beginPath();
      ctx.ellipse(0.66, 0.95, 0.4, 0.32, 0, PI, 2 * PI);
      ctx.fill();
      break;
    case 'traffic-signals':
      rect(ctx, -0.32, -0.92, 0.64, 1.84, 0.1);
      disk(ctx, 0.21, css([0.9, 0.1, 0.1]), 0, -0.56);
      disk(ctx, 0.21, css([1.0, 0.75, 0.05]), 0, 0);
      disk(ctx, 0.21, css([0.1, 0.7, 0.3]), 0, 0.56);
      break;
    case 'pedestrian':
      walker(ctx, false);
      break;
    case 'children':
      ctx.save();
      ctx.translate(-0.3, -0.05);
      ctx.scale(0.9, 0.9);
      walker(ctx, true);
      ctx.restore();
      ctx.save();
      ctx.translate(0.42, 0.28);
      ctx.scale(0.62, 0.62);
      walker(ctx, true);
      ctx.restore();
      break;
    case 'bicycle':
      ctx.lineWidth = 0.1;
      for (const cx of [-0.52, 0.52]) {
        ctx.beginPath();
        ctx.arc(cx, 0.42, 0.36, 0, 2 * PI);
        ctx.stroke();
      }
      line(ctx, [[-0.52, 0.42], [-0.08, 0.42], [0.3, -0.12], [-0.25, -0.12], [-0.52, 0.42]], 0.1);
      line(ctx, [[-0.08, 0.42], [-0.3, -0.3]], 0.1);
      line(ctx, [[-0.45, -0.32], [-0.15, -0.32]], 0.12);
      line(ctx, [[0.52, 0.42], [0.24, -0.38], [0.44, -0.42]], 0.1);
      break;
    case 'snowflake': {
      for (let k = 0; k < 3; k++) {
        const a = PI / 2 + (k * PI) / 3;
        const c = Math.cos(a);
        const s = Math.sin(a);
        line(ctx, [[-0.85 * c, -0.85 * s], [0.85 * c, 0.85 * s]], 0.13);
        for (const sign of [-1, 1]) {
          const bx = sign * 0.5 * c;
          const by = sign * 0.5 * s;
          for (const side of [-1, 1]) {
            const b = a + (sign > 0 ? 0 : PI) + side * (PI / 4);
            line(ctx, [[bx, by], [bx + 0.3 * Math.cos(b), by + 0.3 * Math.sin(b)]], 0.1);
          }
        }
      }
      break;
    }
    case 'deer': {
      // Leaping to the left.
      ctx.beginPath();
      ctx.ellipse(0.05, 0.05, 0.5, 0.22, 0.35, 0, 2 * PI);
      ctx.fill();
      poly(ctx, [[-0.35, -0.05], [-0.55, -0.5], [-0.42, -0.55], [-0.15, -0.1]]);
      ctx.beginPath();
      ctx.ellipse(-0.62, -0.55, 0.17, 0.1, -0.3, 0, 2 * PI);
      ctx.fill();
      line(ctx, [[-0.5, -0.62], [-0.38, -0.95]], 0.07);
      line(ctx, [[-0.43, -0.8], [-0.25, -0.88]], 0.06);
      line(ctx, [[-0.42, -0.1], [-0.75, 0.05], [-0.85, -0.1]], 0.1);
      line(ctx, [[-0.32, 0.0], [-0.65, 0.25], [-0.78, 0.2]], 0.1);
      line(ctx, [[0.45, 0.25], [0.75, 0.55], [0.92, 0.85]], 0.11);
      line(ctx, [[0.35, 0.3], [0.55, 0.65], [0.62, 0.95]], 0.11);
      line(ctx, [[0.5, 0.12], [0.68, 0.02]], 0.08);
      break;
    }
  }
}

function drawArrow(ctx: SKRSContext2D, name: ArrowName): void {
  const w = 0.28;
  ctx.strokeStyle = ctx.fillStyle as string;
  ctx.lineWidth = w;
  ctx.lineCap = 'butt';
  ctx.lineJoin = 'round';
  const ahead = (): void => {
    line(ctx, [[0, 0.9], [0, -0.3]], w, 'butt');
    arrowHead(ctx, 0, -0.9, -PI / 2, 0.62, 0.45);
  };
  switch (name) {
    case 'ahead':
      ahead();
      break;
    case 'turn-right':
    case 'turn-left':
      ctx.save();
      if (name === 'turn-left') ctx.scale(-1, 1);
      ctx.beginPath();
      ctx.moveTo(-0.35, 0.9);
      ctx.lineTo(-0.35, 0.0);
      ctx.quadraticCurveTo(-0.35, -0.3, 0.0, -0.3);
      ctx.lineTo(0.3, -0.3);
      ctx.stroke();
      arrowHead(ctx, 0.88, -0.3, 0, 0.6, 0.45);
      ctx.restore();
      break;
    case 'ahead-or-right':
    case 'ahead-or-left':
      ctx.save();
      if (name === 'ahead-or-left') ctx.scale(-1, 1);
      ctx.translate(-0.22, 0);
      line(ctx, [[0, 0.92], [0, -0.4]], w, 'butt');
      arrowHead(ctx, 0, -0.92, -PI / 2, 0.55, 0.4);
      ctx.beginPath();
      ctx.moveTo(0, 0.5);
      ctx.quadraticCurveTo(0, 0.12, 0.38, 0.12);
      ctx.lineTo(0.55, 0.12);
      ctx.stroke();
      arrowHead(ctx, 1.05, 0.12, 0, 0.55, 0.4);
      ctx.restore();
      break;
    case 'keep-right':
    case 'keep-left':
      ctx.save();
      ctx.rotate(name === 'keep-right' ? (3 * PI) / 4 : (-3 * PI) / 4);
      ahead();
      ctx.restore();
      break;
    case 'roundabout': {
      // Three arrows circulating anticlockwise (right-hand traffic).
      const r = 0.56;
      ctx.lineWidth = 0.24;
      for (let k = 0; k < 3; k++) {
        const a0 = -PI / 2 + 0.35 + (k * 2 * PI) / 3;
        const a1 = a0 - 1.25;
        ctx.beginPath();
        ctx.arc(0, 0, r, a0, a1, true);
        ctx.stroke();
        const px = r * Math.cos(a1);
        const py = r * Math.sin(a1);
        const dir = Math.atan2(-Math.cos(a1), Math.sin(a1));
        arrowHead(ctx, px + 0.38 * Math.cos(dir), py + 0.38 * Math.sin(dir), dir, 0.44, 0.3);
      }
      break;
    }
  }
}

/** "End of …" band: thin dark lines sloping down from right to left (Vienna convention C,17). */
function drawStrike(ctx: SKRSContext2D): void {
  ctx.save();
  ctx.beginPath();
  ctx.arc(0, 0, 0.93, 0, 2 * PI);
  ctx.clip();
  ctx.strokeStyle = css([0.15, 0.15, 0.16]);
  const n = Math.SQRT1_2;
  for (let i = -2; i <= 2; i++) {
    const o = i * 0.075;
    line(ctx, [[1 + o * n, -1 + o * n], [-1 + o * n, 1 + o * n]], 0.035, 'butt');
  }
  ctx.restore();
}

function drawPictogram(ctx: SKRSContext2D, spec: SignSpec): void {
  const p = spec.pictogram;
  ctx.save();
  switch (p.kind) {
    case 'none':
      break;
    case 'number': {
      ctx.strokeStyle = colorOf(p.color);
      // As large as the ring allows: digits must stay legible at 32 px.
      if (p.text.length >= 3) drawText(ctx, p.text, 0, 0, 0.64, 0.13, 0.09, 0.8);
      else drawText(ctx, p.text, 0, 0, 0.74, 0.15, 0.12);
      break;
    }
    case 'text':
      ctx.strokeStyle = colorOf(p.color);
      drawText(ctx, p.text, 0, 0, 0.48, 0.11, 0.09, 0.92);
      break;
    case 'overtake': {
      ctx.save();
      ctx.translate(-0.34, p.left === 'truck' ? 0.1 : 0.05);
      ctx.scale(0.58, 0.58);
      ctx.fillStyle = colorOf(p.leftColor);
      if (p.left === 'truck') truckRear(ctx);
      else carRear(ctx);
      ctx.restore();
      ctx.save();
      ctx.translate(0.34, 0.05);
      ctx.scale(0.58, 0.58);
      ctx.fillStyle = colorOf(p.rightColor);
      carRear(ctx);
      ctx.restore();
      break;
    }
    case 'truck':
      ctx.scale(0.72, 0.72);
      ctx.fillStyle = colorOf(p.color);
      truckSide(ctx);
      break;
    case 'bar':
      ctx.fillStyle = colorOf(p.color);
      rect(ctx, -0.66, -0.17, 1.32, 0.34);
      break;
    case 'symbol':
      // Centred a little below the triangle's incentre, where the white area is widest.
      ctx.translate(0, 0.28);
      ctx.scale(0.41, 0.41);
      ctx.fillStyle = colorOf(p.color);
      drawSymbol(ctx, p.name);
      break;
    case 'arrow':
      ctx.scale(0.74, 0.74);
      ctx.fillStyle = colorOf(p.color);
      drawArrow(ctx, p.name);
      break;
  }
  ctx.restore();
}

function drawSign(ctx: SKRSContext2D, spec: SignSpec): void {
  const white = colorOf('white');
  switch (spec.shape) {
    case 'circle':
      if (spec.border === 'red') {
        disk(ctx, 1, white);
        disk(ctx, 0.96, colorOf('red'));
        disk(ctx, 0.76, colorOf(spec.fill));
      } else if (spec.border === 'none' && spec.fill === 'white') {
        // "End of" signs: no border, only a thin dark rim.
        disk(ctx, 1, css([0.25, 0.25, 0.26]));
        disk(ctx, 0.965, white);
      } else {
        disk(ctx, 1, white);
        disk(ctx, 0.95, colorOf(spec.fill));
      }
      break;
    case 'triangle':
    case 'inverted-triangle': {
      const p = POLYGONS[spec.shape];
      const band = spec.shape === 'triangle' ? 0.15 : 0.2;
      fillRoundedPolygon(ctx, p, 0, 0.09, white);
      fillRoundedPolygon(ctx, p, 0.03, 0.08, colorOf(spec.border));
      fillRoundedPolygon(ctx, p, 0.03 + band, 0.03, colorOf(spec.fill));
      break;
    }
    case 'octagon': {
      const p = POLYGONS.octagon;
      fillRoundedPolygon(ctx, p, 0, 0.04, white);
      fillRoundedPolygon(ctx, p, 0.05, 0.03, colorOf(spec.fill));
      break;
    }
    case 'diamond': {
      const p = POLYGONS.diamond;
      fillRoundedPolygon(ctx, p, 0, 0.05, colorOf('black'));
      fillRoundedPolygon(ctx, p, 0.025, 0.04, colorOf(spec.border));
      fillRoundedPolygon(ctx, p, 0.22, 0.02, colorOf(spec.fill));
      break;
    }
  }
  drawPictogram(ctx, spec);
  if (spec.strike) drawStrike(ctx);
}

// ---------------------------------------------------------------------------
// Textures

interface Texture {
  size: number;
  /** size * size * 4 premultiplied RGBA floats; pixel (i, j) covers unit coords around -1 + (i + 0.5) * 2 / size. */
  data: Float32Array;
}

const textureCache = new Map<string, Texture>();

function signTexture(classId: number, size: number): Texture {
  const key = `${classId}/${size}`;
  const hit = textureCache.get(key);
  if (hit) return hit;
  const canvas = createCanvas(size, size);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(size / 2, 0, 0, size / 2, size / 2, size / 2);
  drawSign(ctx, SIGN_SPECS[classId]);
  const bytes = ctx.getImageData(0, 0, size, size).data;
  const data = new Float32Array(size * size * 4);
  for (let i = 0; i < size * size; i++) {
    const a = bytes[4 * i + 3] / 255;
    data[4 * i] = (bytes[4 * i] / 255) * a;
    data[4 * i + 1] = (bytes[4 * i + 1] / 255) * a;
    data[4 * i + 2] = (bytes[4 * i + 2] / 255) * a;
    data[4 * i + 3] = a;
  }
  const tex = { size, data };
  textureCache.set(key, tex);
  return tex;
}

function textureSizeFor(internal: number): number {
  let t = 128;
  while (t < internal && t < 512) t *= 2;
  return t;
}

// ---------------------------------------------------------------------------
// Scene parameters

type BackgroundKind = 'sky' | 'foliage' | 'building' | 'gradient' | 'blobs' | 'plain';

interface SceneParams {
  /** Larger side of the warped sign's bounding box, as a fraction of the image side. */
  scale: number;
  rotation: number;
  /** Affine stretch/shear before rotation. */
  sx: number;
  sy: number;
  shear: number;
  /** Projective terms: w = 1 + px * u + py * v (viewing the sign at an angle). */
  px: number;
  py: number;
  /** Sign centre offset from the image centre, fraction of the image side. */
  dx: number;
  dy: number;
  /** Gaussian blur sigma per axis, output pixels (different sigmas ~ motion blur). */
  blurX: number;
  blurY: number;
  brightness: number;
  contrast: number;
  gamma: number;
  cast: Rgb;
  /** Colour fading of the sign (0 = fresh paint). */
  fade: number;
  /** Linear shading across the sign (partial shadow). */
  shadeAngle: number;
  shadeAmount: number;
  noise: number;
  noiseSeed: number;
  background: BackgroundKind;
  backgroundSeed: number;
  /** Plain background colour. */
  plainColor: Rgb;
  pole: boolean;
}

const DEG = PI / 180;
const CLEAN_SCALE = 0.8;
const NEUTRAL_GREY: Rgb = [0.47, 0.48, 0.5];

function canonicalParams(background: 'random' | 'plain', seed: number): SceneParams {
  const rng = createRng(seed);
  return {
    scale: CLEAN_SCALE,
    rotation: 0,
    sx: 1,
    sy: 1,
    shear: 0,
    px: 0,
    py: 0,
    dx: 0,
    dy: 0,
    blurX: 0,
    blurY: 0,
    brightness: 1,
    contrast: 1,
    gamma: 1,
    cast: [1, 1, 1],
    fade: 0,
    shadeAngle: 0,
    shadeAmount: 0,
    noise: 0,
    noiseSeed: 0,
    background: background === 'plain' ? 'plain' : sampleBackgroundKind(rng),
    backgroundSeed: hashSeed(seed, 7),
    plainColor: NEUTRAL_GREY,
    pole: false,
  };
}

function sampleBackgroundKind(rng: Rng): BackgroundKind {
  const r = rng();
  if (r < 0.25) return 'sky';
  if (r < 0.5) return 'foliage';
  if (r < 0.7) return 'building';
  if (r < 0.8) return 'gradient';
  if (r < 0.95) return 'blobs';
  return 'plain';
}

function mutedColor(rng: Rng): Rgb {
  const base = randRange(rng, 0.15, 0.8);
  return [0, 1, 2].map(() => Math.min(1, Math.max(0, base + randRange(rng, -0.15, 0.15)))) as Rgb;
}

function sampleParams(rng: Rng, background: 'random' | 'plain'): SceneParams {
  // 55-95 % of the side, skewed towards large (median ~85 %): GTSRB crops keep a ~10 % margin.
  const u0 = rng();
  const scale = 0.95 - 0.4 * u0 * u0;
  const margin = (1 - scale) / 2;
  // Triangular distributions keep most samples near the typical value.
  const tri = (): number => rng() + rng() - 1;
  const blur = rng() < 0.35 ? 0 : randRange(rng, 0.1, 1.0);
  const light = rng();
  // GTSRB has many dark (dusk, shadow, underexposed) photos, some overexposed ones.
  const brightness =
    light < 0.25 ? randRange(rng, 0.3, 0.6) : light < 0.9 ? randRange(rng, 0.55, 1.1) : randRange(rng, 1.1, 1.45);
  const stretch = Math.exp(randRange(rng, -0.12, 0.12));
  return {
    scale,
    rotation: tri() * 15 * DEG,
    sx: stretch,
    sy: Math.exp(randRange(rng, -0.05, 0.05)) / stretch,
    shear: tri() * 0.15,
    px: tri() * 0.22,
    py: tri() * 0.15,
    dx: randRange(rng, -margin, margin) * 0.6,
    dy: randRange(rng, -margin, margin) * 0.6,
    blurX: blur * randRange(rng, 0.6, 1.4),
    blurY: blur * randRange(rng, 0.6, 1.4),
    brightness,
    contrast: randRange(rng, 0.6, 1.15),
    gamma: Math.exp(randRange(rng, -0.3, 0.3)),
    cast: [Math.exp(randNormal(rng, 0, 0.07)), Math.exp(randNormal(rng, 0, 0.05)), Math.exp(randNormal(rng, 0, 0.08))],
    fade: rng() < 0.5 ? 0 : randRange(rng, 0, 0.45),
    shadeAngle: randRange(rng, 0, 2 * PI),
    shadeAmount: rng() < 0.5 ? 0 : randRange(rng, 0, 0.4),
    noise: randRange(rng, 0, 0.04),
    noiseSeed: randInt(rng, 0, 0x7fffffff),
    background: background === 'plain' ? 'plain' : sampleBackgroundKind(rng),
    backgroundSeed: randInt(rng, 0, 0x7fffffff),
    plainColor: mutedColor(rng),
    pole: randBool(rng, 0.4),
  };
}

/** Frame `f` of a track: the sign grows as the car approaches; pose, blur and light wobble a little. */
function jitterParams(base: SceneParams, rng: Rng, f: number): SceneParams {
  const scale = Math.min(0.97, base.scale * (1 + 0.035 * f) * Math.exp(randRange(rng, -0.02, 0.02)));
  const lim = ((1 - scale) / 2) * 0.8;
  const clamp = (v: number): number => Math.max(-lim, Math.min(lim, v));
  // Field by field in declaration order: an object spread gives a different hidden
  // class, which made V8 deoptimise the render loop over and over.
  return {
    scale,
    rotation: base.rotation + randRange(rng, -1.5, 1.5) * DEG,
    sx: base.sx,
    sy: base.sy,
    shear: base.shear,
    px: base.px + randRange(rng, -0.02, 0.02),
    py: base.py + randRange(rng, -0.02, 0.02),
    dx: clamp(base.dx + randRange(rng, -0.02, 0.02)),
    dy: clamp(base.dy + randRange(rng, -0.02, 0.02)),
    blurX: base.blurX * randRange(rng, 0.7, 1.3),
    blurY: base.blurY * randRange(rng, 0.7, 1.3),
    brightness: base.brightness * Math.exp(randRange(rng, -0.06, 0.06)),
    contrast: base.contrast,
    gamma: base.gamma,
    cast: base.cast,
    fade: base.fade,
    shadeAngle: base.shadeAngle,
    shadeAmount: base.shadeAmount,
    noise: base.noise * randRange(rng, 0.8, 1.2),
    noiseSeed: randInt(rng, 0, 0x7fffffff),
    background: base.background,
    backgroundSeed: base.backgroundSeed,
    plainColor: base.plainColor,
    pole: base.pole,
  };
}

// ---------------------------------------------------------------------------
// Backgrounds (R x R x 3 floats)

let lattice = new Float64Array(64);

/** Adds amp * smooth value noise in [0, 1] on a (cells+1)^2 random lattice to `out`. */
function valueNoise(rng: Rng, R: number, cells: number, out: Float32Array, amp: number): void {
  const len = (cells + 1) * (cells + 1);
  if (lattice.length < len) lattice = new Float64Array(len);
  const g = lattice;
  for (let i = 0; i < len; i++) g[i] = rng();
  const ox = rng();
  const oy = rng();
  for (let y = 0; y < R; y++) {
    const gy = ((y + 0.5) / R) * (cells - 1) + oy;
    const iy = Math.floor(gy);
    let fy = gy - iy;
    fy = fy * fy * (3 - 2 * fy);
    for (let x = 0; x < R; x++) {
      const gx = ((x + 0.5) / R) * (cells - 1) + ox;
      const ix = Math.floor(gx);
      let fx = gx - ix;
      fx = fx * fx * (3 - 2 * fx);
      const i0 = iy * (cells + 1) + ix;
      const top = g[i0] + (g[i0 + 1] - g[i0]) * fx;
      const bot = g[i0 + cells + 1] + (g[i0 + cells + 2] - g[i0 + cells + 1]) * fx;
      out[y * R + x] += amp * (top + (bot - top) * fy);
    }
  }
}

/** Fractal value noise in [0, 1] written into `out` (R * R). */
function fractal(rng: Rng, R: number, cells: number, octaves: number, out: Float32Array): Float32Array {
  out.fill(0);
  let amp = 1;
  let total = 0;
  for (let o = 0; o < octaves; o++) {
    valueNoise(rng, R, cells << o, out, amp);
    total += amp;
    amp *= 0.5;
  }
  for (let i = 0; i < R * R; i++) out[i] /= total;
  return out;
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.max(0, Math.min(1, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

function vary(rng: Rng, c: Rgb, d: number): Rgb {
  return c.map((v) => Math.min(1, Math.max(0, v + randRange(rng, -d, d)))) as Rgb;
}

function renderBackground(p: SceneParams, R: number, out: Float32Array, w: Work): void {
  const rng = createRng(p.backgroundSeed);
  const set = (i: number, r: number, g: number, b: number): void => {
    out[3 * i] = r;
    out[3 * i + 1] = g;
    out[3 * i + 2] = b;
  };
  switch (p.background) {
    case 'plain':
      for (let i = 0; i < R * R; i++) set(i, p.plainColor[0], p.plainColor[1], p.plainColor[2]);
      return;
    case 'sky': {
      const top: Rgb = [randRange(rng, 0.3, 0.55), randRange(rng, 0.5, 0.72), randRange(rng, 0.75, 0.95)];
      const haze = randRange(rng, 0.2, 0.8);
      const bottom: Rgb = [top[0] + (0.86 - top[0]) * haze, top[1] + (0.88 - top[1]) * haze, top[2] + (0.92 - top[2]) * haze];
      const clouds = rng() < 0.6 ? fractal(rng, R, 3, 3, w.noiseA) : null;
      const thr = randRange(rng, 0.35, 0.6);
      const cloud = randRange(rng, 0.75, 0.97);
      const tilt = randRange(rng, -0.3, 0.3);
      for (let y = 0; y < R; y++) {
        for (let x = 0; x < R; x++) {
          const t = Math.max(0, Math.min(1, (y + tilt * (x - R / 2)) / R));
          let r = top[0] + (bottom[0] - top[0]) * t;
          let g = top[1] + (bottom[1] - top[1]) * t;
          let b = top[2] + (bottom[2] - top[2]) * t;
          if (clouds) {
            const c = smoothstep(thr, thr + 0.25, clouds[y * R + x]);
            r += (cloud - r) * c;
            g += (cloud - g) * c;
            b += (cloud * 1.02 - b) * c;
          }
          set(y * R + x, r, g, b);
        }
      }
      return;
    }
    case 'foliage': {
      const dark: Rgb = [randRange(rng, 0.03, 0.12), randRange(rng, 0.08, 0.2), randRange(rng, 0.03, 0.1)];
      const lightC: Rgb = [randRange(rng, 0.2, 0.45), randRange(rng, 0.35, 0.6), randRange(rng, 0.08, 0.3)];
      const n = fractal(rng, R, 4, 4, w.noiseA);
      const gaps = rng() < 0.4 ? fractal(rng, R, 6, 2, w.noiseB) : null;
      const sky: Rgb = [0.75, 0.82, 0.9];
      for (let i = 0; i < R * R; i++) {
        const t = smoothstep(0.25, 0.75, n[i]);
        let r = dark[0] + (lightC[0] - dark[0]) * t;
        let g = dark[1] + (lightC[1] - dark[1]) * t;
        let b = dark[2] + (lightC[2] - dark[2]) * t;
        if (gaps) {
          const s = smoothstep(0.68, 0.78, gaps[i]);
          r += (sky[0] - r) * s;
          g += (sky[1] - g) * s;
          b += (sky[2] - b) * s;
        }
        set(i, r, g, b);
      }
      return;
    }
    case 'building': {
      const wall = vary(
        rng,
        pick(rng, [
          [0.75, 0.68, 0.55],
          [0.55, 0.55, 0.55],
          [0.6, 0.3, 0.22],
          [0.85, 0.85, 0.82],
          [0.3, 0.28, 0.27],
        ] as Rgb[]),
        0.08,
      );
      const dirt = fractal(rng, R, 4, 2, w.noiseA);
      const bricks = rng() < 0.5;
      const cellH = R * randRange(rng, bricks ? 0.04 : 0.25, bricks ? 0.09 : 0.45);
      const cellW = cellH * randRange(rng, bricks ? 2 : 0.8, bricks ? 2.6 : 1.4);
      const ox = rng() * cellW;
      const oy = rng() * cellH;
      const mortar = rng() < 0.5 ? 1.25 : 0.7;
      const glass: Rgb = vary(rng, [0.12, 0.14, 0.2], 0.06);
      for (let y = 0; y < R; y++) {
        const fy = (y + oy) / cellH;
        const row = Math.floor(fy);
        const vy = fy - row;
        for (let x = 0; x < R; x++) {
          const fx = (x + ox) / cellW + (bricks && row % 2 ? 0.5 : 0);
          const col = Math.floor(fx);
          const vx = fx - col;
          const k = 0.85 + 0.3 * ((hashSeed(p.backgroundSeed, row, col) & 1023) / 1023);
          const d = 0.85 + 0.3 * dirt[y * R + x];
          let r: number, g: number, b: number;
          if (bricks) {
            const joint = vy * cellH < 1 || vx * cellW < 1;
            const m = joint ? mortar : k;
            r = wall[0] * m;
            g = wall[1] * m;
            b = wall[2] * m;
          } else if (vx > 0.25 && vx < 0.75 && vy > 0.2 && vy < 0.8) {
            r = glass[0] * k * 1.2;
            g = glass[1] * k * 1.2;
            b = glass[2] * k * 1.2;
          } else {
            r = wall[0];
            g = wall[1];
            b = wall[2];
          }
          set(y * R + x, r * d, g * d, b * d);
        }
      }
      return;
    }
    case 'gradient': {
      const c1 = mutedColor(rng);
      const c2 = mutedColor(rng);
      const a = randRange(rng, 0, 2 * PI);
      const ca = Math.cos(a);
      const sa = Math.sin(a);
      for (let y = 0; y < R; y++) {
        for (let x = 0; x < R; x++) {
          const t = Math.max(0, Math.min(1, 0.5 + (((x + 0.5) / R - 0.5) * ca + ((y + 0.5) / R - 0.5) * sa)));
          set(y * R + x, c1[0] + (c2[0] - c1[0]) * t, c1[1] + (c2[1] - c1[1]) * t, c1[2] + (c2[2] - c1[2]) * t);
        }
      }
      return;
    }
    case 'blobs': {
      const base = mutedColor(rng);
      for (let i = 0; i < R * R; i++) set(i, base[0], base[1], base[2]);
      const count = randInt(rng, 5, 15);
      for (let k = 0; k < count; k++) {
        const c = mutedColor(rng);
        const cx = rng() * R;
        const cy = rng() * R;
        const rx = R * randRange(rng, 0.05, 0.4);
        const ry = rx * randRange(rng, 0.4, 1.6);
        const alpha = randRange(rng, 0.5, 1);
        const x0 = Math.max(0, Math.floor(cx - rx));
        const x1 = Math.min(R - 1, Math.ceil(cx + rx));
        const y0 = Math.max(0, Math.floor(cy - ry));
        const y1 = Math.min(R - 1, Math.ceil(cy + ry));
        for (let y = y0; y <= y1; y++) {
          for (let x = x0; x <= x1; x++) {
            const ex = (x + 0.5 - cx) / rx;
            const ey = (y + 0.5 - cy) / ry;
            const m = alpha * (1 - smoothstep(0.6, 1, Math.sqrt(ex * ex + ey * ey)));
            if (m <= 0) continue;
            const i = y * R + x;
            for (let ch = 0; ch < 3; ch++) out[3 * i + ch] += (c[ch] - out[3 * i + ch]) * m;
          }
        }
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Warp and compositing

type Mat3 = [number, number, number, number, number, number, number, number, number];

function mul3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) r[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
  }
  return r as Mat3;
}

function inv3(m: Mat3): Mat3 {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  const k = 1 / det;
  return [
    A * k,
    -(b * i - c * h) * k,
    (b * f - c * e) * k,
    B * k,
    (a * i - c * g) * k,
    -(a * f - c * d) * k,
    C * k,
    -(a * h - b * g) * k,
    (a * e - b * d) * k,
  ];
}

function apply3(m: Mat3, x: number, y: number): Pt {
  const w = m[6] * x + m[7] * y + m[8];
  return [(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w];
}

/** Homography from unit sign coords to internal pixel coords (pixel centres at i + 0.5). */
function signHomography(p: SceneParams, shape: SignShape, R: number): Mat3 {
  const c = Math.cos(p.rotation);
  const s = Math.sin(p.rotation);
  // Rotation * [[sx, shear], [0, sy]]
  const m00 = c * p.sx;
  const m01 = c * p.shear - s * p.sy;
  const m10 = s * p.sx;
  const m11 = s * p.shear + c * p.sy;
  const P: Mat3 = [m00, m01, 0, m10, m11, 0, p.px, p.py, 1];
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const [u, v] of outline(shape)) {
    const [x, y] = apply3(P, u, v);
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const k = (p.scale * R) / Math.max(maxX - minX, maxY - minY);
  const tx = R / 2 + p.dx * R - k * (minX + maxX) / 2;
  const ty = R / 2 + p.dy * R - k * (minY + maxY) / 2;
  return mul3([k, 0, tx, 0, k, ty, 0, 0, 1], P);
}

/**
 * Warps the sign texture into `layer` (R x R premultiplied RGBA, zero outside the
 * sign), with fading and shading applied to the sign's colours.
 */
function warpSign(tex: Texture, H: Mat3, R: number, p: SceneParams, layer: Float32Array): void {
  layer.fill(0);
  const Hi = inv3(H);
  let x0 = R;
  let x1 = 0;
  let y0 = R;
  let y1 = 0;
  for (const [u, v] of [[-1, -1], [1, -1], [1, 1], [-1, 1]] as Pt[]) {
    const [x, y] = apply3(H, u, v);
    x0 = Math.min(x0, Math.floor(x));
    x1 = Math.max(x1, Math.ceil(x));
    y0 = Math.min(y0, Math.floor(y));
    y1 = Math.max(y1, Math.ceil(y));
  }
  x0 = Math.max(0, x0);
  y0 = Math.max(0, y0);
  x1 = Math.min(R - 1, x1);
  y1 = Math.min(R - 1, y1);
  const T = tex.size;
  const td = tex.data;
  const half = T / 2;
  const fade = p.fade;
  const shadeX = Math.cos(p.shadeAngle) * p.shadeAmount * 0.5;
  const shadeY = Math.sin(p.shadeAngle) * p.shadeAmount * 0.5;
  const shade0 = 1 - p.shadeAmount * 0.5;
  for (let y = y0; y <= y1; y++) {
    const py = y + 0.5;
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      const w = Hi[6] * px + Hi[7] * py + Hi[8];
      const u = (Hi[0] * px + Hi[1] * py + Hi[2]) / w;
      const v = (Hi[3] * px + Hi[4] * py + Hi[5]) / w;
      if (u < -1.02 || u > 1.02 || v < -1.02 || v > 1.02) continue;
      const tx = (u + 1) * half - 0.5;
      const ty = (v + 1) * half - 0.5;
      let ix = Math.floor(tx);
      let iy = Math.floor(ty);
      const fx = tx - ix;
      const fy = ty - iy;
      let ix1 = ix + 1;
      let iy1 = iy + 1;
      // Clamp to the edge texels (the texture border is transparent anyway).
      ix = ix < 0 ? 0 : ix > T - 1 ? T - 1 : ix;
      iy = iy < 0 ? 0 : iy > T - 1 ? T - 1 : iy;
      ix1 = ix1 < 0 ? 0 : ix1 > T - 1 ? T - 1 : ix1;
      iy1 = iy1 < 0 ? 0 : iy1 > T - 1 ? T - 1 : iy1;
      const a00 = 4 * (iy * T + ix);
      const a01 = 4 * (iy * T + ix1);
      const a10 = 4 * (iy1 * T + ix);
      const a11 = 4 * (iy1 * T + ix1);
      const w00 = (1 - fx) * (1 - fy);
      const w01 = fx * (1 - fy);
      const w10 = (1 - fx) * fy;
      const w11 = fx * fy;
      const a = td[a00 + 3] * w00 + td[a01 + 3] * w01 + td[a10 + 3] * w10 + td[a11 + 3] * w11;
      if (a <= 0) continue;
      let r = td[a00] * w00 + td[a01] * w01 + td[a10] * w10 + td[a11] * w11;
      let g = td[a00 + 1] * w00 + td[a01 + 1] * w01 + td[a10 + 1] * w10 + td[a11 + 1] * w11;
      let b = td[a00 + 2] * w00 + td[a01 + 2] * w01 + td[a10 + 2] * w10 + td[a11 + 2] * w11;
      if (fade > 0) {
        // Sun-bleached paint: desaturate, then wash towards pale grey (premultiplied).
        const l = 0.3 * r + 0.59 * g + 0.11 * b;
        r += (l - r) * fade * 0.7;
        g += (l - g) * fade * 0.7;
        b += (l - b) * fade * 0.7;
        r += (0.85 * a - r) * fade * 0.3;
        g += (0.85 * a - g) * fade * 0.3;
        b += (0.85 * a - b) * fade * 0.3;
      }
      const sh = shade0 + shadeX * u + shadeY * v;
      const o = 4 * (y * R + x);
      layer[o] = r * sh;
      layer[o + 1] = g * sh;
      layer[o + 2] = b * sh;
      layer[o + 3] = a;
    }
  }
}

/** Grey metal post from the sign centre down to the bottom edge. */
function drawPole(bg: Float32Array, R: number, H: Mat3, rng: Rng): void {
  const [cx, cy] = apply3(H, 0, 0);
  const [ex] = apply3(H, 1, 0);
  const half = Math.max(1, Math.abs(ex - cx) * 0.08);
  const grey = randRange(rng, 0.35, 0.7);
  for (let y = Math.max(0, Math.floor(cy)); y < R; y++) {
    for (let x = Math.max(0, Math.floor(cx - half)); x <= Math.min(R - 1, Math.ceil(cx + half)); x++) {
      const t = (x + 0.5 - (cx - half)) / (2 * half);
      if (t < 0 || t > 1) continue;
      const v = grey * (0.75 + 0.45 * Math.sin(t * PI));
      const i = 3 * (y * R + x);
      bg[i] = v;
      bg[i + 1] = v;
      bg[i + 2] = v * 1.03;
    }
  }
}

/** One separable Gaussian pass over an R x R RGB buffer, edges clamped. */
function blurPass(src: Float32Array, dst: Float32Array, R: number, sigma: number, horizontal: boolean): void {
  const rad = Math.min(64, Math.max(1, Math.ceil(sigma * 2.5)));
  const taps = 2 * rad + 1;
  const k = new Float64Array(taps);
  let sum = 0;
  for (let i = 0; i < taps; i++) sum += k[i] = Math.exp(-((i - rad) * (i - rad)) / (2 * sigma * sigma));
  for (let i = 0; i < taps; i++) k[i] /= sum;
  // clampIdx[j] = clamp(j - rad) * stride: precomputed so the inner loop has no branches.
  const stride = horizontal ? 3 : 3 * R;
  const clampIdx = new Int32Array(R + 2 * rad);
  for (let j = 0; j < clampIdx.length; j++) clampIdx[j] = Math.min(R - 1, Math.max(0, j - rad)) * stride;
  const other = horizontal ? 3 * R : 3;
  for (let a = 0; a < R; a++) {
    const base = a * other;
    for (let b = 0; b < R; b++) {
      let r = 0;
      let g = 0;
      let bl = 0;
      for (let t = 0; t < taps; t++) {
        const j = base + clampIdx[b + t];
        const wt = k[t];
        r += src[j] * wt;
        g += src[j + 1] * wt;
        bl += src[j + 2] * wt;
      }
      const o = base + clampIdx[b + rad];
      dst[o] = r;
      dst[o + 1] = g;
      dst[o + 2] = bl;
    }
  }
}

/** Separable Gaussian blur of an R x R RGB buffer in place (tmp: scratch of the same size or larger). */
function gaussianBlur(buf: Float32Array, R: number, sigmaX: number, sigmaY: number, tmp: Float32Array): void {
  if (sigmaX >= 0.2) {
    blurPass(buf, tmp, R, sigmaX, true);
    buf.set(tmp.subarray(0, buf.length));
  }
  if (sigmaY >= 0.2) {
    blurPass(buf, tmp, R, sigmaY, false);
    buf.set(tmp.subarray(0, buf.length));
  }
}

/** Reusable work buffers per internal size, so rendering thousands of images allocates little. */
interface Work {
  R: number;
  bg: Float32Array;
  layer: Float32Array;
  tmp: Float32Array;
  noiseA: Float32Array;
  noiseB: Float32Array;
}

const workCache = new Map<number, Work>();

function work(R: number): Work {
  let w = workCache.get(R);
  if (!w) {
    w = {
      R,
      bg: new Float32Array(R * R * 3),
      layer: new Float32Array(R * R * 4),
      tmp: new Float32Array(R * R * 4),
      noiseA: new Float32Array(R * R),
      noiseB: new Float32Array(R * R),
    };
    workCache.set(R, w);
  }
  return w;
}

function supersampling(size: number): number {
  return size <= 64 ? 2 : 1;
}

const GAMMA_STEPS = 256;

/**
 * Standard normal quantiles at (i + 0.5) / N: sensor noise is a table lookup per
 * value instead of log/sqrt/cos (which took a third of the render time).
 */
const NORMAL_TABLE_SIZE = 4096;
const NORMAL_TABLE = ((): Float64Array => {
  const t = new Float64Array(NORMAL_TABLE_SIZE);
  for (let i = 0; i < NORMAL_TABLE_SIZE; i++) t[i] = normalQuantile((i + 0.5) / NORMAL_TABLE_SIZE);
  return t;
})();

/** Inverse normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(q: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (q < lo || q > 1 - lo) {
    const u = Math.sqrt(-2 * Math.log(q < lo ? q : 1 - q));
    const x = (((((c[0] * u + c[1]) * u + c[2]) * u + c[3]) * u + c[4]) * u + c[5]) / ((((d[0] * u + d[1]) * u + d[2]) * u + d[3]) * u + 1);
    return q < lo ? x : -x;
  }
  const r = (q - 0.5) * (q - 0.5);
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (q - 0.5)) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

function renderScene(classId: number, p: SceneParams, size: number, out: Float32Array, offset: number): void {
  const ss = supersampling(size);
  const R = size * ss;
  const w = work(R);
  const { bg, layer, tmp } = w;
  const shape = SIGN_SPECS[classId].shape;
  const H = signHomography(p, shape, R);
  renderBackground(p, R, bg, w);
  if (p.pole) drawPole(bg, R, H, createRng(hashSeed(p.backgroundSeed, 3)));
  warpSign(signTexture(classId, textureSizeFor(R)), H, R, p, layer);
  for (let i = 0; i < R * R; i++) {
    const ia = 1 - layer[4 * i + 3];
    bg[3 * i] = layer[4 * i] + bg[3 * i] * ia;
    bg[3 * i + 1] = layer[4 * i + 1] + bg[3 * i + 1] * ia;
    bg[3 * i + 2] = layer[4 * i + 2] + bg[3 * i + 2] * ia;
  }
  if (p.blurX >= 0.1 || p.blurY >= 0.1) gaussianBlur(bg, R, p.blurX * ss, p.blurY * ss, tmp);
  const n3 = size * size * 3;
  // Writes go straight to out[offset + i] (a subarray view here made V8 deoptimise repeatedly).
  const dst = out;
  // Box downsample.
  if (ss === 1) {
    for (let i = 0; i < n3; i++) dst[offset + i] = bg[i];
  } else {
    const inv = 1 / (ss * ss);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let sy = 0; sy < ss; sy++) {
          let j = 3 * ((y * ss + sy) * R + x * ss);
          for (let sx = 0; sx < ss; sx++, j += 3) {
            r += bg[j];
            g += bg[j + 1];
            b += bg[j + 2];
          }
        }
        const o = offset + 3 * (y * size + x);
        dst[o] = r * inv;
        dst[o + 1] = g * inv;
        dst[o + 2] = b * inv;
      }
    }
  }
  // Camera response: colour cast, contrast, exposure, gamma, then sensor noise.
  const m0 = p.brightness * p.contrast * p.cast[0];
  const m1 = p.brightness * p.contrast * p.cast[1];
  const m2 = p.brightness * p.contrast * p.cast[2];
  const add = p.brightness * 0.5 * (1 - p.contrast);
  // Math.pow per value dominated the render time; a 257-entry table with linear interpolation is plenty.
  const gammaLut = p.gamma !== 1 ? new Float64Array(GAMMA_STEPS + 2) : null;
  if (gammaLut) {
    for (let i = 0; i <= GAMMA_STEPS; i++) gammaLut[i] = Math.pow(i / GAMMA_STEPS, p.gamma);
    gammaLut[GAMMA_STEPS + 1] = 1;
  }
  const rng = p.noise > 0 ? createRng(p.noiseSeed) : null;
  const nt = NORMAL_TABLE;
  for (let i = 0; i < n3; i++) {
    const c = i % 3;
    let v = dst[offset + i] * (c === 0 ? m0 : c === 1 ? m1 : m2) + add;
    if (gammaLut) {
      const t = (v <= 0 ? 0 : v >= 1 ? 1 : v) * GAMMA_STEPS;
      const k = Math.floor(t);
      v = gammaLut[k] + (gammaLut[k + 1] - gammaLut[k]) * (t - k);
    }
    if (rng) v += p.noise * nt[(rng() * NORMAL_TABLE_SIZE) | 0];
    dst[offset + i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

// ---------------------------------------------------------------------------
// Public functions

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
