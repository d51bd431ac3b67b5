/**
 * The 8-bit grid images are written on (PNG, JPEG, the PDF's rasters): value k/255, k = 0..255.
 * One definition for arrays and tensors: the byte is floor(x·255 + 0.5) in float32 arithmetic,
 * which is exactly what the tensor version (src/attack/written.ts) computes, so an attack that
 * checks its rounded image on tensors and the file written from arrays never disagree.
 */

/** The byte a float in [0, 1] is written as (rounded half up, clamped; NaN → 0). */
export function toByte(v: number): number {
  const t = Math.fround(Math.fround(v * 255) + 0.5);
  return t >= 255 ? 255 : t > 0 ? Math.floor(t) : 0;
}

/** 256-entry table: byte → float, identical to what decoding an 8-bit image gives. */
export const BYTE_TO_FLOAT = Float32Array.from({ length: 256 }, (_, i) => i / 255);

/** The values an image reads back as after being written with 8 bits per channel. */
export function quantiseArray(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = BYTE_TO_FLOAT[toByte(x[i])];
  return out;
}
