/**
 * Regions of interest, in the three forms the code meets them, and the one place that checks and
 * converts them:
 *   NormRoi   fractions of a frame {x, y, w, h} (the serve config, the live page's settings):
 *             parsed and refused, with a one-line UserError, when outside the frame or degenerate;
 *   PixelRoi  pixels of one frame {x, y, w, h}, w and h exclusive extents (what the live
 *             pipeline crops and the page draws), from a NormRoi by roiToPixels;
 *   Roi       pixels {x1, y1, x2, y2} with x2/y2 inclusive, as GTSRB's CSVs and sign-photo
 *             labels give them (data/image-io's cropResize takes it; a degenerate one means the
 *             whole image).
 */
import { UserError } from './errors';

/** Region of interest in pixel coordinates; x2/y2 are inclusive, as in GTSRB CSVs. */
export interface Roi {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** A rectangle of whole pixels: top-left corner and size. */
export interface PixelRoi {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** ROI as fractions of the frame; null = the default centre square. */
export interface NormRoi {
  x: number;
  y: number;
  w: number;
  h: number;
}

export function parseRoi(v: unknown, where: string): NormRoi | null {
  let parts: unknown[];
  if (v === null || v === 'center' || v === 'centre' || v === 'default') return null;
  if (typeof v === 'string') parts = v.split(',').map((s) => Number(s.trim()));
  else if (Array.isArray(v)) parts = v;
  else if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    parts = [o.x, o.y, o.w, o.h];
  } else throw new UserError(`${where}: roi must be 'x,y,w,h' (fractions of the frame) or 'centre', got ${JSON.stringify(v)}`);
  const [x, y, w, h] = parts as number[];
  if (parts.length !== 4 || ![x, y, w, h].every((n) => typeof n === 'number' && Number.isFinite(n))) {
    throw new UserError(`${where}: roi must be four numbers 'x,y,w,h' (fractions of the frame)`);
  }
  return checkRoi({ x, y, w, h }, where);
}

/** A ROI inside the frame and not degenerate (at least 2 % of each side). */
export function checkRoi(r: NormRoi, where: string): NormRoi {
  if (r.x < 0 || r.y < 0 || r.w < 0.02 || r.h < 0.02 || r.x + r.w > 1.000001 || r.y + r.h > 1.000001) {
    throw new UserError(`${where}: roi ${[r.x, r.y, r.w, r.h].join(',')} must lie inside the frame (fractions 0…1, size ≥ 0.02)`);
  }
  return r;
}

/**
 * A frame ROI in pixels of a W×H frame; null gives the default, a centre square of 70 % of the
 * shorter side (a sign filling it resembles a GTSRB crop). A ROI checkRoi accepted lies inside the
 * frame: only the rounding to whole pixels is clamped here (and a side is at least 2 px).
 */
export function roiToPixels(roi: NormRoi | null, W: number, H: number): PixelRoi {
  if (!roi) {
    const side = Math.max(2, Math.round(0.7 * Math.min(W, H)));
    return { x: Math.floor((W - side) / 2), y: Math.floor((H - side) / 2), w: side, h: side };
  }
  const w = Math.max(2, Math.min(W, Math.round(roi.w * W)));
  const h = Math.max(2, Math.min(H, Math.round(roi.h * H)));
  const x = Math.max(0, Math.min(W - w, Math.round(roi.x * W)));
  const y = Math.max(0, Math.min(H - h, Math.round(roi.y * H)));
  return { x, y, w, h };
}
