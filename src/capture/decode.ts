/** Image bytes → 8-bit RGB frames with sharp (libvips: fast, and off the main thread). */
import sharp from 'sharp';
import { decodeImage, RgbImage } from '../data/image-io';

export interface RgbBytes {
  rgb: Buffer;
  width: number;
  height: number;
}

/**
 * Decodes a JPEG/PNG/WebP… into RGB bytes. `maxSide` shrinks big photos (a 12 MP still would
 * cost more to move around than the whole pipeline). Grey or alpha images become plain RGB.
 */
export async function decodeToRgb(bytes: Buffer, maxSide?: number): Promise<RgbBytes & { resized: boolean }> {
  if (bytes.length >= 2 && bytes[0] === 0x50 && bytes[1] >= 0x35 && bytes[1] <= 0x36) {
    // PPM/PGM: sharp builds often lack it; the data module has a parser.
    return { ...floatToRgb(await decodeImage(bytes)), resized: false };
  }
  let img = sharp(bytes, { failOn: 'none' });
  let resized = false;
  if (maxSide) {
    const meta = await img.metadata();
    if ((meta.width ?? 0) > maxSide || (meta.height ?? 0) > maxSide) {
      img = img.resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true });
      resized = true;
    }
  }
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded image has ${info.channels} channels, expected 3`);
  return { rgb: data, width: info.width, height: info.height, resized };
}

export function floatToRgb(img: RgbImage): RgbBytes {
  const n = img.width * img.height * 3;
  const rgb = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    const v = img.data[i] * 255 + 0.5;
    rgb[i] = v >= 255 ? 255 : v > 0 ? v | 0 : 0;
  }
  return { rgb, width: img.width, height: img.height };
}
