/**
 * `--mask auto`: let the model say where the sticker goes (RP2, Eykholt et al. 2018, chose its
 * mask from an L1-regularised perturbation of the whole sign). Stage 1 optimises a sticker over
 * the whole sign, starting from the clean sign and paying for every change (L1), across the same
 * EOT views; the pixels it changed most, smoothed into blobs, become the mask (the requested share
 * of the sign, pieces large enough to cut, no holes); stage 2 re-optimises inside that mask,
 * starting from stage 1's colours there.
 */
import type { Classifier } from '../inference/model';
import { UserError } from '../util/errors';
import { alphaOf, coverage, MaskSpec } from './masks';
import { optimizeSticker, signCanvas, STICKER_DEFAULTS, StickerOptions, StickerResult } from './optimize';

export interface AutoMaskOptions {
  /** Share of the sign's area the mask covers (0, 0.5]. */
  area: number;
  /** Share of the steps spent on stage 1 (default 0.5). */
  searchShare?: number;
  /** Weight of the L1 change penalty in stage 1 (default 2). */
  l1Weight?: number;
  /** Smallest piece kept, canvas pixels (default 6: about 30 mm on a 600 mm sign). */
  minPiecePixels?: number;
  /** At most this many pieces (default 6): each one is cut and stuck by hand. */
  maxPieces?: number;
  /** Drop slivers narrower than 3 canvas pixels (a morphological opening; default true). */
  open?: boolean;
}

export const AUTO_MASK_DEFAULTS = { searchShare: 0.5, l1Weight: 2, minPiecePixels: 6, maxPieces: 6, open: true };

/** Σ_c |ink − clean| per pixel (R²), the stage-1 change a mask is chosen from. */
export function changeMap(r: StickerResult): Float32Array {
  const n = r.canvasSize * r.canvasSize;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < 3; c++) s += Math.abs(r.sticker[3 * i + c] - r.clean[4 * i + c]);
    out[i] = s * r.printed[i];
  }
  return out;
}

function boxBlur(v: Float32Array, R: number, radius: number): Float32Array {
  const out = new Float32Array(R * R);
  for (let y = 0; y < R; y++) {
    for (let x = 0; x < R; x++) {
      let s = 0,
        n = 0;
      for (let dy = -radius; dy <= radius; dy++) {
        for (let dx = -radius; dx <= radius; dx++) {
          const xx = x + dx,
            yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= R || yy >= R) continue;
          s += v[yy * R + xx];
          n++;
        }
      }
      out[y * R + x] = s / n;
    }
  }
  return out;
}

/** 3×3 erosion (all neighbours on) or dilation (any neighbour on) of a binary map. */
function morph(on: Uint8Array, R: number, erode: boolean): Uint8Array {
  const out = new Uint8Array(R * R);
  for (let y = 0; y < R; y++) {
    for (let x = 0; x < R; x++) {
      let all = 1,
        any = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx,
            yy = y + dy;
          const v = xx < 0 || yy < 0 || xx >= R || yy >= R ? 0 : on[yy * R + xx];
          all &= v;
          any |= v;
        }
      }
      out[y * R + x] = erode ? all : any;
    }
  }
  return out;
}

/** 4-connected labels of a binary map (−1 = off) and each component's pixel count. */
function label(on: Uint8Array, R: number): { labels: Int32Array; sizes: number[] } {
  const labels = new Int32Array(R * R).fill(-1);
  const sizes: number[] = [];
  for (let start = 0; start < R * R; start++) {
    if (!on[start] || labels[start] >= 0) continue;
    const id = sizes.length,
      stack = [start];
    labels[start] = id;
    let n = 0;
    while (stack.length) {
      const p = stack.pop() as number,
        x = p % R,
        y = (p - x) / R;
      n++;
      for (const q of [x > 0 ? p - 1 : -1, x < R - 1 ? p + 1 : -1, y > 0 ? p - R : -1, y < R - 1 ? p + R : -1]) {
        if (q >= 0 && on[q] && labels[q] < 0) {
          labels[q] = id;
          stack.push(q);
        }
      }
    }
    sizes.push(n);
  }
  return { labels, sizes };
}

/**
 * Pixels whose score is at least `threshold`, inside the sign, with small pieces dropped, at most
 * `maxPieces` pieces (the highest-scoring), and holes filled (a piece is cut along one outline).
 */
