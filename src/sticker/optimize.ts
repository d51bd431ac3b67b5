/**
 * Optimising a physical attack: a sticker inside a mask (RP2, Eykholt et al. 2018) or a whole
 * printed sign within an L∞ budget (Kurakin et al. 2017's printed examples), each made robust by
 * averaging the attack loss over EOT samples of print-and-capture (Athalye et al. 2018).
 *
 *   loss = attack(EOT samples) + λ_nps · NPS(printed pixels) + λ_tv · TV(printed pixels)
 *
 * The sticker is parameterised as ½(tanh θ + 1) (always a valid colour, no clipping to fight);
 * the printed sign as clip(sign + ε·tanh θ) inside the sign (never beyond ε). Adam on θ. Each
 * step draws fresh EOT samples from its own seed stream; measurement uses a different stream.
 */
import { tf, Tensor, Tensor2D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { vjp } from '../inference/objective';
import { renderSignRGBA } from '../data/synthetic';
import { createRng, hashSeed } from '../data/random';
import { UserError } from '../data/types';
import { NUM_CLASSES } from '../data/classes';
import { progressBar } from '../util/progress';
import { applyEot, CLEAN_VIEW, DEFAULT_EOT, EotConfig, sampleEot } from './eot';
import { alphaOf, defaultMask, describeMask, MaskSpec, rasterizeMask, requireNonEmpty } from './masks';
import { DEFAULT_PALETTE, npsLoss, npsScore, Palette, paletteTensor } from './palette';
import { photoEotConfig, PhotoScene, photoViewsTensor, samplePhotoViews } from './photos';

export type StickerMode = 'sticker' | 'sign';
export type TargetLoss = 'ce' | 'margin';
export const TARGET_LOSSES: readonly TargetLoss[] = ['ce', 'margin'];

export interface StickerOptions {
  /** The sign's class id (what the clean sign is). */
  classId: number;
  /** Class to aim for; null = untargeted (any class but classId). */
  target: number | null;
  mode?: StickerMode;
  /** Sticker mode: where the sticker goes (default: two stripes). */
  mask?: MaskSpec;
  /** Sign mode: L∞ budget of the whole-sign perturbation (default 16/255). */
  eps?: number;
  steps?: number;
  /** EOT samples per step (the batch size). */
  eotSamples?: number;
  learningRate?: number;
  npsWeight?: number;
  tvWeight?: number;
  palette?: Palette;
  /** false: optimise on the clean view only (the non-robust baseline). */
  useEot?: boolean;
  /** Overrides of the EOT family (DEFAULT_EOT), e.g. a smaller viewing angle. */
  eotConfig?: Partial<EotConfig>;
  /** Side of the sign canvas in pixels: the sticker's resolution (default 64). */
  canvasSize?: number;
  /**
   * Real photos in the loop (sticker mode): `share` of each step's EOT samples are views of these
   * photos with the sticker pasted on; the rest stay synthetic.
   */
  photos?: { scenes: PhotoScene[]; share: number; config?: EotConfig };
  /** A different clean sign (straight RGBA over its bounding square, canvasSize²×4), e.g. a photo. */
  signRGBA?: Float32Array;
  seed?: number;
  /** Margin at which a sample counts as done (logit units): untargeted always, targeted with `targetLoss: 'margin'`. */
  kappa?: number;
  /**
   * Targeted attack loss: 'ce' (cross-entropy of the target) or 'margin' (max_{j≠t} Z_j − Z_t
   * floored at −κ: views already fooled by κ stop pulling, the hard ones get the gradient).
   */
  targetLoss?: TargetLoss;
  /** Starting colours (R²×3 in [0, 1]) instead of seeded grey noise, e.g. a previous stage's sticker. */
  initInk?: Float32Array;
  /** Weight of mean |ink − clean sign| over the printed region: makes a whole-sign sticker sparse (mask selection). */
  l1Weight?: number;
  /** Label for the progress bar on stderr; none when omitted. */
  progressLabel?: string;
  onStep?: (s: StepStats) => void;
}

export interface StepStats {
  step: number;
  loss: number;
  attackLoss: number;
  nps: number;
  tv: number;
  /** Fraction of this step's EOT samples the attack fooled. */
  batchSuccess: number;
}

export interface StickerResult {
  mode: StickerMode;
  classId: number;
  target: number | null;
  canvasSize: number;
  /** The clean sign, straight RGBA (canvasSize² × 4). */
  clean: Float32Array;
  /** The adversarial sign (sticker applied / perturbation added), straight RGBA. */
  adversarial: Float32Array;
  /** The printed colours, RGB (canvasSize² × 3): the sticker (meaningful inside `printed`) or the whole sign. */
  sticker: Float32Array;
  /** Coverage of the printed region in [0, 1] (canvasSize²): mask ∧ sign, or the sign. */
  printed: Float32Array;
  maskSpec: MaskSpec | null;
  maskDescription: string;
  /** Printed area / sign area. */
  areaFraction: number;
  eps: number | null;
  useEot: boolean;
  eotConfig: EotConfig;
  history: StepStats[];
  /** Final NPS of the printed pixels and TV of the sticker (sign mode: of the perturbation). */
  nps: number;
  tv: number;
  seconds: number;
  options: {
    steps: number;
    eotSamples: number;
    learningRate: number;
    npsWeight: number;
    tvWeight: number;
    seed: number;
    palette: string;
    targetLoss: TargetLoss;
  };
}

export const STICKER_DEFAULTS = {
  steps: 300,
  eotSamples: 16,
  learningRate: 0.05,
  npsWeight: 0.3,
  tvWeight: 0.3,
  canvasSize: 64,
  seed: 1,
  eps: 16 / 255,
  kappa: 5,
  targetLoss: 'ce' as TargetLoss,
  l1Weight: 0,
};

/** The seed of optimisation step `step` (a stream disjoint from measureRobustness's). */
export function trainingSeed(seed: number, step: number): number {
  return hashSeed(seed, 0x7a1, step);
}

/** The clean sign as straight RGBA over its bounding square. */
export function signCanvas(classId: number, size: number): Float32Array {
  return renderSignRGBA(classId, size, { margin: 0 }).rgba;
}

/** Checks class ids with one-line errors. */
export function validateClasses(classId: number, target: number | null, numClasses = NUM_CLASSES): void {
  if (!Number.isInteger(classId) || classId < 0 || classId >= numClasses)
    throw new UserError(`sign class ${classId} is out of range: use 0..${numClasses - 1}`);
  if (target !== null) {
    if (!Number.isInteger(target) || target < 0 || target >= numClasses)
      throw new UserError(`target class ${target} is out of range: use 0..${numClasses - 1}`);
    if (target === classId) throw new UserError(`target class ${target} is the sign's own class: pick another class (or leave --target out for untargeted)`);
  }
}

/** Mean absolute neighbour difference over pairs inside the weight map (anisotropic TV). */
function tvLoss(img: Tensor4D, weight: Tensor4D): tf.Scalar {
  return tf.tidy(() => {
    const [, h, w, c] = img.shape;
    const dx = tf.abs(tf.sub(tf.slice(img, [0, 0, 1, 0], [1, h, w - 1, c]), tf.slice(img, [0, 0, 0, 0], [1, h, w - 1, c])));
    const dy = tf.abs(tf.sub(tf.slice(img, [0, 1, 0, 0], [1, h - 1, w, c]), tf.slice(img, [0, 0, 0, 0], [1, h - 1, w, c])));
    const wx = tf.mul(tf.slice(weight, [0, 0, 1, 0], [1, h, w - 1, 1]), tf.slice(weight, [0, 0, 0, 0], [1, h, w - 1, 1]));
    const wy = tf.mul(tf.slice(weight, [0, 1, 0, 0], [1, h - 1, w, 1]), tf.slice(weight, [0, 0, 0, 0], [1, h - 1, w, 1]));
    const num = tf.add(tf.sum(tf.mul(dx, wx)), tf.sum(tf.mul(dy, wy)));
    const den = tf.mul(tf.add(tf.sum(wx), tf.sum(wy)), c);
    return tf.div(num, tf.maximum(den, 1e-6)) as tf.Scalar;
  });
}

/** TV of an RGB image (size²×3) over the weight map, as a number (same definition as the loss). */
export function tvScore(rgb: Float32Array, weight: Float32Array, size: number): number {
  let num = 0,
    den = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      for (const j of [x + 1 < size ? i + 1 : -1, y + 1 < size ? i + size : -1]) {
        if (j < 0) continue;
        const ww = weight[i] * weight[j];
        if (ww <= 0) continue;
        for (let c = 0; c < 3; c++) num += ww * Math.abs(rgb[3 * i + c] - rgb[3 * j + c]);
        den += ww * 3;
      }
    }
  }
  return den > 0 ? num / den : 0;
}

