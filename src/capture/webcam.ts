/**
 * Still-by-still capture with node-webcam (fswebcam on Linux). Slower than the ffmpeg stream
 * (each shot opens the device), but works with cameras and drivers ffmpeg's V4L2 input dislikes.
 * node-webcam builds a shell command line, so every value passed to it is validated first.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BaseSource } from './base';
import { decodeToRgb } from './decode';

export interface WebcamOptions {
  /** V4L2 device (default: the system default camera). */
  device?: string;
  width?: number;
  height?: number;
  /** Upper bound on the shot rate. */
  fps?: number;
  name?: string;
}

interface NodeWebcamInstance {
  capture(location: string, cb: (err: Error | null, data: Buffer | string) => void): void;
}
interface NodeWebcamModule {
  create(opts: Record<string, unknown>): NodeWebcamInstance;
}

export class WebcamSource extends BaseSource {
  private cam: NodeWebcamInstance | null = null;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private tmpDir: string | null = null;
  private failures = 0;
  /** The fswebcam run in progress: stop() waits for it before removing the folder it writes into. */
  private shooting: Promise<void> | null = null;

  constructor(readonly options: WebcamOptions = {}) {
    super(options.name ?? (options.device ? `webcam:${options.device}` : 'webcam'));
    if (options.device !== undefined && !/^\/dev\/video\d+$/.test(options.device)) {
      throw new Error(`webcam device must look like /dev/videoN, got '${options.device}'`);
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    const w = this.options.width ?? 640;
    const h = this.options.height ?? 480;
    if (!Number.isInteger(w) || !Number.isInteger(h) || w <= 0 || h <= 0) throw new Error(`bad webcam size ${w}x${h}`);
    this.setStatus('starting');
    let mod: NodeWebcamModule;
    try {
      mod = require('node-webcam') as NodeWebcamModule;
    } catch (e) {
      this.setStatus('lost', `node-webcam unavailable: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-webcam-'));
    this.cam = mod.create({
      width: w,
      height: h,
      quality: 90,
      output: 'jpeg',
      delay: 0,
      frames: 1,
      skip: 1,
      saveShots: false,
      device: this.options.device ?? false,
      callbackReturn: 'buffer',
      verbose: false,
    });
    this.running = true;
    this.failures = 0;
    this.shoot();
  }

  private shoot(): void {
    if (!this.running || !this.cam || !this.tmpDir) return;
    const t = performance.now();
    const location = path.join(this.tmpDir, 'shot');
    let done = (): void => undefined;
    this.shooting = new Promise((r) => {
      done = r;
    });
    this.cam.capture(location, (err, data) => {
      done();
      void (async () => {
        if (!this.running) return;
        try {
          if (err) throw err;
          const bytes = Buffer.isBuffer(data) ? data : await fs.promises.readFile(`${location}.jpg`);
          const tDecode = performance.now();
          const img = await decodeToRgb(bytes);
          if (!this.running) return;
          this.failures = 0;
          this.emitFrame({ rgb: img.rgb, width: img.width, height: img.height, t: tDecode, jpeg: bytes, decodeMs: performance.now() - t });
        } catch (e) {
          this.failures++;
          const msg = (e as Error).message.split('\n')[0];
          this.reportError(e);
          if (this.failures >= 3) {
            // Three failed shots in a row: the camera is gone (or fswebcam is missing).
            this.running = false;
            this.setStatus('lost', /not found|ENOENT/i.test(msg) ? 'fswebcam not found (install fswebcam)' : `webcam: ${msg}`);
            return;
          }
        }
        const minPeriod = 1000 / Math.max(0.2, Math.min(30, this.options.fps ?? 10));
        this.timer = setTimeout(() => this.shoot(), Math.max(0, minPeriod - (performance.now() - t)));
      })();
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // A shot still being written would land in the folder while it is removed (ENOTEMPTY).
    if (this.shooting) await Promise.race([this.shooting, new Promise((r) => setTimeout(r, 3000).unref())]);
    this.shooting = null;
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true, maxRetries: 3 });
    this.tmpDir = null;
    this.setStatus('stopped');
  }
}
