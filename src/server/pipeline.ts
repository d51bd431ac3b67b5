/**
 * One frame through the model: ROI crop → model input → clean top-5 → attack → adversarial top-5
 * (and, with a virtual sticker, the input with the sticker drawn on → its top-5), amplified
 * perturbation, fooled flags, the images clients asked for, and per-stage latencies.
 *
 * Labels for a live frame are unknown, so the attack's "true" label is the clean prediction:
 * "fooled" means the adversarial prediction differs from the clean one (targeted: equals the
 * target). Every tensor is created and disposed inside analyse(); tf.memory().numTensors is the
 * same before and after each frame (a test checks it over many frames). The work is split in two:
 * analyse (the model's part) and encode (the images, on libvips' threads), so the daemon encodes
 * one frame while it analyses the next.
 */
import sharp from 'sharp';
import { tf, Tensor4D } from '../inference/tf';
import { Classifier, inferLogits, measuredOn } from '../inference/model';
import { cropResize, RgbImage } from '../data/image-io';
import { CLASS_NAMES } from '../data/classes';
import { getAttack } from '../attack/registry';
import type { Attack } from '../attack/types';
import { quantiseArray, quantiseWithin } from '../attack/written';
import type { Frame } from '../capture/types';
import { IMAGE_KEYS, ImageKey, StickerFrame } from './protocol';
import type { FrameFields, PipelineSettings, PredictionSummary } from './protocol';
import { PixelRoi, roiToPixels } from '../util/roi';
import type { LoadedSticker } from './sticker-overlay';
import { encodeRgbPng } from './png';
import { explainStall } from './stall';

export type { PipelineSettings, TopEntry, PredictionSummary } from './protocol';
export type { PixelRoi } from '../util/roi';
export { roiToPixels };

export type FrameImages = Partial<Record<ImageKey, Buffer>>;

/** A processed frame: the fields the page gets (protocol.ts) plus the server's own. */
export interface FrameResult extends FrameFields {
  /** performance.now() of the frame's arrival. */
  t: number;
  /** True class when the source knows it. */
  label?: number;
  /** The encoded images so far (ensureImages adds the others on demand). */
  images: FrameImages;
  /** Model-sized float crops (for snapshot, print and late encoding), size*size*3 in [0, 1]. */
  crops: { clean: Float32Array; adversarial: Float32Array; sticker: Float32Array | null; size: number };
  /** The camera frame, for a JPEG encoded late. */
  frame: Pick<Frame, 'rgb' | 'width' | 'height' | 'jpeg'>;
}

/** A frame after the model's part of the pipeline, before its images are encoded. */
export interface AnalysedFrame {
  frame: Frame;
  settings: PipelineSettings;
  pickedAt: number;
  roi: PixelRoi;
  input: Float32Array;
  adv: Float32Array;
  cleanProbs: Float32Array;
  advProbs: Float32Array;
  attackError?: string;
  stall: string | null;
  sticker: LoadedSticker | null;
  stickered: Float32Array | null;
  stickerProbs: Float32Array | null;
  /** performance.now() at the start, after preprocessing, after classifying, after attacking. */
  times: [number, number, number, number];
}

/**
 * The ROI of an 8-bit frame as a float image (only the ROI is converted, never the whole frame),
 * into `out` when it has the right size (the live loop reuses one: a 1.3 MB array per frame at
 * 30 fps is garbage the collector would otherwise chase).
 */
export function roiToFloat(frame: Pick<Frame, 'rgb' | 'width'>, r: PixelRoi, out?: Float32Array): RgbImage {
  const data = out && out.length === r.w * r.h * 3 ? out : new Float32Array(r.w * r.h * 3);
  const src = frame.rgb;
  const inv = 1 / 255;
  for (let y = 0; y < r.h; y++) {
    let s = ((r.y + y) * frame.width + r.x) * 3;
    let d = y * r.w * 3;
    for (let k = 0; k < r.w * 3; k++) data[d++] = src[s++] * inv;
  }
  return { data, width: r.w, height: r.h };
}

function toBytes(a: Float32Array, map: (v: number, i: number) => number = (v) => v): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = map(a[i], i) * 255 + 0.5;
    out[i] = v >= 255 ? 255 : v > 0 ? v | 0 : 0;
  }
  return out;
}

