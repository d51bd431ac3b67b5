/** Backgrounds (R x R x 3 floats) behind the sign: seeded, procedurally generated. */
import { Rng, createRng, hashSeed, randRange, randInt, pick } from '../random';
import { Rgb } from './colours';
import { PI } from './glyphs';
import { SceneParams, Work, mutedColor } from './scene';

let lattice = new Float64Array(64);

/** Adds amp * smooth value noise in [0, 1] on a (cells+1)^2 random lattice to `out`. */
function valueNoise(rng: Rng, R: number, cells: number, out: Float32Array, amp: number): void {
  const len = (cells + 1) * (cells + 1);
  if (lattice.length < len) lattice = new Float64Array(len);
  const g = lattice;
  for (let i = 0; i < len; i++) g[i] = rng();
  const ox = rng();
  const oy = rng();
  for (let y = 0; y < R; y++) {
    const gy = ((y + 0.5) / R) * (cells - 1) + oy;
    const iy = Math.floor(gy);
    let fy = gy - iy;
    fy = fy * fy * (3 - 2 * fy);
    for (let x = 0; x < R; x++) {
      const gx = ((x + 0.5) / R) * (cells - 1) + ox;
      const ix = Math.floor(gx);
      let fx = gx - ix;
      fx = fx * fx * (3 - 2 * fx);
      const i0 = iy * (cells + 1) + ix;
      const top = g[i0] + (g[i0 + 1] - g[i0]) * fx;
      const bot = g[i0 + cells + 1] + (g[i0 + cells + 2] - g[i0 + cells + 1]) * fx;
      out[y * R + x] += amp * (top + (bot - top) * fy);
    }
  }
}

