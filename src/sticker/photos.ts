/**
 * Real photos in the EOT loop: the sticker is warped onto the sign of each photo (its bounding
 * square fitted inside the photo's box), lit like the photo, then the print-and-capture family
 * runs on top (placement and pose jitter, printer colour shift, blur, noise, JPEG). The photo's
 * own light, resolution, wear and background stay real. A view is the model-input crop of the
 * photo (its box + the model's margin, as the model sees GTSRB), so clean views are exactly the
 * photo as the model classifies it.
 */
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { cropResize } from '../data/image-io';
import type { SignPhoto } from '../data/sign-photos';
import { createRng, hashSeed } from '../data/random';
import { applyEot, DEFAULT_EOT, EotConfig, EotSample, Mat3, mul3, renderEot, Rgb3, sampleEot, SceneFn, signHomography } from './eot';
import { scoreImages } from './measure';

/** One photo prepared for pasting: its crop at the supersampled side, where the sign is in it, its light. */
export interface PhotoScene {
  file: string;
  group: string;
  /** The model-input crop at side So (= outputSize · supersample), So²×3. */
  background: Float32Array;
  So: number;
  /** The sign's bounding square in crop pixels (side So): centre and half-sides (as photographed, not square). */
  cx: number;
  cy: number;
  hx: number;
  hy: number;
  /** Per-channel light of the photo relative to the renderer's sign: photo ≈ gain · artwork. */
  gain: Rgb3;
  conditions: PhotoConditions;
}

export interface PhotoConditions {
  /** Width of the sign's box in the photo, pixels. */
  sizePx: number;
  /** Mean luma over the sign. */
  brightness: number;
  /** Mean absolute Laplacian of the model-input crop (low = blurred). */
  sharpness: number;
}

/** The EOT family on top of a real photo: the photo already has real light and blur, so those stages are milder. */
export const PHOTO_EOT: Readonly<EotConfig> = Object.freeze({
  ...DEFAULT_EOT,
  maxYawDeg: 20,
  maxPitchDeg: 20,
  maxRollDeg: 5,
  scaleRange: [0.94, 1.06] as [number, number],
  maxShift: 0.02,
  brightnessRange: [0.85, 1.15] as [number, number],
  contrastRange: [0.9, 1.05] as [number, number],
  maxCast: 0.04,
  blurRange: [0, 0.8] as [number, number],
  noiseRange: [0, 0.02] as [number, number],
  jpegProbability: 0.5,
  jpegQualityRange: [50, 95] as [number, number],
});

/** PHOTO_EOT for a model's input side, with the sticker's viewing angle on the photo at most ±maxAngleDeg. */
export function photoEotConfig(outputSize: number, maxAngleDeg: number = PHOTO_EOT.maxYawDeg): EotConfig {
  return { ...PHOTO_EOT, outputSize, maxYawDeg: maxAngleDeg, maxPitchDeg: maxAngleDeg };
}

export interface SceneGeometry {
  outputSize: number;
  supersample: number;
  /** The model's ROI margin (0.1 for 'crop'), null = the whole photo ('whole'). */
  margin: number | null;
  /** Side of the sign's bounding square as a fraction of its box. */
  signInBox: number;
}