/** A model-sized float image as PNG (synchronous: see png.ts). */
export function pngFromFloat(a: Float32Array, size: number, map?: (v: number, i: number) => number): Buffer {
  return encodeRgbPng(toBytes(a, map), size, size);
}

function summarise(probs: Float32Array, names: readonly string[], k = 5): PredictionSummary {
  const idx = Array.from(probs.keys())
    .sort((a, b) => probs[b] - probs[a])
    .slice(0, k);
  const top5 = idx.map((i) => ({ classId: i, name: names[i] ?? `class ${i}`, p: probs[i] }));
  return { classId: top5[0].classId, name: top5[0].name, confidence: top5[0].p, top5 };
}

/**
 * Encodes the images of `keys` that `r` does not have yet (in place). The page's panels are
 * model-sized PNGs (lossless: JPEG would wash out a ±8/255 perturbation); the frame is a JPEG.
 */
export async function ensureImages(r: FrameResult, keys: Iterable<ImageKey>, jpegQuality = 80): Promise<void> {
  const s = r.crops.size;
  const { clean, adversarial, sticker } = r.crops;
  for (const k of keys) {
    if (r.images[k]) continue;
    switch (k) {
      case 'frame':
        r.images.frame =
          r.frame.jpeg ??
          (await sharp(r.frame.rgb, { raw: { width: r.frame.width, height: r.frame.height, channels: 3 } })
            .jpeg({ quality: jpegQuality })
            .toBuffer());
        break;
      case 'cleanCrop':
        r.images.cleanCrop = pngFromFloat(clean, s);
        break;
      case 'perturbation':
        r.images.perturbation = pngFromFloat(adversarial, s, (v, i) => 0.5 + (v - clean[i]) * r.amplify);
        break;
      case 'adversarial':
        r.images.adversarial = pngFromFloat(adversarial, s);
        break;
      case 'sticker':
        if (sticker) r.images.sticker = pngFromFloat(sticker, s);
        break;
    }
  }
}

export interface PipelineOptions {
  jpegQuality?: number;
  onAttackError?: (message: string) => void;
}

export interface AnalyseOptions {
  /** performance.now() when the frame was picked up (default: now). */
  pickedAt?: number;
  /** The virtual sticker to draw onto the sign (null: none). */
  sticker?: LoadedSticker | null;
}

export interface ProcessOptions extends AnalyseOptions {
  /** The images to encode (default: all; none when no client is watching). */
  images?: Iterable<ImageKey>;
}

export class Pipeline {
  private attacks = new Map<string, Attack>();
  private readonly jpegQuality: number;
  private roiScratch = new Float32Array(0);

  constructor(
    readonly classifier: Classifier,
    private readonly opts: PipelineOptions = {},
  ) {
    this.jpegQuality = opts.jpegQuality ?? 80;
  }

  private attackFor(name: string): Attack {
    let a = this.attacks.get(name);
    if (!a) {
      a = getAttack(name);
      this.attacks.set(name, a);
    }
    return a;
  }

  /** Softmax probabilities of a batch, one Float32Array per image (measured on the model's runtime: a .tflite file's interpreter). */
  private async probabilities(x: Tensor4D): Promise<Float32Array[]> {
    const z = await inferLogits(measuredOn(this.classifier), x);
    const p = tf.softmax(z);
    try {
      const all = (await p.data()) as Float32Array;
      const k = this.classifier.numClasses;
      return Array.from({ length: x.shape[0] }, (_, i) => all.subarray(i * k, (i + 1) * k));
    } finally {
      tf.dispose([z, p]);
    }
  }

  /** Probabilities of the adversarial input (`adv`: one still to classify) and of the stickered input, in one batch. */
  private async classifyAfter(adv: Float32Array | null, stickered: Float32Array | null, advProbs: Float32Array): Promise<[Float32Array, Float32Array | null]> {
    const batch = [...(adv ? [adv] : []), ...(stickered ? [stickered] : [])];
    if (!batch.length) return [advProbs, null];
    const s = this.classifier.inputSize,
      n = s * s * 3;
    const data = new Float32Array(batch.length * n);
    batch.forEach((b, i) => data.set(b, i * n));
    const xb = tf.tensor4d(data, [batch.length, s, s, 3]);
    try {
      const probs = await this.probabilities(xb);
      return [adv ? probs[0] : advProbs, stickered ? probs[probs.length - 1] : null];
    } finally {
      xb.dispose();
    }
  }

