/**
 * The live loop, without any HTTP: a (supervised) frame source feeds a one-slot mailbox; one
 * frame at a time goes through the Pipeline; results go to listeners (the socket layer), stats
 * and the GPIO LEDs. Frames arriving while a frame is being processed replace the waiting one,
 * so latency stays bounded whatever the camera rate (dropped frames are counted).
 */
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { tf } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import type { Frame, FrameSource, SourceStatus } from '../capture/types';
import { createSource, CaptureOptions, listCameras, parseSourceSpec, which } from '../capture/factory';
import type { GpioController } from '../gpio';
import { DEFAULT_CONFIG, ServeConfig } from './config';
import type { Logger } from './log';
import { AnalysedFrame, Pipeline, PipelineSettings, FrameResult } from './pipeline';
import type { ImageKey } from './protocol';
import type { LoadedSticker } from './sticker-overlay';
import { PipelineStats, StatsSnapshot, round } from './stats';
import type { SettingsPatch } from './schema';
import { snapshotPng } from './snapshot';
import { writeFileAtomic } from '../util/atomic-file';

export interface DaemonOptions {
  config: ServeConfig;
  classifier: Classifier;
  logger: Logger;
  /** Builds the source for a spec (tests inject one); default: capture/createSource, supervised. */
  sourceFactory?: (spec: string) => FrameSource;
  capture?: CaptureOptions;
  gpio?: GpioController;
  /** What the page may switch to (default: configured source, synthetic, cameras, test pattern). */
  allowedSources?: string[];
}

/** What the socket layer tells the loop each frame: the sticker in use and the images clients draw. */
export interface FrameDemand {
  sticker(): LoadedSticker | null;
  /** Images to encode for this frame: none when nobody watches. */
  images(): Iterable<ImageKey>;
}

export interface Health {
  ok: boolean;
  source: SourceStatus;
  frames: number;
  uptime: number;
  paused: boolean;
}

export interface Metrics extends StatsSnapshot {
  rssMB: number;
  heapMB: number;
  numTensors: number;
  backend: string;
  uptime: number;
  source: SourceStatus;
  paused: boolean;
}

export class Daemon extends EventEmitter {
  readonly pipeline: Pipeline;
  readonly stats = new PipelineStats();
  private src: FrameSource | null = null;
  private spec: string;
  private _settings: PipelineSettings;
  private pending: Frame | null = null;
  private busy = false;
  /** Resolves the drain loop's wait for a frame while an encoding is in flight. */
  private wake: (() => void) | null = null;
  private lastFrame: Frame | null = null;
  private _last: FrameResult | null = null;
  private readonly started = Date.now();
  private lastAttack: PipelineSettings['attack'];
  private running = false;
  private switching: Promise<void> = Promise.resolve();
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | null = null;
  private attackErrorLogged = '';
  private stallLogged = '';
  private demand: FrameDemand = { sticker: () => null, images: () => [] };
  readonly allowed: string[];

  constructor(private readonly opts: DaemonOptions) {
    super();
    const c = opts.config;
    this.spec = c.source;
    this._settings = { attack: c.attack, eps: c.eps, targeted: c.targeted, target: c.target, steps: c.steps, loss: c.loss, roi: c.roi, paused: false };
    this.lastAttack = c.attack === 'none' ? (DEFAULT_CONFIG.attack === 'none' ? 'fgsm' : DEFAULT_CONFIG.attack) : c.attack;
    this.pipeline = new Pipeline(opts.classifier, {
      jpegQuality: c.jpegQuality,
      onAttackError: (m) => {
        if (m !== this.attackErrorLogged) opts.logger.warn('attack.failed', { error: m });
        this.attackErrorLogged = m;
      },
    });
    this.allowed = opts.allowedSources ?? defaultAllowedSources(c);
    if (!this.allowed.includes(c.source)) this.allowed.unshift(c.source);
    opts.gpio?.onPress((k) => {
      if (k === 'short') this.updateSettings({ attack: this._settings.attack === 'none' ? this.lastAttack : 'none' }, 'gpio');
      else void this.saveSnapshot().catch((e: Error) => opts.logger.warn('snapshot.failed', { error: e.message }));
    });
  }

  /** Set by the socket layer (before start). */
  setDemand(d: FrameDemand): void {
    this.demand = d;
  }

