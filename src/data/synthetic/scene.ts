/** Scene parameters: the seeded random pose, lighting and noise of one augmented image. */
import { Rng, createRng, hashSeed, randRange, randInt, randBool, randNormal } from '../random';
import { Rgb } from './colours';
import { PI } from './glyphs';

type BackgroundKind = 'sky' | 'foliage' | 'building' | 'gradient' | 'blobs' | 'plain';

export interface SceneParams {
  /** Larger side of the warped sign's bounding box, as a fraction of the image side. */
  scale: number;
  rotation: number;
  /** Affine stretch/shear before rotation. */
  sx: number;
  sy: number;
  shear: number;
  /** Projective terms: w = 1 + px * u + py * v (viewing the sign at an angle). */
  px: number;
  py: number;
  /** Sign centre offset from the image centre, fraction of the image side. */
  dx: number;
  dy: number;
  /** Gaussian blur sigma per axis, output pixels (different sigmas ~ motion blur). */
  blurX: number;
  blurY: number;
  brightness: number;
  contrast: number;
  gamma: number;
  cast: Rgb;
  /** Colour fading of the sign (0 = fresh paint). */
  fade: number;
  /** Linear shading across the sign (partial shadow). */
  shadeAngle: number;
  shadeAmount: number;
  noise: number;
  noiseSeed: number;
  background: BackgroundKind;
  backgroundSeed: number;
  /** Plain background colour. */
  plainColor: Rgb;
  pole: boolean;
}

const DEG = PI / 180;
const CLEAN_SCALE = 0.8;
const NEUTRAL_GREY: Rgb = [0.47, 0.48, 0.5];

export function canonicalParams(background: 'random' | 'plain', seed: number): SceneParams {
  const rng = createRng(seed);
  return {
    scale: CLEAN_SCALE,
    rotation: 0,
    sx: 1,
    sy: 1,
    shear: 0,
    px: 0,
    py: 0,
    dx: 0,
    dy: 0,
    blurX: 0,
    blurY: 0,
    brightness: 1,
    contrast: 1,
    gamma: 1,
    cast: [1, 1, 1],
    fade: 0,
    shadeAngle: 0,
    shadeAmount: 0,
    noise: 0,
    noiseSeed: 0,
    background: background === 'plain' ? 'plain' : sampleBackgroundKind(rng),
    backgroundSeed: hashSeed(seed, 7),
    plainColor: NEUTRAL_GREY,
    pole: false,
  };
}

function sampleBackgroundKind(rng: Rng): BackgroundKind {
  const r = rng();
  if (r < 0.25) return 'sky';
  if (r < 0.5) return 'foliage';
  if (r < 0.7) return 'building';
  if (r < 0.8) return 'gradient';
  if (r < 0.95) return 'blobs';
  return 'plain';
}

export function mutedColor(rng: Rng): Rgb {
  const base = randRange(rng, 0.15, 0.8);
  return [0, 1, 2].map(() => Math.min(1, Math.max(0, base + randRange(rng, -0.15, 0.15)))) as Rgb;
}

export function sampleParams(rng: Rng, background: 'random' | 'plain'): SceneParams {
  // 55-95 % of the side, skewed towards large (median ~85 %): GTSRB crops keep a ~10 % margin.
  const u0 = rng();
  const scale = 0.95 - 0.4 * u0 * u0;
  const margin = (1 - scale) / 2;
  // Triangular distributions keep most samples near the typical value.
  const tri = (): number => rng() + rng() - 1;
  const blur = rng() < 0.35 ? 0 : randRange(rng, 0.1, 1.0);
  const light = rng();
  // GTSRB has many dark (dusk, shadow, underexposed) photos, some overexposed ones.
  const brightness = light < 0.25 ? randRange(rng, 0.3, 0.6) : light < 0.9 ? randRange(rng, 0.55, 1.1) : randRange(rng, 1.1, 1.45);
  const stretch = Math.exp(randRange(rng, -0.12, 0.12));
  return {
    scale,
    rotation: tri() * 15 * DEG,
    sx: stretch,
    sy: Math.exp(randRange(rng, -0.05, 0.05)) / stretch,
    shear: tri() * 0.15,
    px: tri() * 0.22,
    py: tri() * 0.15,
    dx: randRange(rng, -margin, margin) * 0.6,
    dy: randRange(rng, -margin, margin) * 0.6,
    blurX: blur * randRange(rng, 0.6, 1.4),
    blurY: blur * randRange(rng, 0.6, 1.4),
    brightness,
    contrast: randRange(rng, 0.6, 1.15),
    gamma: Math.exp(randRange(rng, -0.3, 0.3)),
    cast: [Math.exp(randNormal(rng, 0, 0.07)), Math.exp(randNormal(rng, 0, 0.05)), Math.exp(randNormal(rng, 0, 0.08))],
    fade: rng() < 0.5 ? 0 : randRange(rng, 0, 0.45),
    shadeAngle: randRange(rng, 0, 2 * PI),
    shadeAmount: rng() < 0.5 ? 0 : randRange(rng, 0, 0.4),
    noise: randRange(rng, 0, 0.04),
    noiseSeed: randInt(rng, 0, 0x7fffffff),
    background: background === 'plain' ? 'plain' : sampleBackgroundKind(rng),
    backgroundSeed: randInt(rng, 0, 0x7fffffff),
    plainColor: mutedColor(rng),
    pole: randBool(rng, 0.4),
  };
}

/** Frame `f` of a track: the sign grows as the car approaches; pose, blur and light wobble a little. */
export function jitterParams(base: SceneParams, rng: Rng, f: number): SceneParams {
  const scale = Math.min(0.97, base.scale * (1 + 0.035 * f) * Math.exp(randRange(rng, -0.02, 0.02)));
  const lim = ((1 - scale) / 2) * 0.8;
  const clamp = (v: number): number => Math.max(-lim, Math.min(lim, v));
  // Field by field in declaration order: an object spread gives a different hidden
  // class, which made V8 deoptimise the render loop over and over.
  return {
    scale,
    rotation: base.rotation + randRange(rng, -1.5, 1.5) * DEG,
    sx: base.sx,
    sy: base.sy,
    shear: base.shear,
    px: base.px + randRange(rng, -0.02, 0.02),
    py: base.py + randRange(rng, -0.02, 0.02),
    dx: clamp(base.dx + randRange(rng, -0.02, 0.02)),
    dy: clamp(base.dy + randRange(rng, -0.02, 0.02)),
    blurX: base.blurX * randRange(rng, 0.7, 1.3),
    blurY: base.blurY * randRange(rng, 0.7, 1.3),
    brightness: base.brightness * Math.exp(randRange(rng, -0.06, 0.06)),
    contrast: base.contrast,
    gamma: base.gamma,
    cast: base.cast,
    fade: base.fade,
    shadeAngle: base.shadeAngle,
    shadeAmount: base.shadeAmount,
    noise: base.noise * randRange(rng, 0.8, 1.2),
    noiseSeed: randInt(rng, 0, 0x7fffffff),
    background: base.background,
    backgroundSeed: base.backgroundSeed,
    plainColor: base.plainColor,
    pole: base.pole,
  };
}

/** Reusable work buffers per internal size, so rendering thousands of images allocates little. */
export interface Work {
  R: number;
  bg: Float32Array;
  layer: Float32Array;
  tmp: Float32Array;
  noiseA: Float32Array;
  noiseB: Float32Array;
}
