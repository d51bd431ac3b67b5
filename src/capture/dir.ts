/**
 * Replays the images of a folder in name order, looped, at a fixed rate. The folder is listed
 * again at every loop, so images dropped into it appear on the next pass. JPEGs that need no
 * resizing are passed through for display.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BaseSource } from './base';
import { decodeToRgb } from './decode';

export interface DirOptions {
  dir: string;
  fps?: number;
  /** Larger images are shrunk to fit this side (default 1280). */
  maxSide?: number;
  name?: string;
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.ppm', '.pgm', '.bmp', '.tif', '.tiff', '.gif']);

export async function listImages(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir);
  return names
    .filter((n) => IMAGE_EXT.has(path.extname(n).toLowerCase()) && !n.startsWith('.'))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    .map((n) => path.join(dir, n));
}

export class DirectorySource extends BaseSource {
  private timer: NodeJS.Timeout | null = null;
  private files: string[] = [];
  private index = 0;
  private running = false;
  /** Frames decoded in the current pass over the folder, and the first failure in it. */
  private passFrames = 0;
  private passError: string | null = null;
  private readonly fps: number;

  constructor(readonly options: DirOptions) {
    super(options.name ?? `dir:${options.dir}`);
    this.fps = Math.max(0.2, Math.min(60, options.fps ?? 5));
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.setStatus('starting');
    this.index = 0;
    this.files = [];
    this.passFrames = 0;
    this.passError = null;
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.running) this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    const t = performance.now();
    try {
      if (this.index >= this.files.length) {
        // A whole pass without one frame: every image is unreadable. Say so, rather than stay
        // 'starting' forever (the supervisor retries, in case good images are dropped in).
        if (this.files.length > 0 && this.passFrames === 0) {
          this.running = false;
          this.setStatus('lost', `no decodable image in ${this.options.dir} (${this.files.length} tried; ${this.passError})`);
          return;
        }
        this.files = await listImages(this.options.dir);
        this.index = 0;
        this.passFrames = 0;
        this.passError = null;
        if (this.files.length === 0) throw new Error(`no images in ${this.options.dir}`);
      }
      const file = this.files[this.index++];
      const bytes = await fsp.readFile(file);
      const img = await decodeToRgb(bytes, this.options.maxSide ?? 1280);
      if (!this.running) return;
      this.passFrames++;
      const isJpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
      this.emitFrame({
        rgb: img.rgb,
        width: img.width,
        height: img.height,
        t,
        decodeMs: performance.now() - t,
        ...(isJpeg && !img.resized ? { jpeg: bytes } : {}),
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT' && this.index === 0) {
        // The folder itself is gone: the source is lost until the supervisor retries.
        this.running = false;
        this.setStatus('lost', `folder not found: ${this.options.dir}`);
        return;
      }
      if (this.files.length === 0) {
        this.running = false;
        this.setStatus('lost', err.message);
        return;
      }
      this.passError ??= `${path.basename(this.files[this.index - 1] ?? '')}: ${err.message.split('\n')[0]}`;
      this.reportError(e); // one unreadable image: skip it
    }
    this.schedule(Math.max(0, 1000 / this.fps - (performance.now() - t)));
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.setStatus('stopped');
  }
}
