/**
 * Image decoding, encoding and resampling for the data readers.
 * Images are float32 RGB in [0, 1], row-major, interleaved (h * w * 3).
 */
import { promises as fsp } from 'fs';
import sharp from 'sharp';
import { UserError } from './types';
import { BYTE_TO_FLOAT, toByte } from './quantise';
import type { Roi } from '../util/roi';

export type { Roi };

export interface RgbImage {
  /** height * width * 3 floats in [0, 1]. */
  data: Float32Array;
  width: number;
  height: number;
}

function label(name?: string): string {
  return name ? name : 'image';
}

/**
 * Decodes PNG/JPEG/WebP/TIFF/GIF… (via sharp) or binary PPM/PGM (P6/P5, own parser
 * since sharp builds often lack PPM support) into RGB floats.
 * Alpha is flattened onto black (transparent pixels become black, as in
 * pre-multiplied rendering); grayscale is replicated into 3 channels.
 * Errors are one-line UserErrors naming `name`.
 */
export async function decodeImage(bytes: Buffer, name?: string): Promise<RgbImage> {
  const what = label(name);
  if (bytes.length === 0) throw new UserError(`${what}: empty file, not an image`);
  if (bytes.length >= 2 && bytes[0] === 0x50 /* P */ && bytes[1] >= 0x31 && bytes[1] <= 0x37) {
    return decodePnm(bytes, what);
  }
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(bytes, { failOn: 'warning' })
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new UserError(`${what}: ${describeSharpError(err)}`);
  }
  const { width, height, channels } = raw.info;
  if (!(width > 0 && height > 0)) throw new UserError(`${what}: image has zero size (${width}x${height})`);
  return fromInterleavedBytes(raw.data, width, height, channels, what);
}

function describeSharpError(err: unknown): string {
  const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0].trim();
  if (/unsupported image format/i.test(msg)) return 'not an image (unsupported or unrecognised format)';
  if (/end of stream|premature end|truncat|unexpected end|read error|not enough data/i.test(msg)) {
    return `truncated or corrupt image (${msg})`;
  }
  if (/corrupt header|bad (seek|header)|invalid/i.test(msg)) return `corrupt image (${msg})`;
  return `cannot decode image (${msg})`;
}

/** Maps 1..4 interleaved 8-bit channels to RGB floats (alpha flattened onto black). */
function fromInterleavedBytes(src: Uint8Array, width: number, height: number, channels: number, what: string): RgbImage {
  const n = width * height;
  if (channels < 1 || channels > 4) throw new UserError(`${what}: unsupported channel count ${channels}`);
  if (src.length < n * channels) throw new UserError(`${what}: truncated pixel data`);
  const data = new Float32Array(n * 3);
  const t = BYTE_TO_FLOAT;
  if (channels === 3) {
    for (let i = 0; i < n * 3; i++) data[i] = t[src[i]];
  } else if (channels === 1) {
    for (let i = 0, o = 0; i < n; i++, o += 3) data[o] = data[o + 1] = data[o + 2] = t[src[i]];
  } else if (channels === 2) {
    for (let i = 0, o = 0; i < n; i++, o += 3) {
      const v = t[src[2 * i]] * t[src[2 * i + 1]];
      data[o] = data[o + 1] = data[o + 2] = v;
    }
  } else {
    for (let i = 0, o = 0; i < n; i++, o += 3) {
      const a = t[src[4 * i + 3]];
      data[o] = t[src[4 * i]] * a;
      data[o + 1] = t[src[4 * i + 1]] * a;
      data[o + 2] = t[src[4 * i + 2]] * a;
    }
  }
  return { data, width, height };
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
}