/** Prepares photos; `artwork` is the renderer's clean sign (straight RGBA, R²×4) for the light fit. */
export function photoScenes(photos: SignPhoto[], g: SceneGeometry, artwork: Float32Array): PhotoScene[] {
  const So = g.outputSize * g.supersample;
  const R = Math.round(Math.sqrt(artwork.length / 4));
  return photos.map((p) => {
    const { roi, image } = p;
    const rw = roi.x2 + 1 - roi.x1,
      rh = roi.y2 + 1 - roi.y1;
    const m = g.margin ?? 0;
    // The crop rectangle exactly as cropResize takes it (clamped to the photo).
    const x0 = g.margin === null ? 0 : Math.max(0, roi.x1 - m * rw),
      y0 = g.margin === null ? 0 : Math.max(0, roi.y1 - m * rh);
    const x1 = g.margin === null ? image.width : Math.min(image.width, roi.x2 + 1 + m * rw),
      y1 = g.margin === null ? image.height : Math.min(image.height, roi.y2 + 1 + m * rh);
    const sx = So / (x1 - x0),
      sy = So / (y1 - y0);
    const background = cropResize(image, g.margin === null ? null : roi, So, m);
    const scene = {
      file: p.file,
      group: p.group,
      background,
      So,
      cx: ((roi.x1 + roi.x2 + 1) / 2 - x0) * sx,
      cy: ((roi.y1 + roi.y2 + 1) / 2 - y0) * sy,
      hx: (rw / 2) * g.signInBox * sx,
      hy: (rh / 2) * g.signInBox * sy,
    };
    const { gain, brightness } = fitLight(scene, artwork, R);
    const model = cropResize(image, g.margin === null ? null : roi, g.outputSize, m);
    return { ...scene, gain, conditions: { sizePx: rw, brightness, sharpness: sharpness(model, g.outputSize) } };
  });
}

/**
 * Per-channel gain from the artwork to the photo over the sign's inner pixels (ratio of means:
 * light is multiplicative, and a ratio of means is robust to the box being a pixel off).
 */
function fitLight(
  s: { background: Float32Array; So: number; cx: number; cy: number; hx: number; hy: number },
  art: Float32Array,
  R: number,
): { gain: Rgb3; brightness: number } {
  const sumP = [0, 0, 0],
    sumA = [0, 0, 0];
  let n = 0;
  for (let y = 0; y < s.So; y++) {
    for (let x = 0; x < s.So; x++) {
      const u = (x + 0.5 - s.cx) / s.hx,
        v = (y + 0.5 - s.cy) / s.hy;
      const ax = Math.floor(((u + 1) / 2) * R),
        ay = Math.floor(((v + 1) / 2) * R);
      if (ax < 0 || ay < 0 || ax >= R || ay >= R || art[4 * (ay * R + ax) + 3] < 0.95) continue;
      for (let c = 0; c < 3; c++) {
        sumP[c] += s.background[3 * (y * s.So + x) + c];
        sumA[c] += art[4 * (ay * R + ax) + c];
      }
      n++;
    }
  }
  if (n === 0) return { gain: [1, 1, 1], brightness: 0.5 };
  const gain = [0, 1, 2].map((c) => Math.min(2, Math.max(0.1, sumP[c] / Math.max(sumA[c], 1e-3)))) as Rgb3;
  return { gain, brightness: (0.299 * sumP[0] + 0.587 * sumP[1] + 0.114 * sumP[2]) / n };
}

function sharpness(img: Float32Array, S: number): number {
  let acc = 0;
  for (let y = 1; y < S - 1; y++) {
    for (let x = 1; x < S - 1; x++) {
      for (let c = 0; c < 3; c++) {
        const i = 3 * (y * S + x) + c;
        acc += Math.abs(4 * img[i] - img[i - 3] - img[i + 3] - img[i - 3 * S] - img[i + 3 * S]);
      }
    }
  }
  return acc / (3 * (S - 2) * (S - 2));
}

/** A batch of photo views: EOT samples and which photo each is of. */
export interface PhotoViews {
  samples: EotSample[];
  photo: Int32Array;
}

/** `n` views of photos drawn uniformly (seeded). */
export function samplePhotoViews(n: number, seed: number, photoCount: number, config: EotConfig = PHOTO_EOT): PhotoViews {
  const rng = createRng(hashSeed(seed, 0xf070));
  return { samples: sampleEot(n, seed, config), photo: Int32Array.from({ length: n }, () => Math.floor(rng() * photoCount)) };
}

/** `perPhoto` views of every photo, in order (for measurement). */
export function everyPhotoViews(perPhoto: number, seed: number, photoCount: number, config: EotConfig = PHOTO_EOT): PhotoViews {
  return {
    samples: sampleEot(perPhoto * photoCount, seed, config),
    photo: Int32Array.from({ length: perPhoto * photoCount }, (_, i) => Math.floor(i / perPhoto)),
  };
}

