/**
 * One frame through the model: ROI crop → model input → clean top-5 → attack → adversarial top-5,
 * amplified perturbation, fooled flag, encoded images and per-stage latencies.
 *
 * Labels for a live frame are unknown, so the attack's "true" label is the clean prediction:
 * "fooled" means the adversarial prediction differs from the clean one (targeted: equals the
 * target). Every tensor is created and disposed inside process(); tf.memory().numTensors is the
 * same before and after each call (a test checks it over many frames).
 */
import sharp from 'sharp';
import { tf } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { cropResize, RgbImage } from '../data/image-io';
import { CLASS_NAMES } from '../data/classes';
import { getAttack } from '../attack/registry';
import type { Attack } from '../attack/types';
import { quantiseArray, quantiseWithin } from '../attack/written';
import type { Frame } from '../capture/types';
import type { LiveAttack, NormRoi, ServeConfig } from './config';
import type { Latency } from './stats';

/** The per-frame settings: the attack fields of the serve config, plus pause. */
export type PipelineSettings = Pick<ServeConfig, 'attack' | 'eps' | 'targeted' | 'target' | 'steps' | 'loss' | 'roi'> & { paused: boolean };

export interface TopEntry {
  classId: number;
  name: string;
  p: number;
}

export interface PredictionSummary {
  classId: number;
  name: string;
  confidence: number;
  top5: TopEntry[];
}

export interface PixelRoi {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface FrameImages {
  /** The camera frame, JPEG. */
  frame: Buffer;
  /** Model-sized PNGs (lossless: JPEG would wash out a ±8/255 perturbation). */
  cleanCrop: Buffer;
  perturbation: Buffer;
  adversarial: Buffer;
}

export interface FrameResult {
  seq: number;
  /** performance.now() of the frame's arrival. */
  t: number;
  width: number;
  height: number;
  /** True class when the source knows it. */
  label?: number;
  roi: PixelRoi;
  clean: PredictionSummary;
  adversarial: PredictionSummary;
  fooled: boolean;
  attack: { name: LiveAttack; eps: number; targeted: boolean; target: number; steps: number; error?: string };
  /** Measured max |adversarial − clean| (≤ eps). */
  linf: number;
  /** The perturbation image shows 0.5 + δ·amplify. */
  amplify: number;
  latency: Latency;
  images: FrameImages;
  /** Model-sized float crops (for snapshot and print), size*size*3 in [0, 1]. */
  crops: { clean: Float32Array; adversarial: Float32Array; size: number };
}

/** The default ROI: a centre square of 70 % of the shorter side (a sign filling it resembles a GTSRB crop). */
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

/** The ROI of an 8-bit frame as a float image (only the ROI is converted, never the whole frame). */
export function roiToFloat(frame: Pick<Frame, 'rgb' | 'width'>, r: PixelRoi): RgbImage {
  const data = new Float32Array(r.w * r.h * 3);
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

export function pngFromFloat(a: Float32Array, size: number, map?: (v: number, i: number) => number): Promise<Buffer> {
  return sharp(toBytes(a, map), { raw: { width: size, height: size, channels: 3 } }).png({ compressionLevel: 3 }).toBuffer();
}

function summarise(probs: Float32Array, k = 5): PredictionSummary {
  const idx = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]).slice(0, k);
  const top5 = idx.map((i) => ({ classId: i, name: CLASS_NAMES[i] ?? `class ${i}`, p: probs[i] }));
  return { classId: top5[0].classId, name: top5[0].name, confidence: top5[0].p, top5 };
}

export interface PipelineOptions {
  jpegQuality?: number;
  onAttackError?: (message: string) => void;
}

export class Pipeline {
  private attacks = new Map<string, Attack>();
  private readonly jpegQuality: number;

