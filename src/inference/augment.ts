/**
 * Batch augmentation on the tensor backend: small rotations, scaling, shifts (the ROI crops of
 * GTSRB are not centred exactly) and lighting (GTSRB has many dark and washed-out photos).
 * No flips: a mirrored "keep left" is a "keep right".
 */
import { tf, Tensor4D } from './tf';

export interface AugmentOptions {
  maxRotationDeg: number;
  scaleRange: [number, number];
  maxShiftFraction: number;
  brightnessRange: [number, number];
  contrastRange: [number, number];
}

export const DEFAULT_AUGMENT: AugmentOptions = {
  maxRotationDeg: 10,
  scaleRange: [0.92, 1.1],
  maxShiftFraction: 0.06,
  brightnessRange: [0.7, 1.3],
  contrastRange: [0.8, 1.2],
};

/** Returns an augmented copy of images [n, s, s, 3] in [0, 1]; `rand` gives uniforms in [0, 1). */
export function augmentBatch(images: Tensor4D, rand: () => number, o: AugmentOptions = DEFAULT_AUGMENT): Tensor4D {
  const [n, h, w] = images.shape;
  const transforms = new Float32Array(n * 8);
  const bright = new Float32Array(n);
  const contrast = new Float32Array(n);
  const cx = (w - 1) / 2,
    cy = (h - 1) / 2;
  for (let i = 0; i < n; i++) {
    const th = ((rand() * 2 - 1) * o.maxRotationDeg * Math.PI) / 180;
    const sc = o.scaleRange[0] + rand() * (o.scaleRange[1] - o.scaleRange[0]);
    const tx = (rand() * 2 - 1) * o.maxShiftFraction * w;
    const ty = (rand() * 2 - 1) * o.maxShiftFraction * h;
    const c = Math.cos(th) / sc,
      s = Math.sin(th) / sc;
    // Output pixel (x, y) samples input at R(x - c) / scale + c + t.
    transforms.set([c, -s, cx - c * cx + s * cy + tx, s, c, cy - s * cx - c * cy + ty, 0, 0], i * 8);
    bright[i] = o.brightnessRange[0] + rand() * (o.brightnessRange[1] - o.brightnessRange[0]);
    contrast[i] = o.contrastRange[0] + rand() * (o.contrastRange[1] - o.contrastRange[0]);
  }
  return tf.tidy(() => {
    const warped = tf.image.transform(images, tf.tensor2d(transforms, [n, 8]), 'bilinear', 'nearest');
    const mean = warped.mean([1, 2, 3], true);
    const c = tf.tensor4d(contrast, [n, 1, 1, 1]);
    const b = tf.tensor4d(bright, [n, 1, 1, 1]);
    return warped.sub(mean).mul(c).add(mean).mul(b).clipByValue(0, 1) as Tensor4D;
  });
}
