/**
 * Success of a sticker on held-out real photos (tracks never optimised on), next to two controls
 * of the very same area and views: random noise (uniform per pixel) and a uniform patch (the
 * sticker's own mean colour, so only its pattern is missing). If the controls fool the model too,
 * the area, not the optimisation, does the work. Also per condition (sign size, brightness, blur).
 */
import type { Classifier } from '../inference/model';
import { createRng, hashSeed } from '../data/random';
import type { EotConfig } from './eot';
import { everyPhotoViews, photoEotConfig, PhotoScene, PhotoSuccess, renderPhotoViews, scorePhotoViews } from './photos';

export interface PhotoAttack {
  classId: number;
  target: number | null;
  canvasSize: number;
  /** Printed colours RGB (R²×3) and coverage (R²). */
  sticker: Float32Array;
  printed: Float32Array;
}

export interface ConditionBin {
  from: number;
  to: number;
  photos: number;
  /** The sticker's success and the clean photos' accuracy over this bin's views. */
  success: number;
  cleanAccuracy: number;
}

export interface HeldOutPhotoReport {
  photos: number;
  viewsPerPhoto: number;
  seed: number;
  /** Clean photos under the same views: accuracy (classified as the sign) and how often they are the target anyway. */
  clean: { accuracy: number; targetRate: number };
  sticker: PhotoSuccess;
  noise: PhotoSuccess;
  uniform: PhotoSuccess;
  /** Terciles of the held-out photos by each condition. */
  byCondition: { sizePx: ConditionBin[]; brightness: ConditionBin[]; sharpness: ConditionBin[] };
}

/** The seed stream of held-out photo views (disjoint from the optimisation's). */
export function heldOutPhotoSeed(seed: number): number {
  return hashSeed(seed, 0x9e0, 0x4e1d);
}

/** Random noise and the sticker's mean colour over the same coverage (R²×3 each). */
export function controlFills(a: PhotoAttack, seed: number): { noise: Float32Array; uniform: Float32Array } {
  const n = a.canvasSize * a.canvasSize;
  const rng = createRng(hashSeed(seed, 0x0015e));
  const noise = Float32Array.from({ length: n * 3 }, () => rng());
  const mean = [0, 0, 0];
  let w = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) mean[c] += a.printed[i] * a.sticker[3 * i + c];
    w += a.printed[i];
  }
  const uniform = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) uniform[3 * i + c] = w > 0 ? mean[c] / w : 0.5;
  return { noise, uniform };
}

function terciles(values: number[], perPhoto: number[], clean: number[]): ConditionBin[] {
  const order = values.map((v, i) => i).sort((a, b) => values[a] - values[b]);
  const bins: ConditionBin[] = [];
  for (let b = 0; b < 3; b++) {
    const idx = order.slice(Math.floor((b * order.length) / 3), Math.floor(((b + 1) * order.length) / 3));
    if (idx.length === 0) continue;
    const mean = (xs: number[]) => idx.reduce((s, i) => s + xs[i], 0) / idx.length;
    bins.push({ from: values[idx[0]], to: values[idx[idx.length - 1]], photos: idx.length, success: mean(perPhoto), cleanAccuracy: mean(clean) });
  }
  return bins;
}

export interface PhotoMeasureOptions {
  viewsPerPhoto?: number;
  seed?: number;
  /** The EOT family on the photos (default photoEotConfig at the model's input size). */
  config?: EotConfig;
}

/** Measures the sticker and both controls on the held-out photos (same views for all). */
export async function measureOnPhotos(clf: Classifier, a: PhotoAttack, scenes: PhotoScene[], o: PhotoMeasureOptions = {}): Promise<HeldOutPhotoReport> {
  const k = o.viewsPerPhoto ?? 4;
  const seed = o.seed ?? 1;
  const config = { ...(o.config ?? photoEotConfig(clf.inputSize)), outputSize: clf.inputSize };
  const views = everyPhotoViews(k, heldOutPhotoSeed(seed), scenes.length, config);
  const score = async (ink: Float32Array, coverage: Float32Array) =>
    scorePhotoViews(clf, await renderPhotoViews(ink, coverage, scenes, views, config), views, scenes.length, a.classId, a.target);
  const { noise, uniform } = controlFills(a, seed);
  // Clean: nothing pasted (zero coverage), the same views. Untargeted scoring: "not the sign".
  const none = new Float32Array(a.printed.length);
  const clean = await scorePhotoViews(clf, await renderPhotoViews(a.sticker, none, scenes, views, config), views, scenes.length, a.classId, a.target);
  const sticker = await score(a.sticker, a.printed);
  const cleanAcc = clean.perPhoto.map((_, i) => 1 - clean.perPhotoChanged[i]);
  return {
    photos: scenes.length,
    viewsPerPhoto: k,
    seed,
    clean: { accuracy: 1 - clean.untargetedRate, targetRate: a.target === null ? 0 : clean.successRate },
    sticker,
    noise: await score(noise, a.printed),
    uniform: await score(uniform, a.printed),
    byCondition: {
      sizePx: terciles(
        scenes.map((s) => s.conditions.sizePx),
        sticker.perPhoto,
        cleanAcc,
      ),
      brightness: terciles(
        scenes.map((s) => s.conditions.brightness),
        sticker.perPhoto,
        cleanAcc,
      ),
      sharpness: terciles(
        scenes.map((s) => s.conditions.sharpness),
        sticker.perPhoto,
        cleanAcc,
      ),
    },
  };
}
