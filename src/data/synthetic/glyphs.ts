/** Stroke glyphs for the text and digits on signs (box: x in [0, width], y in [0, 1], y down): no fonts, so output never depends on what is installed. */
import { SKRSContext2D } from '@napi-rs/canvas';

export type Pt = [number, number];

interface Glyph {
  width: number;
  strokes: Pt[][];
}

export function arcPts(cx: number, cy: number, rx: number, ry: number, a0: number, a1: number, steps = 24): Pt[] {
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

export const PI = Math.PI;

/** Stadium shape used for 0 and O (DIN-like narrow round digits read better than ellipses at 32 px). */
function stadium(w: number): Pt[] {
  const r = w / 2;
  return [...arcPts(r, r, r, r, PI, 2 * PI, 16), ...arcPts(r, 1 - r, r, r, 0, PI, 16), [0, r]];
}

const SIX: Pt[][] = [[...arcPts(0.3, 0.69, 0.3, 0.31, 0, 2 * PI, 32)], [...quadPts([0.5, 0.04], [0.0, 0.02], [0.0, 0.69])]];

const GLYPHS: Record<string, Glyph> = {
  '0': { width: 0.6, strokes: [stadium(0.6)] },
  '1': {
    width: 0.42,
    strokes: [
      [
        [0.02, 0.25],
        [0.36, 0],
        [0.36, 1],
      ],
    ],
  },
  '2': { width: 0.6, strokes: [[...arcPts(0.3, 0.29, 0.29, 0.29, PI + 0.45, 2 * PI + 0.6), [0.0, 1.0], [0.6, 1.0]]] },
  '3': {
    width: 0.6,
    strokes: [
      [...arcPts(0.3, 0.24, 0.27, 0.24, PI + 0.5, 2 * PI + PI / 2), ...arcPts(0.3, 0.74, 0.3, 0.26, -PI / 2, PI - 0.45)],
      [
        [0.14, 0.48],
        [0.3, 0.48],
      ],
    ],
  },
  '4': {
    width: 0.62,
    strokes: [
      [
        [0.47, 1],
        [0.47, 0],
        [0, 0.7],
        [0.62, 0.7],
      ],
    ],
  },
  '5': {
    width: 0.6,
    strokes: [[[0.56, 0], [0.08, 0], [0.05, 0.47], ...arcPts(0.3, 0.69, 0.3, 0.31, PI + 0.9, 2 * PI + PI / 2 + 0.75)]],
  },
  '6': { width: 0.6, strokes: SIX },
  '7': {
    width: 0.6,
    strokes: [
      [
        [0, 0],
        [0.6, 0],
        [0.18, 1],
      ],
    ],
  },
  '8': {
    width: 0.6,
    strokes: [arcPts(0.3, 0.25, 0.25, 0.25, 0, 2 * PI, 32), arcPts(0.3, 0.73, 0.3, 0.27, 0, 2 * PI, 32)],
  },
  '9': { width: 0.6, strokes: SIX.map((s) => s.map(([x, y]): Pt => [0.6 - x, 1 - y])) },
  S: {
    width: 0.6,
    strokes: [[...arcPts(0.3, 0.26, 0.28, 0.26, 2 * PI - 0.35, PI / 2), ...arcPts(0.3, 0.75, 0.3, 0.25, -PI / 2, PI - 0.35)]],
  },
  T: {
    width: 0.6,
    strokes: [
      [
        [0, 0],
        [0.6, 0],
      ],
      [
        [0.3, 0],
        [0.3, 1],
      ],
    ],
  },
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
export function drawText(ctx: SKRSContext2D, text: string, cx: number, cy: number, height: number, lineWidth: number, gap: number, squeeze = 1): void {
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
    for (const s of g.strokes)
      strokePolyline(
        ctx,
        s.map(([gx, gy]): Pt => [x + gx * height * squeeze, y + gy * height]),
      );
    x += g.width * height * squeeze + gap;
  }
  ctx.restore();
}
