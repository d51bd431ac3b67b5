/**
 * Seeded pseudo-random numbers (mulberry32) and small helpers. Only integer
 * arithmetic and basic float ops are used, so the same seed gives the same
 * sequence on every machine.
 */

/** A source of uniform floats in [0, 1). */
export type Rng = () => number;

/** mulberry32 generator; `seed` is taken modulo 2^32. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Mixes numbers into one 32-bit seed (murmur3-style finaliser), so sub-streams
 * (per class, per group, per frame) are decorrelated: hashSeed(seed, classId, k).
 * Non-integers are truncated.
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (Math.trunc(p) >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** Uniform float in [min, max). */
export function randRange(rng: Rng, min: number, max: number): number {
  return min + (max - min) * rng();
}

/** Uniform integer in [min, maxExclusive). */
export function randInt(rng: Rng, min: number, maxExclusive: number): number {
  return min + Math.floor((maxExclusive - min) * rng());
}

/** True with probability p. */
export function randBool(rng: Rng, p = 0.5): boolean {
  return rng() < p;
}

/** Standard normal sample (Box-Muller) scaled to mean/std. */
export function randNormal(rng: Rng, mean = 0, std = 1): number {
  const u = 1 - rng(); // (0, 1], avoids log(0)
  const v = rng();
  return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Uniformly chosen element of a non-empty array. */
export function pick<T>(rng: Rng, items: readonly T[]): T {
  if (items.length === 0) throw new RangeError('pick: empty array');
  return items[Math.floor(rng() * items.length)];
}

/** Fisher-Yates shuffle of `items` (array or typed array) in place; returns the same object. */
export function shuffleInPlace<A extends { length: number; [i: number]: unknown }>(rng: Rng, items: A): A {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
  return items;
}
