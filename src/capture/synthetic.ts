/**
 * A synthetic street scene for demos without a camera: one of the renderer's signs on a pole in
 * front of a generated background, drifting, approaching, turning (yaw), rolling and under
 * slowly changing light, cycling through classes. Frames carry the true class, so the page can
 * show whether the clean prediction is right. Deterministic for a given seed and time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { createCanvas } from '@napi-rs/canvas';
import { BaseSource } from './base';
import { renderSignRGBA, SignRGBA } from '../data/synthetic';
import { NUM_CLASSES } from '../data/classes';
import { createRng, randRange } from '../data/random';

export interface SyntheticOptions {
  width?: number;
  height?: number;
  fps?: number;
  /** Class ids shown in turn (default: familiar signs first, then the rest). */
  classes?: number[];
  secondsPerClass?: number;
  seed?: number;
  /** Sign side as a fraction of the frame height (default 0.58: fills ~80 % of the default ROI, like a GTSRB crop). */
  signSize?: number;
  /** Amount of motion, 0 (still) … 1 (default 0.6: visible, yet the sign stays inside the default ROI). */
  motion?: number;
  /** Render in a worker thread (default true): the live loop's thread keeps to the model. */
  worker?: boolean;
}

/** Stop, 30, yield, no entry, priority, road work, turn right, … then every other class. */
const FIRST = [14, 1, 13, 17, 12, 25, 33, 2, 38, 11, 18, 28];
export const DEFAULT_SCENE_CLASSES: readonly number[] = [...FIRST, ...Array.from({ length: NUM_CLASSES }, (_, i) => i).filter((i) => !FIRST.includes(i))];

const TEXTURE = 192;

export interface ScenePose {
  classId: number;
  cx: number;
  cy: number;
  size: number;
  yaw: number;
  roll: number;
  light: number;
  warm: number;
}

export class SyntheticScene {
  readonly width: number;
  readonly height: number;
  private readonly bg: Buffer;
  private readonly textures = new Map<number, SignRGBA>();
  private readonly classes: number[];
  private readonly spc: number;
  private readonly signSize: number;
  private readonly motion: number;

  constructor(opts: SyntheticOptions = {}) {
    this.width = opts.width ?? 640;
    this.height = opts.height ?? 480;
    this.classes = (opts.classes && opts.classes.length ? opts.classes : [...DEFAULT_SCENE_CLASSES]).slice();
    this.spc = opts.secondsPerClass ?? 4;
    this.signSize = opts.signSize ?? 0.58;
    this.motion = opts.motion ?? 0.6;
    this.bg = background(this.width, this.height, opts.seed ?? 1);
  }

  pose(seconds: number): ScenePose {
    const H = this.height;
    const m = this.motion;
    const k = Math.floor(seconds / this.spc);
    const s = (f: number, ph = 0) => Math.sin(2 * Math.PI * f * seconds + ph);
    return {
      classId: this.classes[((k % this.classes.length) + this.classes.length) % this.classes.length],
      cx: this.width / 2 + m * 0.07 * H * s(0.13),
      cy: H / 2 + m * 0.04 * H * s(0.21, 1),
      size: H * this.signSize * (1 + m * 0.1 * s(0.07, 2)),
      yaw: m * 0.6 * s(0.09, 0.5),
      roll: m * 0.1 * s(0.05, 2.5),
      light: 1 + m * (0.25 * s(0.04, 4) - 0.08),
      warm: m * 0.08 * s(0.03),
    };
  }

  private texture(classId: number): SignRGBA {
    let t = this.textures.get(classId);
    if (!t) {
      if (this.textures.size >= 6) this.textures.delete(this.textures.keys().next().value as number);
      t = renderSignRGBA(classId, TEXTURE, { margin: 0.02 });
      this.textures.set(classId, t);
    }
    return t;
  }

  /** Renders the scene at `seconds` into RGB bytes. */
  render(seconds: number): { rgb: Buffer; pose: ScenePose } {
    const p = this.pose(seconds);
    const W = this.width;
    const H = this.height;
    const out = Buffer.from(this.bg);
    // Pole under the sign (straight down, it does not roll).
    const poleW = Math.max(2, Math.round(H * 0.025));
    const px0 = Math.round(p.cx - poleW / 2);
    for (let y = Math.max(0, Math.round(p.cy)); y < H; y++) {
      for (let x = Math.max(0, px0); x < Math.min(W, px0 + poleW); x++) {
        const o = (y * W + x) * 3;
        const shade = 120 + Math.round((40 * (x - px0)) / poleW);
        out[o] = shade;
        out[o + 1] = shade;
        out[o + 2] = shade + 6;
      }
    }
    this.drawSign(out, p);
    // Lighting over the whole scene: a per-channel lookup table, cheap for every pixel.
    const lut = [0, 1, 2].map((c) => {
      const gain = p.light * (c === 0 ? 1 + p.warm : c === 2 ? 1 - p.warm : 1);
      const t = new Uint8Array(256);
      for (let v = 0; v < 256; v++) t[v] = Math.max(0, Math.min(255, Math.round(v * gain)));
      return t;
    });
    const [l0, l1, l2] = lut;
    for (let i = 0; i < out.length; i += 3) {
      out[i] = l0[out[i]];
      out[i + 1] = l1[out[i + 1]];
      out[i + 2] = l2[out[i + 2]];
    }
    return { rgb: out, pose: p };
  }

