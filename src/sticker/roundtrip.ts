/**
 * A simulated print-and-capture round trip, deliberately built from different code than the EOT
 * family the attack was optimised against (so it is not grading its own homework):
 *   print:   the sign upsampled to print resolution; printed pixels are quantised to the printable
 *            palette with Floyd–Steinberg error diffusion (what a printer's halftoning does: only
 *            colours inside the palette's gamut come out);
 *   capture: the print drawn by a 2-D canvas (@napi-rs/canvas) into a camera frame with rotation,
 *            foreshortening for the viewing angle, scale and shift, over a random gradient;
 *            lighting and sensor noise; real JPEG encoding (sharp, random quality); resizing to the
 *            model's input with a cubic kernel (sharp).
 */
import sharp from 'sharp';
import { createCanvas } from '@napi-rs/canvas';
import type { Classifier } from '../inference/model';
import { createRng, hashSeed, Rng } from '../data/random';
import { resizeRgb } from '../data/image-io';
import { DEFAULT_PALETTE, nearestColor, Palette } from './palette';
import { PhysicalAttack, scoreImages, topCounts } from './measure';

export interface RoundTripOptions {
  /** Number of simulated photographs (default 100). */
  n?: number;
  seed?: number;
  palette?: Palette;
  /** Print resolution of the sign, pixels (default 256). */
  printSize?: number;
  /** Camera frame side, pixels, before resizing to the model input (default 96). */
  cameraSize?: number;
  jpegQualityRange?: [number, number];
  maxViewAngleDeg?: number;
  maxRollDeg?: number;
}

export interface RoundTripReport {
  n: number;
  seed: number;
  successRate: number;
  meanProbability: number;
  cleanAccuracy: number;
  predictions: Record<string, number>;
  palette: string;
  description: string;
}

/** Straight RGBA at `size` → at `out` (bilinear up / area down), keeping alpha separate. */
function resizeRgba(rgba: Float32Array, size: number, out: number): Float32Array {
  const n = size * size;
  const rgb = new Float32Array(n * 3),
    aaa = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c];
    aaa[3 * i] = aaa[3 * i + 1] = aaa[3 * i + 2] = rgba[4 * i + 3];
  }
  const r = resizeRgb({ data: rgb, width: size, height: size }, out, out).data;
  const a = resizeRgb({ data: aaa, width: size, height: size }, out, out).data;
  const res = new Float32Array(out * out * 4);
  for (let i = 0; i < out * out; i++) {
    for (let c = 0; c < 3; c++) res[4 * i + c] = r[3 * i + c];
    res[4 * i + 3] = a[3 * i];
  }
  return res;
}

/** The print: printed pixels (coverage ≥ 0.5) dithered to the palette, in place. */
export function printWithPalette(rgba: Float32Array, printed: Float32Array, size: number, palette: Palette): void {
  const err = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      if (printed[i] < 0.5) continue;
      const want = [0, 1, 2].map((c) => rgba[4 * i + c] + err[3 * i + c]);
      const got = palette.colors[nearestColor(palette, want[0], want[1], want[2])];
      for (let c = 0; c < 3; c++) {
        rgba[4 * i + c] = got[c];
        const e = want[c] - got[c];
        // Floyd–Steinberg weights, only into pixels that are printed too.
        for (const [dx, dy, wt] of [
          [1, 0, 7 / 16],
          [-1, 1, 3 / 16],
          [0, 1, 5 / 16],
          [1, 1, 1 / 16],
        ]) {
          const nx = x + dx,
            ny = y + dy;
          if (nx < 0 || nx >= size || ny >= size) continue;
          const j = ny * size + nx;
          if (printed[j] >= 0.5) err[3 * j + c] += e * wt;
        }
      }
    }
  }
}

function toImageBytes(rgba: Float32Array): Uint8ClampedArray {
  const b = new Uint8ClampedArray(rgba.length);
  for (let i = 0; i < rgba.length; i++) b[i] = Math.round(rgba[i] * 255);
  return b;
}