function cleanMask(
  score: Float32Array,
  inSign: Uint8Array,
  R: number,
  threshold: number,
  o: Required<Pick<AutoMaskOptions, 'minPiecePixels' | 'maxPieces' | 'open'>>,
): { on: Uint8Array; pieces: number } {
  const raw = Uint8Array.from(score, (s, i) => (inSign[i] && s >= threshold ? 1 : 0));
  const on = o.open ? morph(morph(raw, R, true), R, false).map((v, i) => v & inSign[i]) : raw;
  const minPixels = o.minPiecePixels,
    maxPieces = o.maxPieces;
  const { labels, sizes } = label(on, R);
  const mass = new Float64Array(sizes.length);
  for (let i = 0; i < R * R; i++) if (labels[i] >= 0) mass[labels[i]] += score[i];
  const keep = new Set(
    sizes
      .map((n, id) => id)
      .filter((id) => sizes[id] >= minPixels)
      .sort((a, b) => mass[b] - mass[a])
      .slice(0, maxPieces),
  );
  for (let i = 0; i < R * R; i++) on[i] = labels[i] >= 0 && keep.has(labels[i]) ? 1 : 0;
  // Holes: off pixels the border cannot reach through off pixels.
  const off = Uint8Array.from(on, (v) => 1 - v);
  const outside = label(off, R).labels;
  const border = new Set<number>();
  for (let k = 0; k < R; k++) for (const p of [k, (R - 1) * R + k, k * R, k * R + R - 1]) if (off[p]) border.add(outside[p]);
  for (let i = 0; i < R * R; i++) if (off[i] && !border.has(outside[i]) && inSign[i]) on[i] = 1;
  return { on, pieces: keep.size };
}

/**
 * The mask covering at most `area` of the sign where `score` is highest (the largest such mask
 * the threshold bisection finds), as an 'auto' MaskSpec over the sign's bounding square.
 */
export function selectMask(
  score: Float32Array,
  signAlpha: Float32Array,
  R: number,
  area: number,
  options: Pick<AutoMaskOptions, 'minPiecePixels' | 'maxPieces' | 'open'> = {},
): MaskSpec {
  const o = {
    minPiecePixels: options.minPiecePixels ?? AUTO_MASK_DEFAULTS.minPiecePixels,
    maxPieces: options.maxPieces ?? AUTO_MASK_DEFAULTS.maxPieces,
    open: options.open ?? AUTO_MASK_DEFAULTS.open,
  };
  const smooth = boxBlur(score, R, 1);
  // Whole pixels of the sign only: a piece's edge on the sign's rim would be cut by the rim anyway.
  const inSign = Uint8Array.from(signAlpha, (a) => (a >= 0.99 ? 1 : 0));
  const signArea = coverage(signAlpha);
  const share = (on: Uint8Array) => {
    let s = 0;
    for (let i = 0; i < R * R; i++) s += on[i] * signAlpha[i];
    return s / signArea;
  };
  let lo = 0,
    hi = Math.max(...smooth) + 1e-6;
  let best: { on: Uint8Array; pieces: number } | null = null;
  for (let it = 0; it < 40; it++) {
    const mid = (lo + hi) / 2;
    const m = cleanMask(smooth, inSign, R, mid, o);
    if (share(m.on) > area) lo = mid;
    else {
      hi = mid;
      if (m.pieces > 0) best = m;
    }
  }
  if (!best || share(best.on) < area / 2)
    throw new UserError(`--mask auto: the whole-sign stage changed too little of the sign to choose ${(area * 100).toFixed(0)} %: give it more --steps`);
  return { kind: 'auto', width: R, height: R, values: Float32Array.from(best.on), pieces: best.pieces };
}

/**
 * Both stages; the result is stage 2's, with both stages' history and time. `search`: a stage 1
 * already run with the same options (it does not depend on the area), e.g. for another area.
 */
export async function optimizeWithAutoMask(
  clf: Classifier,
  options: StickerOptions,
  auto: AutoMaskOptions,
  previous?: StickerResult,
): Promise<{ result: StickerResult; search: StickerResult }> {
  const R = options.canvasSize ?? STICKER_DEFAULTS.canvasSize;
  const steps = options.steps ?? STICKER_DEFAULTS.steps;
  const searchSteps = Math.max(1, Math.round(steps * (auto.searchShare ?? AUTO_MASK_DEFAULTS.searchShare)));
  const clean = options.signRGBA ?? signCanvas(options.classId, R);
  const cleanInk = new Float32Array(R * R * 3);
  for (let i = 0; i < R * R; i++) for (let c = 0; c < 3; c++) cleanInk[3 * i + c] = clean[4 * i + c];
  const label = (stage: string) => (options.progressLabel ? `${options.progressLabel}, ${stage}` : undefined);
  const search =
    previous ??
    (await optimizeSticker(clf, {
      ...options,
      steps: searchSteps,
      mask: { kind: 'rect', rect: { x: 0, y: 0, w: 1, h: 1 } },
      initInk: cleanInk,
      l1Weight: auto.l1Weight ?? AUTO_MASK_DEFAULTS.l1Weight,
      progressLabel: label('choosing the mask'),
    }));
  const mask = selectMask(changeMap(search), alphaOf(clean), R, auto.area, auto);
  const result = await optimizeSticker(clf, {
    ...options,
    steps: Math.max(1, steps - searchSteps),
    mask,
    initInk: search.sticker,
    progressLabel: label('inside the mask'),
    onStep: options.onStep ? (s) => options.onStep?.({ ...s, step: s.step + searchSteps }) : undefined,
  });
  const history = [...search.history, ...result.history.map((s) => ({ ...s, step: s.step + searchSteps }))];
  return { result: { ...result, history, seconds: search.seconds + result.seconds, options: { ...result.options, steps } }, search };
}
