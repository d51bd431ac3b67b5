/**
 * Input transforms used as defenses: feature squeezing (Xu et al. 2018: bit-depth reduction and
 * median smoothing) and JPEG re-encoding (Dziugaite et al. 2016; Guo et al. 2018). All take and
 * return float32 NHWC in [0, 1] with the input's shape. None is differentiable in a useful way
 * (rounding has zero gradient, JPEG runs outside tf), which is what makes them look strong against
 * plain gradient attacks and why they are evaluated with BPDA too (see src/defense/defended.ts).
 */
import sharp from 'sharp';
import { tf, Tensor4D } from '../inference/tf';
import { UserError } from '../data/types';

/** Rounds every channel to `bits` bits (2^bits levels spanning [0, 1]). */
export function squeezeBits(x: Tensor4D, bits: number): Tensor4D {
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new UserError(`bit depth must be an integer from 1 to 16, got ${bits}`);
  const levels = 2 ** bits - 1;
  return tf.tidy(() => tf.clipByValue(tf.div(tf.round(tf.mul(x, levels)), levels), 0, 1) as Tensor4D);
}

/**
 * Median filter over a k×k window per channel (k = 2 or 3), edges padded by replication. For
 * k = 2 the window is the pixel and its right/lower neighbours and the median of the four values
 * is the mean of the middle two (scipy would pick one of them; the mean keeps it symmetric).
 */
export function medianFilter(x: Tensor4D, k: number): Tensor4D {
  if (k !== 2 && k !== 3) throw new UserError(`median filter size must be 2 or 3, got ${k}`);
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const before = k === 3 ? 1 : 0;
    const after = 1;
    // Edge replication: pad with the border rows/columns themselves.
    let p: Tensor4D = x;
    if (before) p = tf.concat([p.slice([0, 0, 0, 0], [n, 1, w, c]), p], 1);
    p = tf.concat([p, p.slice([0, p.shape[1] - 1, 0, 0], [n, 1, w, c])], 1);
    if (before) p = tf.concat([p.slice([0, 0, 0, 0], [n, p.shape[1], 1, c]), p], 2);
    p = tf.concat([p, p.slice([0, 0, p.shape[2] - 1, 0], [n, p.shape[1], 1, c])], 2);
    void after;
    const shifts: tf.Tensor[] = [];
    for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) shifts.push(p.slice([0, dy, dx, 0], [n, h, w, c]));
    const stacked = tf.stack(shifts, 4); // [n, h, w, c, k·k]
    const sorted = tf.topk(stacked, k * k).values; // descending
    const kk = k * k;
    const med =
      kk % 2 === 1 ? sorted.slice([0, 0, 0, 0, (kk - 1) / 2], [n, h, w, c, 1]) : tf.mean(sorted.slice([0, 0, 0, 0, kk / 2 - 1], [n, h, w, c, 2]), 4, true);
    return tf.reshape(med, [n, h, w, c]) as Tensor4D;
  });
}

/** JPEG-encodes and decodes each image with sharp at `quality` (1–100). */
export async function jpegRoundTrip(x: Tensor4D, quality: number): Promise<Tensor4D> {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new UserError(`JPEG quality must be an integer from 1 to 100, got ${quality}`);
  const [n, h, w, c] = x.shape;
  if (c !== 3) throw new UserError(`JPEG re-encoding needs RGB images, got ${c} channels`);
  const data = (await x.data()) as Float32Array;
  const px = h * w * 3;
  const out = new Float32Array(n * px);
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const raw = Buffer.alloc(px);
      for (let j = 0; j < px; j++) raw[j] = Math.max(0, Math.min(255, Math.round(data[i * px + j] * 255)));
      const jpg = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality, chromaSubsampling: '4:4:4' })
        .toBuffer();
      const { data: dec, info } = await sharp(jpg).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      if (info.width !== w || info.height !== h || info.channels !== 3)
        throw new Error(`JPEG round trip changed the image to ${info.width}×${info.height}×${info.channels}`);
      for (let j = 0; j < px; j++) out[i * px + j] = dec[j] / 255;
    }),
  );
  return tf.tensor4d(out, [n, h, w, c]);
}