/** One simulated photograph of `print` (RGBA bytes, P×P): model-input floats S×S×3. */
async function photograph(
  print: Uint8ClampedArray,
  P: number,
  rng: Rng,
  o: Required<Omit<RoundTripOptions, 'palette' | 'seed' | 'n'>>,
  S: number,
): Promise<Float32Array> {
  const C = o.cameraSize;
  const cam = createCanvas(C, C);
  const ctx = cam.getContext('2d');
  const grad = ctx.createLinearGradient(0, 0, C * rng(), C);
  const col = () => `rgb(${Math.floor(40 + 200 * rng())},${Math.floor(40 + 200 * rng())},${Math.floor(40 + 200 * rng())})`;
  grad.addColorStop(0, col());
  grad.addColorStop(1, col());
  ctx.fillStyle = grad;
  ctx.fillRect(0, 0, C, C);
  const src = createCanvas(P, P);
  const sctx = src.getContext('2d');
  const id = sctx.createImageData(P, P);
  id.data.set(print);
  sctx.putImageData(id, 0, 0);
  const sym = (m: number) => (rng() * 2 - 1) * m;
  const yaw = (sym(o.maxViewAngleDeg) * Math.PI) / 180,
    pitch = (sym(o.maxViewAngleDeg) * Math.PI) / 180;
  const roll = (sym(o.maxRollDeg) * Math.PI) / 180;
  const scale = ((0.65 + 0.3 * rng()) * C) / P;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.translate(C / 2 + sym(0.06) * C, C / 2 + sym(0.06) * C);
  ctx.rotate(roll);
  // Viewing angle as foreshortening plus a little shear: an affine stand-in for perspective.
  ctx.transform(Math.cos(yaw), 0.15 * Math.sin(pitch) * Math.sin(yaw), 0.15 * Math.sin(yaw) * Math.sin(pitch), Math.cos(pitch), 0, 0);
  ctx.scale(scale, scale);
  ctx.drawImage(src, -P / 2, -P / 2);
  const frame = ctx.getImageData(0, 0, C, C).data;
  // Lighting and noise.
  const bright = 0.7 + 0.6 * rng(),
    contrast = 0.75 + 0.4 * rng(),
    noise = 0.02 * rng();
  const cast = [0, 1, 2].map(() => 1 + sym(0.08));
  const bytes = Buffer.alloc(C * C * 3);
  for (let i = 0; i < C * C; i++) {
    for (let c = 0; c < 3; c++) {
      const u1 = 1 - rng(),
        u2 = rng();
      const g = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      const v = ((frame[4 * i + c] / 255 - 0.5) * contrast + 0.5) * bright * cast[c] + noise * g;
      bytes[3 * i + c] = Math.max(0, Math.min(255, Math.round(v * 255)));
    }
  }
  const sigma = 1.5 * rng();
  let img = sharp(bytes, { raw: { width: C, height: C, channels: 3 } });
  if (sigma >= 0.3) img = img.blur(sigma);
  const quality = Math.round(o.jpegQualityRange[0] + (o.jpegQualityRange[1] - o.jpegQualityRange[0]) * rng());
  const jpeg = await img.jpeg({ quality }).toBuffer();
  const small = await sharp(jpeg).resize(S, S, { kernel: 'cubic', fit: 'fill' }).removeAlpha().raw().toBuffer();
  const out = new Float32Array(S * S * 3);
  for (let i = 0; i < out.length; i++) out[i] = small[i] / 255;
  return out;
}

/** Success rate of the attack after a simulated print (palette) and camera (JPEG) round trip. */
export async function simulatePrintCapture(clf: Classifier, attack: PhysicalAttack, options: RoundTripOptions = {}): Promise<RoundTripReport> {
  const n = options.n ?? 100;
  const seed = options.seed ?? 1;
  const palette = options.palette ?? DEFAULT_PALETTE;
  const o = {
    printSize: options.printSize ?? 256,
    cameraSize: options.cameraSize ?? 96,
    jpegQualityRange: options.jpegQualityRange ?? ([50, 90] as [number, number]),
    maxViewAngleDeg: options.maxViewAngleDeg ?? 30,
    maxRollDeg: options.maxRollDeg ?? 15,
  };
  const P = o.printSize,
    R = attack.canvasSize,
    S = clf.inputSize;
  // The printed-coverage map at print resolution travels in the alpha slot of a second image.
  const cov = new Float32Array(R * R * 4);
  for (let i = 0; i < R * R; i++) cov[4 * i + 3] = attack.printed[i];
  const printedHi = resizeRgba(cov, R, P).filter((_, i) => i % 4 === 3);
  const advPrint = resizeRgba(attack.adversarial, R, P);
  printWithPalette(advPrint, printedHi, P, palette);
  const cleanPrint = resizeRgba(attack.clean, R, P);
  if (attack.mode === 'sign') printWithPalette(cleanPrint, printedHi, P, palette);
  const advBytes = toImageBytes(advPrint),
    cleanBytes = toImageBytes(cleanPrint);
  const adv = new Float32Array(n * S * S * 3),
    clean = new Float32Array(n * S * S * 3);
  for (let i = 0; i < n; i++) {
    // The same photograph parameters for the clean and the adversarial print.
    adv.set(await photograph(advBytes, P, createRng(hashSeed(seed, 0x7247, i)), o, S), i * S * S * 3);
    clean.set(await photograph(cleanBytes, P, createRng(hashSeed(seed, 0x7247, i)), o, S), i * S * S * 3);
  }
  const a = await scoreImages(clf, adv, n, attack.classId, attack.target);
  const c = await scoreImages(clf, clean, n, attack.classId, attack.target);
  let ok = 0;
  for (const p of c.pred) if (p === attack.classId) ok++;
  return {
    n,
    seed,
    successRate: a.success,
    meanProbability: a.meanProbability,
    cleanAccuracy: n ? ok / n : 0,
    predictions: topCounts(a.predictions, 5),
    palette: palette.source,
    description: `print ${P}px dithered to ${palette.colors.length} palette colours; camera ${o.cameraSize}px, ±${o.maxViewAngleDeg}° view, ±${o.maxRollDeg}° roll, JPEG q${o.jpegQualityRange[0]}-${o.jpegQualityRange[1]}, cubic resize to ${S}px`,
  };
}