  /** Inverse-maps every pixel of the sign's bounding box into the texture (bilinear), alpha-blends. */
  private drawSign(out: Buffer, p: ScenePose): void {
    const tex = this.texture(p.classId);
    const T = tex.size;
    const W = this.width;
    const H = this.height;
    const half = p.size / 2;
    const sx = half * Math.max(0.2, Math.cos(p.yaw));
    const sy = half;
    const cr = Math.cos(p.roll);
    const sr = Math.sin(p.roll);
    const r = Math.hypot(sx, sy) + 1;
    const x0 = Math.max(0, Math.floor(p.cx - r));
    const x1 = Math.min(W - 1, Math.ceil(p.cx + r));
    const y0 = Math.max(0, Math.floor(p.cy - r));
    const y1 = Math.min(H - 1, Math.ceil(p.cy + r));
    const rgba = tex.rgba;
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - p.cy;
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - p.cx;
        // Undo the roll, then the scale: (u, v) in [-1, 1] over the texture.
        const u = (cr * dx + sr * dy) / sx;
        const v = (-sr * dx + cr * dy) / sy;
        if (u <= -1 || u >= 1 || v <= -1 || v >= 1) continue;
        const fx = ((u + 1) / 2) * T - 0.5;
        const fy = ((v + 1) / 2) * T - 0.5;
        const ix = Math.max(0, Math.min(T - 2, Math.floor(fx)));
        const iy = Math.max(0, Math.min(T - 2, Math.floor(fy)));
        const ax = Math.max(0, Math.min(1, fx - ix));
        const ay = Math.max(0, Math.min(1, fy - iy));
        const o00 = (iy * T + ix) * 4;
        const o10 = o00 + 4;
        const o01 = o00 + T * 4;
        const o11 = o01 + 4;
        const w00 = (1 - ax) * (1 - ay);
        const w10 = ax * (1 - ay);
        const w01 = (1 - ax) * ay;
        const w11 = ax * ay;
        const a = rgba[o00 + 3] * w00 + rgba[o10 + 3] * w10 + rgba[o01 + 3] * w01 + rgba[o11 + 3] * w11;
        if (a <= 0.002) continue;
        const o = (y * W + x) * 3;
        for (let c = 0; c < 3; c++) {
          // Premultiplied interpolation keeps antialiased edges free of dark fringes.
          const pm =
            rgba[o00 + c] * rgba[o00 + 3] * w00 +
            rgba[o10 + c] * rgba[o10 + 3] * w10 +
            rgba[o01 + c] * rgba[o01 + 3] * w01 +
            rgba[o11 + c] * rgba[o11 + 3] * w11;
          const v = pm * 255 + out[o + c] * (1 - a);
          out[o + c] = v >= 255 ? 255 : v > 0 ? v | 0 : 0;
        }
      }
    }
  }
}

