/** Rolling figures for /metrics and the page: fps, per-stage latency percentiles, fooled rate. */

export const STAGES = ['capture', 'preprocess', 'classify', 'attack', 'encode', 'total'] as const;
export type Stage = (typeof STAGES)[number];
export type Latency = Record<Stage, number>;

/** A fixed-size ring of numbers with percentiles (sorting 300 numbers per request is nothing). */
export class Ring {
  private readonly buf: Float64Array;
  private n = 0;
  private i = 0;

  constructor(size: number) {
    this.buf = new Float64Array(size);
  }

  push(v: number): void {
    this.buf[this.i] = v;
    this.i = (this.i + 1) % this.buf.length;
    if (this.n < this.buf.length) this.n++;
  }

  get count(): number {
    return this.n;
  }

  clear(): void {
    this.n = 0;
    this.i = 0;
  }

  values(): number[] {
    return Array.from(this.buf.subarray(0, this.n));
  }

  percentile(p: number): number {
    if (this.n === 0) return 0;
    const s = this.values().sort((a, b) => a - b);
    const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
    return s[idx];
  }

  mean(): number {
    if (this.n === 0) return 0;
    let sum = 0;
    for (let k = 0; k < this.n; k++) sum += this.buf[k];
    return sum / this.n;
  }
}

export interface StatsSnapshot {
  fps: number;
  frames: number;
  dropped: number;
  /** Share of recent frames fooled: by the attack when one is on, else by the virtual sticker. */
  fooledRate: number;
  /** Share of recent frames the virtual sticker fooled (null: no sticker lately). */
  stickerFooledRate: number | null;
  /** Frames where an attack was on and changed nothing (each has a stated reason). */
  stalledFrames: number;
  latency: Record<Stage, { p50: number; p95: number; mean: number }>;
}

export class PipelineStats {
  private readonly lat = new Map<Stage, Ring>();
  private readonly times: number[] = [];
  private readonly fooled: Ring;
  private readonly stickerFooled: Ring;
  frames = 0;
  dropped = 0;
  stalled = 0;

  constructor(
    private readonly window = 300,
    private readonly fpsWindowMs = 2000,
  ) {
    for (const s of STAGES) this.lat.set(s, new Ring(window));
    this.fooled = new Ring(Math.min(window, 90));
    this.stickerFooled = new Ring(Math.min(window, 90));
  }

  /** `fooled`/`stickerFooled`: null when there was no attack / no sticker on that frame. */
  record(l: Latency, fooled: boolean | null, now = performance.now(), extra: { stickerFooled?: boolean | null; stalled?: boolean } = {}): void {
    this.frames++;
    for (const s of STAGES) this.lat.get(s)!.push(l[s]);
    if (fooled !== null) this.fooled.push(fooled ? 1 : 0);
    if (extra.stickerFooled != null) this.stickerFooled.push(extra.stickerFooled ? 1 : 0);
    if (extra.stalled) this.stalled++;
    this.times.push(now);
    while (this.times.length > 0 && now - this.times[0] > this.fpsWindowMs) this.times.shift();
  }

  /** A new sticker starts its own fooled rate. */
  resetSticker(): void {
    this.stickerFooled.clear();
  }

  fps(now = performance.now()): number {
    while (this.times.length > 0 && now - this.times[0] > this.fpsWindowMs) this.times.shift();
    if (this.times.length < 2) return 0;
    const span = Math.max(now - this.times[0], this.times[this.times.length - 1] - this.times[0]);
    return span > 0 ? ((this.times.length - 1) * 1000) / span : 0;
  }

  snapshot(): StatsSnapshot {
    const latency = {} as StatsSnapshot['latency'];
    for (const s of STAGES) {
      const r = this.lat.get(s)!;
      latency[s] = { p50: round(r.percentile(50)), p95: round(r.percentile(95)), mean: round(r.mean()) };
    }
    return {
      fps: round(this.fps()),
      frames: this.frames,
      dropped: this.dropped,
      fooledRate: round(this.fooled.mean(), 3),
      stickerFooledRate: this.stickerFooled.count ? round(this.stickerFooled.mean(), 3) : null,
      stalledFrames: this.stalled,
      latency,
    };
  }

  /** All total latencies held (the bench reads them). */
  totals(): number[] {
    return this.lat.get('total')!.values();
  }
}

export function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