/** Binary PNM (P5 gray / P6 RGB), maxval 1..65535 (16-bit samples are big-endian per spec). */
function decodePnm(bytes: Buffer, what: string): RgbImage {
  const kind = bytes[1];
  if (kind !== 0x35 && kind !== 0x36) {
    throw new UserError(`${what}: only binary PPM/PGM (P6/P5) are supported, found P${String.fromCharCode(kind)}`);
  }
  let pos = 2;
  const readInt = (field: string): number => {
    // Skip whitespace and '#' comments between header fields.
    for (;;) {
      if (pos >= bytes.length) throw new UserError(`${what}: truncated PPM header (missing ${field})`);
      const c = bytes[pos];
      if (isSpace(c)) pos++;
      else if (c === 0x23) {
        while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos++;
      } else break;
    }
    let v = 0;
    let digits = 0;
    while (pos < bytes.length && bytes[pos] >= 0x30 && bytes[pos] <= 0x39) {
      v = v * 10 + (bytes[pos] - 0x30);
      pos++;
      digits++;
      if (v > 1e9) throw new UserError(`${what}: PPM header ${field} is too large`);
    }
    if (digits === 0) {
      if (pos >= bytes.length) throw new UserError(`${what}: truncated PPM header (missing ${field})`);
      throw new UserError(`${what}: bad PPM header (${field} is not a number)`);
    }
    return v;
  };
  const width = readInt('width');
  const height = readInt('height');
  const maxval = readInt('maxval');
  if (width === 0 || height === 0) throw new UserError(`${what}: image has zero size (${width}x${height})`);
  if (maxval < 1 || maxval > 65535) throw new UserError(`${what}: bad PPM maxval ${maxval} (must be 1..65535)`);
  if (pos >= bytes.length || !isSpace(bytes[pos])) throw new UserError(`${what}: truncated PPM header`);
  pos++; // exactly one whitespace byte separates header and raster
  const channels = kind === 0x36 ? 3 : 1;
  const bps = maxval < 256 ? 1 : 2;
  const n = width * height;
  const need = n * channels * bps;
  if (bytes.length - pos < need) {
    throw new UserError(`${what}: truncated PPM (expected ${need} bytes of pixel data, found ${bytes.length - pos})`);
  }
  const data = new Float32Array(n * 3);
  const inv = 1 / maxval;
  if (channels === 3) {
    if (bps === 1) {
      if (maxval === 255) for (let i = 0; i < n * 3; i++) data[i] = BYTE_TO_FLOAT[bytes[pos + i]];
      else for (let i = 0; i < n * 3; i++) data[i] = Math.min(1, bytes[pos + i] * inv);
    } else {
      for (let i = 0; i < n * 3; i++) data[i] = Math.min(1, ((bytes[pos + 2 * i] << 8) | bytes[pos + 2 * i + 1]) * inv);
    }
  } else {
    for (let i = 0, o = 0; i < n; i++, o += 3) {
      const s = bps === 1 ? bytes[pos + i] : (bytes[pos + 2 * i] << 8) | bytes[pos + 2 * i + 1];
      data[o] = data[o + 1] = data[o + 2] = Math.min(1, s * inv);
    }
  }
  return { data, width, height };
}

/** Reads and decodes one image file; UserError naming the file when missing or bad. */
export async function loadImageFile(file: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`image not found: ${file}`);
    if (code === 'EISDIR') throw new UserError(`${file}: is a directory, not an image`);
    throw new UserError(`${file}: cannot read (${code ?? String(err)})`);
  }
  return decodeImage(bytes, file);
}

/** Float RGB -> 8-bit interleaved, rounding and clamping (NaN -> 0; see quantise.ts). */
export function toBytes(img: RgbImage): Buffer {
  const n = img.width * img.height * 3;
  if (img.data.length < n) throw new RangeError(`image data has ${img.data.length} floats, expected ${n}`);
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = toByte(img.data[i]);
  return out;
}