/** Fractal value noise in [0, 1] written into `out` (R * R). */
function fractal(rng: Rng, R: number, cells: number, octaves: number, out: Float32Array): Float32Array {
  out.fill(0);
  let amp = 1;
  let total = 0;
  for (let o = 0; o < octaves; o++) {
    valueNoise(rng, R, cells << o, out, amp);
    total += amp;
    amp *= 0.5;
  }
  for (let i = 0; i < R * R; i++) out[i] /= total;
  return out;
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.max(0, Math.min(1, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

function vary(rng: Rng, c: Rgb, d: number): Rgb {
  return c.map((v) => Math.min(1, Math.max(0, v + randRange(rng, -d, d)))) as Rgb;
}

export function renderBackground(p: SceneParams, R: number, out: Float32Array, w: Work): void {
  const rng = createRng(p.backgroundSeed);
  const set = (i: number, r: number, g: number, b: number): void => {
    out[3 * i] = r;
    out[3 * i + 1] = g;
    out[3 * i + 2] = b;
  };
  switch (p.background) {
    case 'plain':
      for (let i = 0; i < R * R; i++) set(i, p.plainColor[0], p.plainColor[1], p.plainColor[2]);
      return;
    case 'sky': {
      const top: Rgb = [randRange(rng, 0.3, 0.55), randRange(rng, 0.5, 0.72), randRange(rng, 0.75, 0.95)];
      const haze = randRange(rng, 0.2, 0.8);
      const bottom: Rgb = [top[0] + (0.86 - top[0]) * haze, top[1] + (0.88 - top[1]) * haze, top[2] + (0.92 - top[2]) * haze];
      const clouds = rng() < 0.6 ? fractal(rng, R, 3, 3, w.noiseA) : null;
      const thr = randRange(rng, 0.35, 0.6);
      const cloud = randRange(rng, 0.75, 0.97);
      const tilt = randRange(rng, -0.3, 0.3);
      for (let y = 0; y < R; y++) {
        for (let x = 0; x < R; x++) {
          const t = Math.max(0, Math.min(1, (y + tilt * (x - R / 2)) / R));
          let r = top[0] + (bottom[0] - top[0]) * t;
          let g = top[1] + (bottom[1] - top[1]) * t;
          let b = top[2] + (bottom[2] - top[2]) * t;
          if (clouds) {
            const c = smoothstep(thr, thr + 0.25, clouds[y * R + x]);
            r += (cloud - r) * c;
            g += (cloud - g) * c;
            b += (cloud * 1.02 - b) * c;
          }
          set(y * R + x, r, g, b);
        }
      }
      return;
    }
    case 'foliage': {
      const dark: Rgb = [randRange(rng, 0.03, 0.12), randRange(rng, 0.08, 0.2), randRange(rng, 0.03, 0.1)];
      const lightC: Rgb = [randRange(rng, 0.2, 0.45), randRange(rng, 0.35, 0.6), randRange(rng, 0.08, 0.3)];
      const n = fractal(rng, R, 4, 4, w.noiseA);
      const gaps = rng() < 0.4 ? fractal(rng, R, 6, 2, w.noiseB) : null;
      const sky: Rgb = [0.75, 0.82, 0.9];
      for (let i = 0; i < R * R; i++) {
        const t = smoothstep(0.25, 0.75, n[i]);
        let r = dark[0] + (lightC[0] - dark[0]) * t;
        let g = dark[1] + (lightC[1] - dark[1]) * t;
        let b = dark[2] + (lightC[2] - dark[2]) * t;
        if (gaps) {
          const s = smoothstep(0.68, 0.78, gaps[i]);
          r += (sky[0] - r) * s;
          g += (sky[1] - g) * s;
          b += (sky[2] - b) * s;
        }
        set(i, r, g, b);
      }
      return;
    }
    case 'building': {
      const wall = vary(
        rng,
        pick(rng, [
          [0.75, 0.68, 0.55],
          [0.55, 0.55, 0.55],
          [0.6, 0.3, 0.22],
          [0.85, 0.85, 0.82],
          [0.3, 0.28, 0.27],
        ] as Rgb[]),
        0.08,
      );
      const dirt = fractal(rng, R, 4, 2, w.noiseA);
      const bricks = rng() < 0.5;
      const cellH = R * randRange(rng, bricks ? 0.04 : 0.25, bricks ? 0.09 : 0.45);
      const cellW = cellH * randRange(rng, bricks ? 2 : 0.8, bricks ? 2.6 : 1.4);
      const ox = rng() * cellW;
      const oy = rng() * cellH;
      const mortar = rng() < 0.5 ? 1.25 : 0.7;
      const glass: Rgb = vary(rng, [0.12, 0.14, 0.2], 0.06);
      for (let y = 0; y < R; y++) {
        const fy = (y + oy) / cellH;
        const row = Math.floor(fy);
        const vy = fy - row;
        for (let x = 0; x < R; x++) {
          const fx = (x + ox) / cellW + (bricks && row % 2 ? 0.5 : 0);
          const col = Math.floor(fx);
          const vx = fx - col;
          const k = 0.85 + 0.3 * ((hashSeed(p.backgroundSeed, row, col) & 1023) / 1023);
          const d = 0.85 + 0.3 * dirt[y * R + x];
          let r: number, g: number, b: number;
          if (bricks) {
            const joint = vy * cellH < 1 || vx * cellW < 1;
            const m = joint ? mortar : k;
            r = wall[0] * m;
            g = wall[1] * m;
            b = wall[2] * m;
          } else if (vx > 0.25 && vx < 0.75 && vy > 0.2 && vy < 0.8) {
            r = glass[0] * k * 1.2;
            g = glass[1] * k * 1.2;
            b = glass[2] * k * 1.2;
          } else {
            r = wall[0];
            g = wall[1];
            b = wall[2];
          }
          set(y * R + x, r * d, g * d, b * d);
        }
      }
      return;
    }
    case 'gradient': {
      const c1 = mutedColor(rng);
      const c2 = mutedColor(rng);
      const a = randRange(rng, 0, 2 * PI);
      const ca = Math.cos(a);
      const sa = Math.sin(a);
      for (let y = 0; y < R; y++) {
        for (let x = 0; x < R; x++) {
          const t = Math.max(0, Math.min(1, 0.5 + (((x + 0.5) / R - 0.5) * ca + ((y + 0.5) / R - 0.5) * sa)));
          set(y * R + x, c1[0] + (c2[0] - c1[0]) * t, c1[1] + (c2[1] - c1[1]) * t, c1[2] + (c2[2] - c1[2]) * t);
        }
      }
      return;
    }
    case 'blobs': {
      const base = mutedColor(rng);
      for (let i = 0; i < R * R; i++) set(i, base[0], base[1], base[2]);
      const count = randInt(rng, 5, 15);
      for (let k = 0; k < count; k++) {
        const c = mutedColor(rng);
        const cx = rng() * R;
        const cy = rng() * R;
        const rx = R * randRange(rng, 0.05, 0.4);
        const ry = rx * randRange(rng, 0.4, 1.6);
        const alpha = randRange(rng, 0.5, 1);
        const x0 = Math.max(0, Math.floor(cx - rx));
        const x1 = Math.min(R - 1, Math.ceil(cx + rx));
        const y0 = Math.max(0, Math.floor(cy - ry));
        const y1 = Math.min(R - 1, Math.ceil(cy + ry));
        for (let y = y0; y <= y1; y++) {
          for (let x = x0; x <= x1; x++) {
            const ex = (x + 0.5 - cx) / rx;
            const ey = (y + 0.5 - cy) / ry;
            const m = alpha * (1 - smoothstep(0.6, 1, Math.sqrt(ex * ex + ey * ey)));
            if (m <= 0) continue;
            const i = y * R + x;
            for (let ch = 0; ch < 3; ch++) out[3 * i + ch] += (c[ch] - out[3 * i + ch]) * m;
          }
        }
      }
      return;
    }
  }
}