  /**
   * The adversarial input as written (8 bits, within eps) and its probabilities when the attack's
   * success check already had them for that very image, or the attack's error in one line.
   */
  private async runAttack(
    x: Tensor4D,
    input: Float32Array,
    label: number,
    settings: PipelineSettings,
    seq: number,
  ): Promise<{ adv: Float32Array; probs: Float32Array | null } | { error: string }> {
    const labels = tf.tensor1d([label], 'int32');
    try {
      // Targeted even when the model already says the target: the step then only adds confidence
      // (an untargeted step here would push away from the target).
      const targeted = settings.targeted;
      const attack = this.attackFor(settings.attack);
      const res = await attack.run(this.classifier, x, labels, {
        eps: settings.eps,
        targeted,
        ...(targeted ? { target: settings.target } : {}),
        steps: settings.steps,
        eightBit: true,
        ...(attack.takesLoss ? { loss: settings.loss } : {}),
        ...(settings.attack === 'pgd' ? { restarts: 1, seed: seq } : {}),
      });
      try {
        const raw = (await res.adversarial.data()) as Float32Array;
        const adv = quantiseWithin(input, raw, 1, attack.usesEps ? { norm: attack.norm, eps: settings.eps } : undefined);
        // The attack's success check ran the model on its result: its logits serve when rounding
        // changed nothing (an eps step from an 8-bit input usually lands on the grid).
        const onGrid = adv.every((v, i) => v === raw[i]);
        return { adv, probs: onGrid && res.logits ? softmax(res.logits) : null };
      } finally {
        res.adversarial.dispose();
      }
    } catch (e) {
      const error = (e as Error).message.split('\n')[0];
      this.opts.onAttackError?.(error);
      return { error };
    } finally {
      labels.dispose();
    }
  }

  /** One frame end to end: analyse (model work), then encode. */
  async process(frame: Frame, settings: PipelineSettings, opts: ProcessOptions = {}): Promise<FrameResult> {
    return this.encode(await this.analyse(frame, settings, opts), opts.images);
  }

  /** The model's part of a frame: ROI, clean prediction, attack, adversarial and with-sticker predictions. */
  async analyse(frame: Frame, settings: PipelineSettings, opts: AnalyseOptions = {}): Promise<AnalysedFrame> {
    const pickedAt = opts.pickedAt ?? performance.now();
    const clf = this.classifier;
    const s = clf.inputSize;
    const t0 = performance.now();
    const roi = roiToPixels(settings.roi, frame.width, frame.height);
    if (this.roiScratch.length !== roi.w * roi.h * 3) this.roiScratch = new Float32Array(roi.w * roi.h * 3);
    // 8-bit like the panels written to the page, so "fooled" is about the image shown.
    const input = quantiseArray(cropResize(roiToFloat(frame, roi, this.roiScratch), null, s, 0));
    const sticker = opts.sticker ?? null;
    const stickered = sticker ? sticker.overlay.apply(input) : null;
    const t1 = performance.now();

    const attackOn = settings.attack !== 'none';
    const x = tf.tensor4d(input, [1, s, s, 3]);
    let cleanProbs: Float32Array, advProbs: Float32Array, stickerProbs: Float32Array | null;
    let adv: Float32Array = input;
    let attackError: string | undefined;
    let stall: string | null = null;
    let t2: number;
    try {
      [cleanProbs] = await this.probabilities(x);
      t2 = performance.now();
      advProbs = cleanProbs;
      const label = argmax(cleanProbs);
      let unclassified: Float32Array | null = null;
      // ε = 0 cannot move anything: say so instead of running a no-op attack.
      if (attackOn && settings.eps > 0) {
        const out = await this.runAttack(x, input, label, settings, frame.seq);
        if ('adv' in out) {
          adv = out.adv;
          if (out.probs) advProbs = out.probs;
          else unclassified = adv;
        } else {
          attackError = out.error;
        }
      }
      [advProbs, stickerProbs] = await this.classifyAfter(unclassified, stickered, advProbs);
      if (attackOn && !attackError && adv.every((v, i) => v === input[i])) {
        stall = await explainStall({ clf, x, input, label, target: settings.targeted ? settings.target : null, eps: settings.eps, loss: settings.loss });
      }
    } finally {
      x.dispose();
    }
    return {
      frame,
      settings,
      pickedAt,
      roi,
      input,
      adv,
      cleanProbs,
      advProbs,
      attackError,
      stall,
      sticker,
      stickered,
      stickerProbs,
      times: [t0, t1, t2, performance.now()],
    };
  }