  get settings(): PipelineSettings {
    return { ...this._settings, roi: this._settings.roi ? { ...this._settings.roi } : null };
  }

  get last(): FrameResult | null {
    return this._last;
  }

  get sourceSpec(): string {
    return this.spec;
  }

  get source(): FrameSource | null {
    return this.src;
  }

  get sourceStatus(): SourceStatus {
    return this.src?.status ?? { state: 'idle', source: this.spec, at: this.started };
  }

  private makeSource(spec: string): FrameSource {
    if (this.opts.sourceFactory) return this.opts.sourceFactory(spec);
    const c = this.opts.config;
    const { source, note } = createSource(spec, {
      width: c.width,
      height: c.height,
      fps: c.fps,
      ...(c.ffmpegInputArgs.length ? { ffmpegInputArgs: c.ffmpegInputArgs } : {}),
      ...this.opts.capture,
    });
    if (note) this.opts.logger.info('source.auto', { resolved: source.name, reason: note });
    return source;
  }

  private readonly onFrame = (f: Frame): void => {
    if (!this.running) return;
    if (this._settings.paused) return; // frozen on lastFrame
    this.enqueue(f);
  };

  private readonly onStatus = (s: SourceStatus): void => {
    const fields = {
      source: s.source,
      state: s.state,
      ...(s.message ? { message: s.message } : {}),
      ...(s.attempt ? { attempt: s.attempt } : {}),
      ...(s.final ? { final: true } : {}),
    };
    if (s.state === 'lost') this.opts.logger.warn('source.status', fields);
    else this.opts.logger.info('source.status', fields);
    if (s.state === 'lost') this.opts.gpio?.indicate('off');
    this.emit('status', s);
  };

  private readonly onSourceError = (e: Error): void => {
    this.opts.logger.debug('source.error', { error: e.message });
  };

  private attach(src: FrameSource): void {
    src.on('frame', this.onFrame);
    src.on('status', this.onStatus);
    src.on('error', this.onSourceError);
  }

  private detach(src: FrameSource): void {
    src.off('frame', this.onFrame);
    src.off('status', this.onStatus);
    src.off('error', this.onSourceError);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const src = this.makeSource(this.spec);
    this.src = src;
    this.attach(src);
    await src.start();
    this.opts.logger.info('daemon.started', { source: src.name, attack: this._settings.attack, eps: round(this._settings.eps, 4) });
  }

  private enqueue(f: Frame): void {
    if (this.busy) {
      if (this.pending && this.pending !== this.lastFrame) this.stats.dropped++;
      this.pending = f;
      this.wake?.();
      return;
    }
    void this.drain(f);
  }

  private async drain(first: Frame): Promise<void> {
    this.busy = true;
    this.idle = new Promise((r) => {
      this.idleResolve = r;
    });
    let f: Frame | null = first;
    // One frame's images are encoded while the next is analysed: at most one encoding in flight,
    // so results still go out in order.
    let encoding: Promise<void> = Promise.resolve();
    try {
      while (f && this.running) {
        const frame: Frame = f;
        const pickedAt = performance.now();
        const settings = this.settings;
        let analysed: AnalysedFrame | null = null;
        try {
          analysed = await this.pipeline.analyse(frame, settings, { pickedAt, sticker: this.demand.sticker() });
        } catch (e) {
          this.frameFailed(e, frame);
        }
        await encoding;
        if (analysed) {
          const a = analysed;
          encoding = this.pipeline.encode(a, this.demand.images()).then(
            (r) => this.publish(frame, r, settings),
            (e: unknown) => this.frameFailed(e, frame),
          );
        }
        f = this.pending;
        this.pending = null;
        if (!f) {
          // Nothing waiting: until the encoding is done, a frame that arrives is analysed at once.
          const arrived = new Promise<void>((r) => {
            this.wake = r;
          });
          await Promise.race([encoding, arrived]);
          this.wake = null;
          f = this.pending;
          this.pending = null;
        }
      }
      await encoding;
    } finally {
      this.busy = false;
      this.idleResolve?.();
    }
  }

  private publish(f: Frame, r: FrameResult, settings: PipelineSettings): void {
    this.lastFrame = f;
    this._last = r;
    // With the attack off, "fooled" is the virtual sticker's (when one is on): rate and LEDs.
    const fooled = settings.attack !== 'none' ? r.fooled : r.sticker ? r.sticker.fooled : null;
    this.stats.record(r.latency, fooled, performance.now(), { stickerFooled: r.sticker ? r.sticker.fooled : null, stalled: r.stall !== null });
    this.logStall(r.stall);
    this.opts.gpio?.indicate(fooled ? 'fooled' : 'ok');
    this.emit('result', r);
  }

