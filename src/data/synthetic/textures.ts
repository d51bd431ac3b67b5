/** Each class drawn once per texture size into a premultiplied RGBA texture over [-1, 1]^2 (cached). */
import { createCanvas } from '@napi-rs/canvas';
import { SIGN_SPECS } from '../classes';
import { drawSign } from './pictograms';

export interface Texture {
  size: number;
  /** size * size * 4 premultiplied RGBA floats; pixel (i, j) covers unit coords around -1 + (i + 0.5) * 2 / size. */
  data: Float32Array;
}

const textureCache = new Map<string, Texture>();

export function signTexture(classId: number, size: number): Texture {
  const key = `${classId}/${size}`;
  const hit = textureCache.get(key);
  if (hit) return hit;
  const canvas = createCanvas(size, size);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(size / 2, 0, 0, size / 2, size / 2, size / 2);
  drawSign(ctx, SIGN_SPECS[classId]);
  const bytes = ctx.getImageData(0, 0, size, size).data;
  const data = new Float32Array(size * size * 4);
  for (let i = 0; i < size * size; i++) {
    const a = bytes[4 * i + 3] / 255;
    data[4 * i] = (bytes[4 * i] / 255) * a;
    data[4 * i + 1] = (bytes[4 * i + 1] / 255) * a;
    data[4 * i + 2] = (bytes[4 * i + 2] / 255) * a;
    data[4 * i + 3] = a;
  }
  const tex = { size, data };
  textureCache.set(key, tex);
  return tex;
}

export function textureSizeFor(internal: number): number {
  let t = 128;
  while (t < internal && t < 512) t *= 2;
  return t;
}