  constructor(readonly classifier: Classifier, private readonly opts: PipelineOptions = {}) {
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

  private async probabilities(x: tf.Tensor4D): Promise<Float32Array> {
    const p = tf.tidy(() => tf.softmax(this.classifier.logits(x)));
    try {
      return (await p.data()) as Float32Array;
    } finally {
      p.dispose();
    }
  }

  async process(frame: Frame, settings: PipelineSettings, pickedAt = performance.now()): Promise<FrameResult> {
    const clf = this.classifier;
    const s = clf.inputSize;
    const t0 = performance.now();
    const roi = roiToPixels(settings.roi, frame.width, frame.height);
    // 8-bit like the panels written to the page, so "fooled" is about the image shown.
    const input = quantiseArray(cropResize(roiToFloat(frame, roi), null, s, 0));
    const t1 = performance.now();

    const x = tf.tensor4d(input, [1, s, s, 3]);
    let cleanProbs: Float32Array;
    let advProbs: Float32Array;
    let adv: Float32Array = input;
    let t2: number;
    let attackError: string | undefined;
    try {
      cleanProbs = await this.probabilities(x);
      t2 = performance.now();
      advProbs = cleanProbs;
      if (settings.attack !== 'none') {
        const label = argmax(cleanProbs);
        const labels = tf.tensor1d([label], 'int32');
        try {
          // Targeted even when the model already says the target: the step then only adds confidence
          // (an untargeted step here would push away from the target).
          const targeted = settings.targeted;
          const attack = this.attackFor(settings.attack);
          const res = await attack.run(clf, x, labels, {
            eps: settings.eps, targeted, ...(targeted ? { target: settings.target } : {}), steps: settings.steps, eightBit: true,
            ...(attack.takesLoss ? { loss: settings.loss } : {}),
            ...(settings.attack === 'pgd' ? { restarts: 1, seed: frame.seq } : {}),
          });
          try {
            adv = quantiseWithin(input, (await res.adversarial.data()) as Float32Array, 1,
              attack.usesEps ? { norm: attack.norm, eps: settings.eps } : undefined);
            const written = tf.tensor4d(adv, [1, s, s, 3]);
            advProbs = await this.probabilities(written);
            written.dispose();
          } finally {
            res.adversarial.dispose();
          }
        } catch (e) {
          attackError = (e as Error).message.split('\n')[0];
          this.opts.onAttackError?.(attackError);
        } finally {
          labels.dispose();
        }
      }
    } finally {
      x.dispose();
    }
    const t3 = performance.now();

    const clean = summarise(cleanProbs);
    const adversarial = summarise(advProbs);
    const targetedOn = settings.targeted && settings.attack !== 'none';
    const fooled = settings.attack !== 'none' && !attackError && (targetedOn
      ? adversarial.classId === settings.target && clean.classId !== settings.target
      : adversarial.classId !== clean.classId);
    let linf = 0;
    for (let i = 0; i < adv.length; i++) linf = Math.max(linf, Math.abs(adv[i] - input[i]));
    // Amplify so ±eps spans the whole grey scale; with eps 0 or no attack the panel is flat grey.
    const amplify = settings.eps > 0 ? 0.5 / settings.eps : 0;

    const frameJpeg = frame.jpeg
      ? Promise.resolve(frame.jpeg)
      : sharp(frame.rgb, { raw: { width: frame.width, height: frame.height, channels: 3 } }).jpeg({ quality: this.jpegQuality }).toBuffer();
    const [jpeg, cleanCrop, perturbation, adversarialPng] = await Promise.all([
      frameJpeg,
      pngFromFloat(input, s),
      pngFromFloat(adv, s, (v, i) => 0.5 + (v - input[i]) * amplify),
      pngFromFloat(adv, s),
    ]);
    const t4 = performance.now();

    return {
      seq: frame.seq, t: frame.t, width: frame.width, height: frame.height,
      ...(frame.label !== undefined ? { label: frame.label } : {}),
      roi, clean, adversarial, fooled,
      attack: { name: settings.attack, eps: settings.eps, targeted: settings.targeted, target: settings.target, steps: settings.steps,
        ...(attackError ? { error: attackError } : {}) },
      linf, amplify,
      latency: {
        // capture: from the frame's arrival (last byte, or render start) to the pipeline picking it up:
        // decode/render time plus any wait behind the previous frame.
        capture: Math.max(frame.decodeMs, pickedAt - frame.t),
        preprocess: t1 - t0, classify: t2 - t1, attack: t3 - t2, encode: t4 - t3,
        total: t4 - frame.t,
      },
      images: { frame: jpeg, cleanCrop, perturbation, adversarial: adversarialPng },
      crops: { clean: input, adversarial: adv, size: s },
    };
  }
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