  /** A stalled attack is logged once per reason, not once per frame. */
  private logStall(reason: string | null): void {
    if (reason && reason !== this.stallLogged) this.opts.logger.warn('attack.stalled', { reason });
    this.stallLogged = reason ?? '';
  }

  private frameFailed(e: unknown, f: Frame): void {
    this.opts.logger.error('frame.failed', { error: (e as Error).message.split('\n')[0], seq: f.seq });
  }

  /** Applies a validated patch; when paused the frozen frame is processed again with it. */
  updateSettings(patch: SettingsPatch, by = 'client'): PipelineSettings {
    const s = { ...this._settings, ...patch };
    if (patch.attack && patch.attack !== 'none') this.lastAttack = patch.attack;
    this._settings = s;
    this.opts.logger.info('settings.changed', { by, ...patch, ...(patch.eps !== undefined ? { eps: round(patch.eps, 4) } : {}) });
    this.emit('settings', this.settings);
    if (s.paused && this.lastFrame && this.running) {
      if (this.busy) {
        this.pending = this.lastFrame;
        this.wake?.();
      } else {
        void this.drain(this.lastFrame);
      }
    }
    return this.settings;
  }

  /** Switches to another source (already validated against `allowed`). */
  async switchSource(spec: string): Promise<void> {
    parseSourceSpec(spec); // UserError on a bad spec, before anything stops
    const run = async (): Promise<void> => {
      const old = this.src;
      if (old) {
        this.detach(old);
        await old.stop().catch(() => undefined);
      }
      this.spec = spec;
      this.pending = null;
      const src = this.makeSource(spec);
      this.src = src;
      this.attach(src);
      this.opts.logger.info('source.switch', { source: spec });
      this.emit('status', src.status);
      await src.start();
    };
    this.switching = this.switching.then(run, run);
    return this.switching;
  }

  /** Saves a snapshot PNG into the snapshot folder (GPIO long press). */
  async saveSnapshot(): Promise<string> {
    const r = this._last;
    if (!r) throw new UserError('no frame yet');
    const dir = this.opts.config.snapshotDir;
    const file = path.join(dir, `advsign-${new Date().toISOString().replace(/[:.]/g, '-')}.png`);
    writeFileAtomic(file, await snapshotPng(r));
    this.opts.logger.info('snapshot.saved', { file });
    this.emit('snapshot', file);
    return file;
  }

  health(): Health {
    const source = this.sourceStatus;
    return {
      ok: this.running && source.state === 'running',
      source,
      frames: this.stats.frames,
      uptime: round((Date.now() - this.started) / 1000, 1),
      paused: this._settings.paused,
    };
  }

  metrics(): Metrics {
    const mem = process.memoryUsage();
    return {
      ...this.stats.snapshot(),
      rssMB: round(mem.rss / 2 ** 20, 1),
      heapMB: round(mem.heapUsed / 2 ** 20, 1),
      numTensors: tf.memory().numTensors,
      backend: tf.getBackend(),
      uptime: round((Date.now() - this.started) / 1000, 1),
      source: this.sourceStatus,
      paused: this._settings.paused,
    };
  }

  /** Stops the source and waits for the frame in progress; the classifier is the caller's. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.pending = null;
    await this.switching.catch(() => undefined);
    const src = this.src;
    if (src) {
      this.detach(src);
      await src.stop().catch(() => undefined);
    }
    await this.idle;
    this.opts.gpio?.indicate('off');
    this.opts.logger.info('daemon.stopped', { frames: this.stats.frames });
  }
}

/** Sources offered on the page: the configured ones, the synthetic scene, cameras found, a test pattern. */
export function defaultAllowedSources(c: Pick<ServeConfig, 'source' | 'sources'>): string[] {
  const out = [c.source, 'synthetic', ...c.sources];
  const ff = which('ffmpeg') !== null;
  for (const cam of listCameras()) out.push(ff ? `ffmpeg:${cam}` : `webcam:${cam}`);
  if (ff) out.push('ffmpeg:testsrc');
  return [...new Set(out)];
}