/**
 * The attack loss on logits [n, k], lower is better. Targeted: cross-entropy of the target
 * (EOT's expected log-probability) or the margin max_{j≠t} Z_j − Z_t. Untargeted: the C&W margin
 * Z_y − max_{j≠y} Z_j. Margins are floored at −κ, so samples already fooled by κ stop pulling and
 * the hard transformations get the gradient.
 */
function attackLoss(logits: Tensor2D, classId: number, target: number | null, kappa: number, targetLoss: TargetLoss): tf.Scalar {
  return tf.tidy(() => {
    const n = logits.shape[0],
      k = logits.shape[1];
    const oh = tf.oneHot(tf.fill([n], target ?? classId, 'int32') as tf.Tensor1D, k);
    if (target !== null && targetLoss === 'ce') return tf.losses.softmaxCrossEntropy(oh, logits) as tf.Scalar;
    const own = tf.sum(tf.mul(logits, oh), 1);
    const other = tf.max(tf.sub(logits, tf.mul(oh, 1e9)), 1);
    const margin = target !== null ? tf.sub(other, own) : tf.sub(own, other);
    return tf.mean(tf.maximum(margin, -kappa)) as tf.Scalar;
  });
}

/** θ with ½(tanh θ + 1) = ink (colours kept off 0 and 1, where θ would be infinite). */
function thetaOfInk(ink: Float32Array): Float32Array {
  return Float32Array.from(ink, (c) => Math.atanh(2 * Math.min(0.98, Math.max(0.02, c)) - 1));
}