export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(toBytes(img), { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
}

export async function encodeJpeg(img: RgbImage, quality = 90): Promise<Buffer> {
  const q = Math.max(1, Math.min(100, Math.round(quality)));
  return sharp(toBytes(img), { raw: { width: img.width, height: img.height, channels: 3 } })
    .jpeg({ quality: q })
    .toBuffer();
}

/**
 * Separable resampling weights for one axis: output pixel i reads source pixels
 * start[i] .. start[i]+count[i]-1 with weights w[off[i]..]. Area-averaging when
 * shrinking (each output pixel averages the source area it covers), bilinear
 * (pixel-centre aligned, edge-clamped to the region) when enlarging.
 */
interface AxisWeights {
  start: Int32Array;
  count: Int32Array;
  off: Int32Array;
  w: Float32Array;
}

function axisWeights(lo: number, hi: number, out: number, srcLen: number): AxisWeights {
  const scale = (hi - lo) / out;
  const start = new Int32Array(out);
  const count = new Int32Array(out);
  const off = new Int32Array(out);
  if (scale > 1) {
    const maxTaps = Math.ceil(scale) + 2;
    const w = new Float32Array(out * maxTaps);
    let k = 0;
    for (let i = 0; i < out; i++) {
      const a = lo + i * scale;
      const b = i === out - 1 ? hi : lo + (i + 1) * scale;
      const j0 = Math.max(0, Math.floor(a));
      const j1 = Math.min(srcLen - 1, Math.ceil(b) - 1);
      start[i] = j0;
      off[i] = k;
      let sum = 0;
      const k0 = k;
      for (let j = j0; j <= j1; j++) {
        const cover = Math.max(0, Math.min(b, j + 1) - Math.max(a, j));
        w[k++] = cover;
        sum += cover;
      }
      for (let t = k0; t < k; t++) w[t] /= sum;
      count[i] = k - k0;
    }
    return { start, count, off, w };
  }
  const w = new Float32Array(out * 2);
  const pLo = Math.max(0, Math.floor(lo));
  const pHi = Math.min(srcLen - 1, Math.ceil(hi) - 1);
  for (let i = 0; i < out; i++) {
    let c = lo + (i + 0.5) * scale - 0.5;
    if (c < pLo) c = pLo;
    if (c > pHi) c = pHi;
    const j = Math.min(Math.floor(c), pHi);
    const f = c - j;
    off[i] = 2 * i;
    start[i] = j;
    if (f > 0 && j + 1 <= pHi) {
      count[i] = 2;
      w[2 * i] = 1 - f;
      w[2 * i + 1] = f;
    } else {
      count[i] = 1;
      w[2 * i] = 1;
    }
  }
  return { start, count, off, w };
}

/**
 * Resamples the source rectangle [x0,x1)×[y0,y1) (continuous pixel-edge coordinates,
 * already clamped to the image) to outW×outH. Horizontal pass into a row buffer, then
 * vertical; allocations are per call, never per pixel.
 */
function resampleRegion(img: RgbImage, x0: number, y0: number, x1: number, y1: number, outW: number, outH: number): Float32Array {
  const src = img.data;
  const W = img.width;
  const wx = axisWeights(x0, x1, outW, W);
  const wy = axisWeights(y0, y1, outH, img.height);
  // Only rows the vertical pass can touch are resampled horizontally.
  let rLo = Infinity;
  let rHi = -1;
  for (let i = 0; i < outH; i++) {
    rLo = Math.min(rLo, wy.start[i]);
    rHi = Math.max(rHi, wy.start[i] + wy.count[i] - 1);
  }
  const rows = rHi - rLo + 1;
  const tmp = new Float32Array(rows * outW * 3);
  for (let r = 0; r < rows; r++) {
    const srcRow = (r + rLo) * W * 3;
    const dstRow = r * outW * 3;
    for (let i = 0; i < outW; i++) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let p = srcRow + wx.start[i] * 3;
      const o = wx.off[i];
      const c = wx.count[i];
      for (let t = 0; t < c; t++, p += 3) {
        const wt = wx.w[o + t];
        s0 += src[p] * wt;
        s1 += src[p + 1] * wt;
        s2 += src[p + 2] * wt;
      }
      const d = dstRow + i * 3;
      tmp[d] = s0;
      tmp[d + 1] = s1;
      tmp[d + 2] = s2;
    }
  }
  const out = new Float32Array(outW * outH * 3);
  const rowLen = outW * 3;
  for (let i = 0; i < outH; i++) {
    const o = wy.off[i];
    const c = wy.count[i];
    const base = (wy.start[i] - rLo) * rowLen;
    const d = i * rowLen;
    for (let t = 0; t < c; t++) {
      const wt = wy.w[o + t];
      const s = base + t * rowLen;
      for (let x = 0; x < rowLen; x++) out[d + x] += tmp[s + x] * wt;
    }
  }
  return out;
}

function checkImage(img: RgbImage): void {
  if (!(img.width > 0 && img.height > 0)) throw new UserError(`image has zero size (${img.width}x${img.height})`);
  if (img.data.length < img.width * img.height * 3) {
    throw new RangeError(`image data has ${img.data.length} floats, expected ${img.width * img.height * 3}`);
  }
}

/** Resizes the whole image to w×h (area-averaging down, bilinear up, per axis). */
export function resizeRgb(img: RgbImage, w: number, h: number): RgbImage {
  checkImage(img);
  if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0)) {
    throw new RangeError(`resize target must be positive integers, got ${w}x${h}`);
  }
  return { data: resampleRegion(img, 0, 0, img.width, img.height, w, h), width: w, height: h };
}

/**
 * Crops `roi` (inclusive x2/y2, GTSRB convention) enlarged by `margin` × ROI size on
 * each side, clamped to the image, and resizes it to size×size (aspect not kept,
 * as is usual for GTSRB). A null or degenerate ROI uses the whole image.
 * Returns size*size*3 floats.
 */
export function cropResize(img: RgbImage, roi: Roi | null, size: number, margin = 0.1): Float32Array {
  checkImage(img);
  if (!(Number.isInteger(size) && size > 0)) throw new RangeError(`size must be a positive integer, got ${size}`);
  if (!(Number.isFinite(margin) && margin >= 0)) throw new RangeError(`margin must be >= 0, got ${margin}`);
  let x0 = 0;
  let y0 = 0;
  let x1 = img.width;
  let y1 = img.height;
  if (roi) {
    const rw = roi.x2 + 1 - roi.x1;
    const rh = roi.y2 + 1 - roi.y1;
    const cx0 = Math.max(0, roi.x1 - margin * rw);
    const cy0 = Math.max(0, roi.y1 - margin * rh);
    const cx1 = Math.min(img.width, roi.x2 + 1 + margin * rw);
    const cy1 = Math.min(img.height, roi.y2 + 1 + margin * rh);
    if (rw > 0 && rh > 0 && cx1 - cx0 > 0 && cy1 - cy0 > 0) {
      x0 = cx0;
      y0 = cy0;
      x1 = cx1;
      y1 = cy1;
    }
  }
  return resampleRegion(img, x0, y0, x1, y1, size, size);
}
