/**
 * Keeps a source alive: when it reports 'lost' (ffmpeg killed, camera unplugged, folder gone) or
 * stops delivering frames for `stallMs` (a V4L2 read can hang without an exit), the supervisor
 * stops it, waits with exponential backoff, and starts a fresh one from the factory. The
 * supervisor itself is one stable FrameSource, so the daemon never re-subscribes.
 */
import { BaseSource } from './base';
import type { Frame, FrameSource, SourceStatus } from './types';

export interface SupervisorOptions {
  /** First retry delay, doubled on each failure up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** No frame for this long while running counts as lost (0: off). */
  stallMs?: number;
}

export class SupervisedSource extends BaseSource {
  private inner: FrameSource | null = null;
  private active = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  private lastFrameAt = 0;
  /** Number of restarts since start(). */
  restarts = 0;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly stallMs: number;

  constructor(
    private readonly factory: () => FrameSource,
    name: string,
    opts: SupervisorOptions = {},
  ) {
    super(name);
    this.backoffMs = opts.backoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    this.stallMs = opts.stallMs ?? 5_000;
  }

  /** The source currently running (for tests and diagnostics). */
  get current(): FrameSource | null {
    return this.inner;
  }

  private readonly onFrame = (f: Frame): void => {
    this.lastFrameAt = performance.now();
    if (this.attempt > 0) this.attempt = 0; // a frame after a retry: recovered
    this.emitFrame(f);
  };

  private readonly onStatus = (s: SourceStatus): void => {
    if (!this.active) return;
    if (s.final) this.giveUp(s.message ?? 'source ended');
    else if (s.state === 'lost' || s.state === 'stopped') this.lose(s.message ?? 'source stopped');
    else if (s.state === 'starting' && this.attempt > 0) this.setStatus('retrying', s.message, this.attempt);
    else if (s.state === 'starting') this.setStatus('starting', s.message);
    // 'running' is announced by emitFrame on the first frame.
  };

  private readonly onError = (e: Error): void => {
    this.reportError(e);
  };

  async start(): Promise<void> {
    if (this.active) return;
    this.active = true;
    this.attempt = 0;
    this.restarts = 0;
    await this.launch();
    if (this.stallMs > 0) {
      this.stallTimer = setInterval(
        () => {
          if (this.active && this.status.state === 'running' && performance.now() - this.lastFrameAt > this.stallMs) {
            this.lose(`no frame for ${(this.stallMs / 1000).toFixed(1)} s`);
          }
        },
        Math.min(1000, this.stallMs / 2),
      );
    }
  }

  private async launch(): Promise<void> {
    let src: FrameSource;
    try {
      src = this.factory();
    } catch (e) {
      this.lose((e as Error).message);
      return;
    }
    this.inner = src;
    src.on('frame', this.onFrame);
    src.on('status', this.onStatus);
    src.on('error', this.onError);
    this.lastFrameAt = performance.now();
    try {
      await src.start();
    } catch (e) {
      this.lose((e as Error).message);
      return;
    }
    // A source may report 'lost' synchronously inside start() (file not found).
    if (src.status.state === 'lost') this.lose(src.status.message ?? 'lost');
  }

  private detach(): FrameSource | null {
    const src = this.inner;
    this.inner = null;
    if (src) {
      src.off('frame', this.onFrame);
      src.off('status', this.onStatus);
      src.off('error', this.onError);
    }
    return src;
  }

  private lose(message: string): void {
    if (!this.active || this.retryTimer) return;
    const src = this.detach();
    this.attempt++;
    this.setStatus('lost', message, this.attempt);
    const delay = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (this.attempt - 1));
    this.retryTimer = setTimeout(() => {
      void (async () => {
        await src?.stop().catch(() => undefined);
        this.retryTimer = null;
        if (!this.active) return;
        this.restarts++;
        this.setStatus('retrying', `retry ${this.attempt} after ${message}`, this.attempt);
        await this.launch();
      })();
    }, delay);
    // Stop the dead source now (kills a hung ffmpeg); the retry awaits the same promise.
    void src?.stop().catch(() => undefined);
  }

  /** A source that cannot come back: no retries, and the final status passes on. */
  private giveUp(message: string): void {
    this.active = false;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    const src = this.detach();
    void src?.stop().catch(() => undefined);
    this.setStatus('lost', message, undefined, true);
  }

  async stop(): Promise<void> {
    this.active = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.retryTimer = null;
    this.stallTimer = null;
    const src = this.detach();
    if (src) await src.stop().catch(() => undefined);
    this.setStatus('stopped');
  }
}