  /**
   * The rest of a frame: predictions summarised and the images in `images` encoded (by libvips
   * and zlib: the daemon encodes one frame while the next is analysed).
   */
  async encode(a: AnalysedFrame, images: Iterable<ImageKey> = IMAGE_KEYS): Promise<FrameResult> {
    const { frame, settings, pickedAt, roi, input, adv, attackError, sticker, stickered, stickerProbs } = a;
    const [t0, t1, t2, t3] = a.times;
    const attackOn = settings.attack !== 'none';
    const names = this.classifier.classNames ?? CLASS_NAMES;
    const clean = summarise(a.cleanProbs, names);
    const adversarial = summarise(a.advProbs, names);
    const fooled =
      attackOn &&
      !attackError &&
      (settings.targeted ? adversarial.classId === settings.target && clean.classId !== settings.target : adversarial.classId !== clean.classId);
    const { linf, moved } = perturbationOf(adv, input);
    // Amplify so ±eps spans the whole grey scale; with eps 0 or no attack the panel is flat grey.
    const amplify = settings.eps > 0 ? 0.5 / settings.eps : 0;
    const stickerFrame = sticker && stickerProbs ? stickerFrameOf(sticker, summarise(stickerProbs, names), clean.classId) : null;

    const r: FrameResult = {
      seq: frame.seq,
      t: frame.t,
      width: frame.width,
      height: frame.height,
      ...(frame.label !== undefined ? { label: frame.label } : {}),
      roi,
      clean,
      adversarial,
      fooled,
      attack: {
        name: settings.attack,
        eps: settings.eps,
        targeted: settings.targeted,
        target: settings.target,
        steps: settings.steps,
        ...(attackError ? { error: attackError } : {}),
      },
      linf,
      moved,
      stall: a.stall,
      amplify,
      sticker: stickerFrame,
      latency: { capture: 0, preprocess: 0, classify: 0, attack: 0, encode: 0, total: 0 },
      images: {},
      crops: { clean: input, adversarial: adv, sticker: stickered, size: this.classifier.inputSize },
      frame: { rgb: frame.rgb, width: frame.width, height: frame.height, ...(frame.jpeg ? { jpeg: frame.jpeg } : {}) },
    };
    await ensureImages(r, images, this.jpegQuality);
    const t4 = performance.now();
    r.latency = {
      // capture: from the frame's arrival (last byte, or render start) to the pipeline picking it up:
      // decode/render time plus any wait behind the previous frame.
      capture: Math.max(frame.decodeMs, pickedAt - frame.t),
      preprocess: t1 - t0,
      classify: t2 - t1,
      attack: t3 - t2,
      encode: t4 - t3,
      total: t4 - frame.t,
    };
    return r;
  }
}

/** Max |δ| and the share of values changed. */
function perturbationOf(adv: Float32Array, input: Float32Array): { linf: number; moved: number } {
  let linf = 0,
    changed = 0;
  for (let i = 0; i < adv.length; i++) {
    const d = Math.abs(adv[i] - input[i]);
    if (d > 0) changed++;
    if (d > linf) linf = d;
  }
  return { linf, moved: changed / adv.length };
}

/** Untargeted runs fool when the prediction changes; targeted ones when it becomes the target. */
function stickerFrameOf(sticker: LoadedSticker, pred: PredictionSummary, cleanClass: number): StickerFrame {
  const target = sticker.run.target?.classId ?? null;
  return {
    id: sticker.summary.id,
    prediction: pred,
    target,
    matchesSign: cleanClass === sticker.run.classId,
    fooled: target !== null ? pred.classId === target && cleanClass !== target : pred.classId !== cleanClass,
  };
}

/** Softmax of one row of logits (float64 internally). */
export function softmax(z: Float32Array): Float32Array {
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  let sum = 0;
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) sum += out[i] = Math.exp(z[i] - m);
  for (let i = 0; i < z.length; i++) out[i] /= sum;
  return out;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