/** The canvas → crop homography of one view: the jittered pose placed on the photo's sign. */
function photoHomography(sc: PhotoScene, s: EotSample, cameraDistance: number): Mat3 {
  const place: Mat3 = [sc.hx, 0, sc.cx - sc.hx, 0, sc.hy, sc.cy - sc.hy, 0, 0, 1];
  return mul3(place, signHomography(s, 2, cameraDistance));
}

/** The photo's light folded into the printer stage (both are per-channel affine maps of the ink). */
function litSamples(scenes: PhotoScene[], v: PhotoViews): EotSample[] {
  return v.samples.map((s, i) => {
    const g = scenes[v.photo[i]].gain;
    return { ...s, printerBlack: s.printerBlack.map((b, c) => b * g[c]) as Rgb3, printerWhite: s.printerWhite.map((w, c) => w * g[c]) as Rgb3 };
  });
}

function sceneFn(scenes: PhotoScene[], v: PhotoViews, config: EotConfig): SceneFn {
  return (s, i, So) => {
    const sc = scenes[v.photo[i]];
    if (sc.So !== So) throw new Error(`photo scene prepared at ${sc.So}px, the EOT runs at ${So}px`);
    return { homography: photoHomography(sc, s, config.cameraDistance), background: sc.background };
  };
}

/**
 * Views of the photos with the sticker on: ink [1, R, R, 3] (the printed colours), coverage (R²).
 * Differentiable with respect to ink. [n, S, S, 3].
 */
export function photoViewsTensor(ink: Tensor4D, coverage: Float32Array, scenes: PhotoScene[], v: PhotoViews, config: EotConfig = PHOTO_EOT): Tensor4D {
  const ones = new Float32Array(coverage.length).fill(1);
  return applyEot(ink, coverage, ones, litSamples(scenes, v), config, sceneFn(scenes, v, config));
}

/** The same, as one Float32Array (measurement, in chunks). */
export async function renderPhotoViews(
  ink: Float32Array,
  coverage: Float32Array,
  scenes: PhotoScene[],
  v: PhotoViews,
  config: EotConfig = PHOTO_EOT,
): Promise<Float32Array> {
  const R = Math.round(Math.sqrt(coverage.length));
  const t = tf.tensor4d(ink, [1, R, R, 3]);
  try {
    return await renderEot(t, coverage, new Float32Array(coverage.length).fill(1), litSamples(scenes, v), config, 64, sceneFn(scenes, v, config));
  } finally {
    t.dispose();
  }
}

/** What a fill of the sticker's area does on held-out photos. */
export interface PhotoSuccess {
  views: number;
  /** Targeted: classified as the target; untargeted: not as the sign. */
  successRate: number;
  /** Classified as anything but the sign (the same as successRate when untargeted). */
  untargetedRate: number;
  /** Success per photo (share of its views), in scene order. */
  perPhoto: number[];
  /** Per photo, share of its views not classified as the sign. */
  perPhotoChanged: number[];
}

/** Classifies views and scores them against the sign and target. */
export async function scorePhotoViews(
  clf: Classifier,
  images: Float32Array,
  v: PhotoViews,
  photoCount: number,
  classId: number,
  target: number | null,
): Promise<PhotoSuccess> {
  const n = v.samples.length;
  const { pred } = await scoreImages(clf, images, n, classId, target);
  let success = 0,
    changed = 0;
  const hit = new Float64Array(photoCount),
    moved = new Float64Array(photoCount),
    seen = new Float64Array(photoCount);
  for (let i = 0; i < n; i++) {
    const ok = target !== null ? pred[i] === target : pred[i] !== classId;
    if (ok) {
      success++;
      hit[v.photo[i]]++;
    }
    if (pred[i] !== classId) {
      changed++;
      moved[v.photo[i]]++;
    }
    seen[v.photo[i]]++;
  }
  const share = (xs: Float64Array) => Array.from(xs, (h, i) => (seen[i] ? h / seen[i] : 0));
  return { views: n, successRate: n ? success / n : 0, untargetedRate: n ? changed / n : 0, perPhoto: share(hit), perPhotoChanged: share(moved) };
}