/** Sky, a row of buildings, trees and a road: drawn once with canvas. */
function background(W: number, H: number, seed: number): Buffer {
  const rng = createRng(seed);
  const canvas = createCanvas(W, H);
  const ctx = canvas.getContext('2d');
  const horizon = H * 0.62;
  const sky = ctx.createLinearGradient(0, 0, 0, horizon);
  sky.addColorStop(0, '#6f9fd8');
  sky.addColorStop(1, '#d4e2ef');
  ctx.fillStyle = sky;
  ctx.fillRect(0, 0, W, horizon);
  let x = -10;
  while (x < W) {
    const bw = randRange(rng, 0.08, 0.2) * W;
    const bh = randRange(rng, 0.15, 0.4) * H;
    const g = Math.round(randRange(rng, 120, 190));
    const warm = Math.round(randRange(rng, -15, 25));
    ctx.fillStyle = `rgb(${g + warm},${g},${g - warm})`;
    ctx.fillRect(x, horizon - bh, bw, bh);
    ctx.fillStyle = `rgba(40,55,75,0.55)`;
    for (let wy = horizon - bh + 8; wy < horizon - 14; wy += 18) {
      for (let wx = x + 6; wx < x + bw - 10; wx += 14) ctx.fillRect(wx, wy, 7, 9);
    }
    x += bw + randRange(rng, 0, 0.03) * W;
  }
  for (let i = 0; i < 7; i++) {
    const tx = randRange(rng, 0, W);
    const tr = randRange(rng, 0.04, 0.08) * H;
    ctx.fillStyle = '#5b4a3a';
    ctx.fillRect(tx - 3, horizon - tr, 6, tr);
    ctx.fillStyle = `rgb(${Math.round(randRange(rng, 50, 80))},${Math.round(randRange(rng, 105, 140))},${Math.round(randRange(rng, 50, 70))})`;
    ctx.beginPath();
    ctx.arc(tx, horizon - tr * 1.3, tr, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.fillStyle = '#7b8a5a';
  ctx.fillRect(0, horizon, W, H - horizon);
  ctx.fillStyle = '#5d5f63';
  ctx.beginPath();
  ctx.moveTo(W * 0.42, horizon);
  ctx.lineTo(W * 0.58, horizon);
  ctx.lineTo(W * 1.1, H);
  ctx.lineTo(-W * 0.1, H);
  ctx.closePath();
  ctx.fill();
  ctx.strokeStyle = '#e8e4d0';
  ctx.lineWidth = 3;
  ctx.setLineDash([18, 22]);
  ctx.beginPath();
  ctx.moveTo(W / 2, horizon);
  ctx.lineTo(W / 2, H);
  ctx.stroke();
  const data = ctx.getImageData(0, 0, W, H).data;
  const rgb = Buffer.allocUnsafe(W * H * 3);
  for (let i = 0, o = 0; i < data.length; i += 4, o += 3) {
    rgb[o] = data[i];
    rgb[o + 1] = data[i + 1];
    rgb[o + 2] = data[i + 2];
  }
  return rgb;
}

/** The compiled worker script (absent when running from TypeScript sources). */
function workerScript(): string | null {
  const f = path.join(__dirname, 'synthetic-worker.js');
  return fs.existsSync(f) ? f : null;
}

/**
 * The scene as a frame source, paced by a timer at `fps`. Rendering runs in a worker thread when
 * it can (else inline); a tick that finds the previous frame still rendering is skipped, so a
 * slow board gets fewer frames, never a queue.
 */
export class SyntheticSource extends BaseSource {
  private scene: SyntheticScene | null = null;
  private worker: Worker | null = null;
  private rendering = false;
  private timer: NodeJS.Timeout | null = null;
  private t0 = 0;
  private readonly fps: number;

  constructor(
    readonly options: SyntheticOptions = {},
    name = 'synthetic',
  ) {
    super(name);
    this.fps = Math.max(0.5, Math.min(60, options.fps ?? 15));
  }

  private startWorker(): void {
    const script = this.options.worker === false ? null : workerScript();
    if (!script) return;
    const { worker: _w, ...opts } = this.options;
    const w = new Worker(script, { workerData: opts });
    w.on('error', (e) => {
      // Rendering goes on inline: the demo must not stop because a thread could not start.
      this.reportError(e);
      if (this.worker === w) this.worker = null;
      this.rendering = false;
    });
    w.unref();
    this.worker = w;
  }

  private renderInline(seconds: number, t: number): void {
    this.scene ??= new SyntheticScene(this.options);
    const { rgb, pose } = this.scene.render(seconds);
    this.emitFrame({ rgb, width: this.scene.width, height: this.scene.height, t, decodeMs: performance.now() - t, label: pose.classId });
  }

  private renderInWorker(w: Worker, seconds: number, t: number): void {
    this.rendering = true;
    w.once('message', (m: { rgb: Uint8Array; classId: number }) => {
      this.rendering = false;
      if (!this.timer) return; // stopped meanwhile
      const rgb = Buffer.from(m.rgb.buffer, m.rgb.byteOffset, m.rgb.byteLength);
      this.emitFrame({ rgb, width: this.options.width ?? 640, height: this.options.height ?? 480, t, decodeMs: performance.now() - t, label: m.classId });
    });
    w.postMessage({ seconds });
  }

  async start(): Promise<void> {
    if (this.timer) return;
    this.setStatus('starting');
    if (!this.worker) this.startWorker();
    this.t0 = performance.now();
    const period = 1000 / this.fps;
    let next = performance.now();
    const tick = (): void => {
      const t = performance.now();
      const seconds = (t - this.t0) / 1000;
      if (this.worker) {
        if (!this.rendering) this.renderInWorker(this.worker, seconds, t);
        else this.dropped++;
      } else {
        this.renderInline(seconds, t);
      }
      // Drift-free pacing; if rendering fell behind, skip ahead rather than bursting.
      next = Math.max(next + period, performance.now());
      this.timer = setTimeout(tick, Math.max(0, next - performance.now()));
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.rendering = false;
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate().catch(() => undefined);
    this.setStatus('stopped');
  }
}
