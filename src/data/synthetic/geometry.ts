/** Sign geometry (unit coordinates: the sign's bounding box spans [-1, 1] on its wider axis): outlines, borders, faces. */
import { SKRSContext2D } from '@napi-rs/canvas';
import { SignShape } from '../classes';
import { PI, Pt, arcPts } from './glyphs';

interface RegularPolygon {
  cx: number;
  cy: number;
  /** Inradius (centre to side). */
  rin: number;
  n: number;
  /** Angle of the first vertex. */
  rot: number;
}

export const POLYGONS: Record<Exclude<SignShape, 'circle'>, RegularPolygon> = {
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
export function outline(shape: SignShape): Pt[] {
  let pts = OUTLINES.get(shape);
  if (!pts) {
    pts = shape === 'circle' ? arcPts(0, 0, 1, 1, 0, 2 * PI, 48) : polygonVertices(POLYGONS[shape], POLYGONS[shape].rin);
    OUTLINES.set(shape, pts);
  }
  return pts;
}

/** Fills the polygon shrunk by `inset`, with corners rounded by `corner`. */
export function fillRoundedPolygon(ctx: SKRSContext2D, p: RegularPolygon, inset: number, corner: number, color: string): void {
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

export function disk(ctx: SKRSContext2D, r: number, color: string, cx = 0, cy = 0): void {
  ctx.beginPath();
  ctx.arc(cx, cy, r, 0, 2 * PI);
  ctx.fillStyle = color;
  ctx.fill();
}

export function poly(ctx: SKRSContext2D, pts: Pt[]): void {
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.closePath();
  ctx.fill();
}

export function rect(ctx: SKRSContext2D, x: number, y: number, w: number, h: number, r = 0): void {
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

export function line(ctx: SKRSContext2D, pts: Pt[], width: number, cap: 'round' | 'butt' = 'round'): void {
  ctx.lineWidth = width;
  ctx.lineCap = cap;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.stroke();
}

/** Filled arrow head with its tip at (x, y) pointing along angle `dir`. */
export function arrowHead(ctx: SKRSContext2D, x: number, y: number, dir: number, len: number, halfWidth: number): void {
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