function fooled(pred: Int32Array, classId: number, target: number | null): number {
  let s = 0;
  for (const p of pred) if (target !== null ? p === target : p !== classId) s++;
  return s;
}

/** Optimises a sticker (or printed sign); see the file comment. */
export async function optimizeSticker(clf: Classifier, options: StickerOptions): Promise<StickerResult> {
  const o = { ...STICKER_DEFAULTS, ...stripUndefined(options) };
  const mode: StickerMode = options.mode ?? 'sticker';
  const target = options.target;
  validateClasses(options.classId, target, clf.numClasses);
  const R = o.canvasSize;
  if (!Number.isInteger(R) || R < 16 || R > 256) throw new UserError(`canvas size must be an integer in 16..256, got ${R}`);
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new UserError(`steps must be a positive integer, got ${o.steps}`);
  if (!Number.isInteger(o.eotSamples) || o.eotSamples < 1) throw new UserError(`EOT samples must be a positive integer, got ${o.eotSamples}`);
  if (mode === 'sign' && !(o.eps > 0 && o.eps <= 1)) throw new UserError(`eps must be in (0, 1], got ${o.eps}`);
  const useEot = options.useEot ?? true;
  const photos = useEot && options.photos && options.photos.scenes.length > 0 ? options.photos : null;
  if (photos && mode !== 'sticker') throw new UserError('real photos in the loop apply to sticker mode only');
  const photoCount = photos ? Math.min(o.eotSamples, Math.max(1, Math.round(photos.share * o.eotSamples))) : 0;
  const photoConfig: EotConfig = { ...(options.photos?.config ?? photoEotConfig(clf.inputSize)), outputSize: clf.inputSize };
  const eotConfig: EotConfig = { ...(useEot ? DEFAULT_EOT : CLEAN_VIEW), ...(useEot ? (options.eotConfig ?? {}) : {}), outputSize: clf.inputSize };
  const palette = options.palette ?? DEFAULT_PALETTE;

  const clean = options.signRGBA ?? signCanvas(options.classId, R);
  if (clean.length !== R * R * 4) throw new UserError(`sign image must be ${R}x${R} RGBA`);
  const alpha = alphaOf(clean);
  const maskSpec = mode === 'sticker' ? (options.mask ?? defaultMask('stripes')) : null;
  const printed = maskSpec ? rasterizeMask(maskSpec, R, alpha) : alpha;
  if (maskSpec) requireNonEmpty(printed, maskSpec);
  let alphaSum = 0,
    printedSum = 0;
  for (let i = 0; i < R * R; i++) {
    alphaSum += alpha[i];
    printedSum += printed[i];
  }

  const cleanRgb = new Float32Array(R * R * 3);
  for (let i = 0; i < R * R; i++) for (let c = 0; c < 3; c++) cleanRgb[3 * i + c] = clean[4 * i + c];
  const cleanT = tf.tensor4d(cleanRgb, [1, R, R, 3]);
  const alphaT = tf.tensor4d(alpha, [1, R, R, 1]);
  const printedT = tf.tensor4d(printed, [1, R, R, 1]);
  const paletteT = paletteTensor(palette);
  // Sticker: start near mid-grey with seeded noise; sign: start at the clean sign (θ ≈ 0).
  const rng = createRng(hashSeed(o.seed, 0x1417));
  if (options.initInk && (mode !== 'sticker' || options.initInk.length !== R * R * 3)) throw new Error(`initInk needs sticker mode and ${R * R * 3} values`);
  const init = options.initInk ? thetaOfInk(options.initInk) : new Float32Array(R * R * 3);
  if (!options.initInk) for (let i = 0; i < init.length; i++) init[i] = (rng() * 2 - 1) * (mode === 'sticker' ? 0.5 : 0.05);
  const init0 = tf.tensor4d(init, [1, R, R, 3]);
  const theta = tf.variable(init0, true, `sticker_theta_${Date.now()}_${Math.floor(rng() * 1e9)}`);
  init0.dispose();
  const optimizer = tf.train.adam(o.learningRate);

  /**
   * The printed colours, the full sign (RGB) and what TV smooths for the current θ: the sticker,
   * or in sign mode the perturbation (the sign's own edges are not ours to smooth).
   */
  const build = (): { ink: Tensor4D; rgb: Tensor4D; smooth: Tensor4D } => {
    if (mode === 'sticker') {
      const ink = tf.mul(tf.add(tf.tanh(theta), 1), 0.5) as Tensor4D;
      return { ink, rgb: tf.add(tf.mul(cleanT, tf.sub(1, printedT)), tf.mul(ink, printedT)), smooth: ink };
    }
    const rgb = tf.clipByValue(tf.add(cleanT, tf.mul(tf.mul(tf.tanh(theta), o.eps), alphaT)), 0, 1) as Tensor4D;
    return { ink: rgb, rgb, smooth: tf.sub(rgb, cleanT) };
  };

  const history: StepStats[] = [];
  const bar = options.progressLabel ? progressBar(options.progressLabel, o.steps) : null;
  const t0 = Date.now();
  try {
    for (let step = 0; step < o.steps; step++) {
      const samples = useEot ? sampleEot(o.eotSamples - photoCount, trainingSeed(o.seed, step), eotConfig) : sampleEot(1, 0, eotConfig);
      const photoViews = photos ? samplePhotoViews(photoCount, hashSeed(trainingSeed(o.seed, step), 0x9407), photos.scenes.length, photoConfig) : null;
      // Synthetic views of the whole sign, then photo views of the sticker alone pasted on real signs.
      const render = (): Tensor4D => {
        const { ink, rgb } = build();
        const synthetic = samples.length ? [applyEot(rgb, alpha, printed, samples, eotConfig)] : [];
        const real = photos && photoViews ? [photoViewsTensor(ink, printed, photos.scenes, photoViews, photoConfig)] : [];
        const all = [...synthetic, ...real];
        return all.length === 1 ? all[0] : (tf.concat(all, 0) as Tensor4D);
      };
      // The classifier's part first (natively when it can): the EOT views, their logits and Jᵀ∂adv/∂z.
      const views = tf.tidy(render);
      const { logits, grad: viewGrad } = await vjp(
        clf,
        views,
        (z) => tf.grad((q) => attackLoss(q as Tensor2D, options.classId, target, o.kappa, o.targetLoss))(z) as Tensor2D,
        'tape',
      );
      views.dispose();
      let parts: Tensor[] = [];
      const surrogate = optimizer.minimize(
        () => {
          const { ink, smooth } = build();
          const imgs = render();
          const adv = attackLoss(logits, options.classId, target, o.kappa, o.targetLoss);
          const nps = npsLoss(tf.reshape(ink, [-1, 3]) as Tensor2D, paletteT, printedT);
          const tv = tvLoss(smooth, printedT);
          const terms = [adv, tf.mul(nps, o.npsWeight), tf.mul(tv, o.tvWeight)];
          if (o.l1Weight > 0) terms.push(tf.mul(tf.div(tf.sum(tf.mul(tf.abs(tf.sub(ink, cleanT)), printedT)), printedSum * 3), o.l1Weight));
          const total = tf.addN(terms) as tf.Scalar;
          parts = [tf.keep(total), tf.keep(adv), tf.keep(nps), tf.keep(tv), tf.keep(tf.argMax(logits, 1))];
          // Σ views ⊙ Jᵀc has the adversarial term's gradient at the views: its own value is not used.
          return tf.add(total, tf.sum(tf.mul(imgs, viewGrad))) as tf.Scalar;
        },
        true,
        [theta],
      ) as tf.Scalar;
      const [loss, adv, nps, tv] = await Promise.all(parts.slice(0, 4).map(async (t) => (await t.data())[0]));
      const pred = Int32Array.from(await parts[4].data());
      tf.dispose([surrogate, logits, viewGrad, ...parts]);
      const s: StepStats = { step, loss, attackLoss: adv, nps, tv, batchSuccess: fooled(pred, options.classId, target) / pred.length };
      history.push(s);
      options.onStep?.(s);
      bar?.update(step + 1, `loss ${loss.toFixed(3)} fooled ${(s.batchSuccess * 100).toFixed(0)}%`);
      if (!Number.isFinite(loss)) throw new Error(`sticker optimisation diverged at step ${step} (loss ${loss})`);
    }
    bar?.done();
    const { ink, rgb, smooth } = tf.tidy(() => build());
    const sticker = Float32Array.from(await ink.data());
    const advRgb = await rgb.data();
    const smoothed = (await smooth.data()) as Float32Array;
    tf.dispose([ink, rgb, smooth]);
    const adversarial = new Float32Array(R * R * 4);
    for (let i = 0; i < R * R; i++) {
      for (let c = 0; c < 3; c++) adversarial[4 * i + c] = advRgb[3 * i + c];
      adversarial[4 * i + 3] = alpha[i];
    }
    return {
      mode,
      classId: options.classId,
      target,
      canvasSize: R,
      clean,
      adversarial,
      sticker,
      printed,
      maskSpec,
      maskDescription: maskSpec ? describeMask(maskSpec) : 'whole sign',
      areaFraction: alphaSum > 0 ? printedSum / alphaSum : 0,
      eps: mode === 'sign' ? o.eps : null,
      useEot,
      eotConfig,
      history,
      nps: npsScore(sticker, printed, palette),
      tv: tvScore(smoothed, printed, R),
      seconds: (Date.now() - t0) / 1000,
      options: {
        steps: o.steps,
        eotSamples: o.eotSamples,
        learningRate: o.learningRate,
        npsWeight: o.npsWeight,
        tvWeight: o.tvWeight,
        seed: o.seed,
        palette: palette.source,
        targetLoss: o.targetLoss,
      },
    };
  } finally {
    tf.dispose([cleanT, alphaT, printedT, paletteT, theta]);
    optimizer.dispose();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
