/**
 * Where `advsign sticker` puts the sticker and which loss it optimises: a fixed mask (--mask
 * stripes|rect|circle|geometry|image, --area sizing the default shapes) or `--mask auto` (the
 * model chooses the place: src/sticker/auto-mask.ts), and `--loss` for targeted stickers.
 * Everything is checked before the model loads.
 */
import type { Classifier } from '../inference/model';
import { UserError } from '../util/errors';
import { maskAtArea, MASK_KINDS, MaskKind, MaskSpec, parseMaskSpec, rasterizeMask, requireNonEmpty } from '../sticker/masks';
import { optimizeSticker, StickerOptions, StickerResult, TARGET_LOSSES, TargetLoss } from '../sticker/optimize';
import { AUTO_MASK_DEFAULTS, optimizeWithAutoMask } from '../sticker/auto-mask';

export const MASK_HELP = `  --mask M            stripes (default), rect, circle, rect:x,y,w,h, circle:cx,cy,r,
                      stripes:y1,y2,h (fractions of the sign's size), a mask image (PNG: alpha, or
                      white = sticker), or auto: the optimiser chooses where (a whole-sign sticker
                      paying for every change runs ${AUTO_MASK_DEFAULTS.searchShare * 100} % of the steps; the pixels it changed
                      most, in at most ${AUTO_MASK_DEFAULTS.maxPieces} pieces at least 3 px wide, become the mask, --area of the sign,
                      default 0.1; the rest of the steps optimise inside it)
  --loss L            targeted loss: ce or margin (the target's logit above every other; default
                      margin with --mask auto, else ce)`;

/** The mask as the flags give it: fixed, or chosen by the optimiser at a share of the sign. */
export type MaskPlan = { kind: 'fixed'; mask: MaskSpec; scalable: MaskKind | null } | { kind: 'auto'; area: number; search?: StickerResult };

export interface MaskFlags {
  mask?: string;
  area: number | null;
  areas: number[];
  canvasSize: number;
  signAlpha: Float32Array;
}

export async function maskPlan(f: MaskFlags): Promise<MaskPlan> {
  const text = (f.mask ?? 'stripes').trim().toLowerCase();
  if (text === 'auto') return { kind: 'auto', area: f.area ?? 0.1 };
  const scalable = (MASK_KINDS as readonly string[]).includes(text) ? (text as MaskKind) : null;
  if ((f.area !== null || f.areas.length) && !scalable)
    throw new UserError(`--area/--areas size the default masks (stripes, rect, circle, auto): drop the geometry from --mask '${text}'`);
  const mask = f.area !== null && scalable ? maskAtArea(scalable, f.area, f.signAlpha, f.canvasSize) : await parseMaskSpec(f.mask ?? 'stripes');
  for (const a of f.areas) maskAtArea(scalable as MaskKind, a, f.signAlpha, f.canvasSize); // unreachable areas fail now
  requireNonEmpty(rasterizeMask(mask, f.canvasSize, f.signAlpha), mask);
  return { kind: 'fixed', mask, scalable };
}

/** --loss: only for targeted attacks (untargeted ones always use the margin). plan = null: sign mode. */
export function targetLossFlag(text: string | undefined, targeted: boolean, plan: MaskPlan | null): TargetLoss {
  if (text === undefined) return plan?.kind === 'auto' ? 'margin' : 'ce';
  const t = text.trim().toLowerCase();
  if (!(TARGET_LOSSES as readonly string[]).includes(t)) throw new UserError(`unknown --loss '${text}': use ${TARGET_LOSSES.join(' or ')}`);
  if (!targeted) throw new UserError('--loss applies to targeted stickers (add --target N); untargeted ones use the margin loss');
  return t as TargetLoss;
}

/**
 * Optimises with the plan's mask; `area` (for --areas) resizes a scalable or auto mask. Auto:
 * the result's maskSpec is the chosen mask, so the PDF, the layer and the JSON all carry it.
 */
export async function optimiseWithPlan(
  clf: Classifier,
  plan: MaskPlan,
  options: StickerOptions,
  area: number | null,
  signAlpha: Float32Array,
): Promise<StickerResult> {
  if (plan.kind === 'auto') {
    // Stage 1 does not depend on the area: --areas reuses the main sticker's (EOT runs only).
    const { result, search } = await optimizeWithAutoMask(clf, options, { area: area ?? plan.area }, options.useEot === false ? undefined : plan.search);
    if (options.useEot !== false) plan.search = search;
    return result;
  }
  const mask =
    area !== null && plan.scalable ? maskAtArea(plan.scalable, area, signAlpha, options.canvasSize ?? Math.round(Math.sqrt(signAlpha.length))) : plan.mask;
  return optimizeSticker(clf, { ...options, mask });
}

/** A mask over the canvas as rows of hex digits (4 pixels a digit, left to right; ≥ 0.5 = sticker), for the JSON. */
export function maskRows(printed: Float32Array, size: number): string[] {
  const rows: string[] = [];
  for (let y = 0; y < size; y++) {
    let row = '';
    for (let x = 0; x < size; x += 4) {
      let d = 0;
      for (let k = 0; k < 4; k++) d = (d << 1) | (x + k < size && printed[y * size + x + k] >= 0.5 ? 1 : 0);
      row += d.toString(16);
    }
    rows.push(row);
  }
  return rows;
}
