/**
 * Streaming capture through ffmpeg: a V4L2 camera, a video file (looped, at its own rate), an
 * RTSP/HTTP stream, a lavfi test pattern, or stdin (rpicam-vid / libcamera-vid / GStreamer
 * piped in). ffmpeg re-encodes whatever it reads to MJPEG on stdout; the MjpegSplitter cuts the
 * stream into JPEGs at camera rate and sharp decodes them. Decoding is single-flight with
 * latest-wins: if the decoder is busy the newest JPEG replaces the waiting one, so a slow
 * consumer never builds a queue.
 */
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { BaseSource } from './base';
import { decodeToRgb } from './decode';
import { MjpegSplitter } from './mjpeg';
import { trackChild, untrackChild } from './children';

export interface FfmpegOptions {
  /** What ffmpeg reads: 'testsrc' (or any lavfi graph as 'lavfi:…'), '/dev/video0', a file, a URL, or '-' for stdin. */
  input: string;
  /** Output size (and capture size for V4L2 and test patterns). */
  width?: number;
  height?: number;
  fps?: number;
  /** Loop a file forever (video replay). Default true for files. */
  loop?: boolean;
  /** MJPEG quality, ffmpeg -q:v 2 (best) … 31. */
  quality?: number;
  ffmpegPath?: string;
  /** Extra arguments placed before -i (e.g. ['-input_format', 'mjpeg']). */
  inputArgs?: string[];
  /** Stream fed to ffmpeg's stdin when input is '-' (default process.stdin). */
  stdin?: NodeJS.ReadableStream;
  /** Spec name shown in status (default 'ffmpeg:<input>'). */
  name?: string;
}

export type FfmpegInputKind = 'lavfi' | 'v4l2' | 'rtsp' | 'url' | 'stdin' | 'file';

const LAVFI_SOURCES = new Set(['testsrc', 'testsrc2', 'smptebars', 'smptehdbars', 'rgbtestsrc', 'yuvtestsrc', 'mandelbrot', 'life', 'cellauto', 'color']);

export function inputKind(input: string): FfmpegInputKind {
  if (input === '-' || input === 'pipe:0' || input === 'stdin') return 'stdin';
  if (input.startsWith('lavfi:')) return 'lavfi';
  const head = input.split('=')[0];
  if (LAVFI_SOURCES.has(head)) return 'lavfi';
  if (/^\/dev\/video\d+$/.test(input)) return 'v4l2';
  if (/^rtsps?:\/\//i.test(input)) return 'rtsp';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) return 'url';
  return 'file';
}

/**
 * Probing of live inputs (stdin, HTTP, RTSP): ffmpeg's defaults (5 MB, 5 s) hold back the first
 * frame for seconds on a low-bitrate camera. Never '-fflags nobuffer': it throws away the packets
 * read while probing, which for H.264 and MPEG-TS are the SPS/PPS and the key frame, so nothing
 * decodes until the next key frame (often never, for rpicam-vid or an IP camera's long GOP).
 */
const LIVE_PROBE = ['-probesize', '500000', '-analyzeduration', '100000'];

/** The ffmpeg command line for a source (exported so tests and docs can show it). */
export function ffmpegArgs(opts: FfmpegOptions): string[] {
  const w = opts.width ?? 640;
  const h = opts.height ?? 480;
  const fps = opts.fps ?? 30;
  const kind = inputKind(opts.input);
  const args = ['-hide_banner', '-loglevel', 'error'];
  if (kind !== 'stdin') args.push('-nostdin');
  const extra = opts.inputArgs ?? [];
  let scale = true;
  switch (kind) {
    case 'lavfi': {
      let graph = opts.input.startsWith('lavfi:') ? opts.input.slice(6) : opts.input;
      // A bare 'testsrc' gets the configured size and rate.
      if (!graph.includes('=') && LAVFI_SOURCES.has(graph)) graph = `${graph}=size=${w}x${h}:rate=${fps}`;
      // -re: a test pattern is generated as fast as the CPU allows; -re paces it like a camera.
      args.push('-re', '-f', 'lavfi', ...extra, '-i', graph);
      break;
    }
    case 'v4l2':
      args.push('-f', 'v4l2', '-framerate', String(fps), '-video_size', `${w}x${h}`, ...extra, '-i', opts.input);
      scale = false;
      break;
    case 'rtsp':
      args.push('-rtsp_transport', 'tcp', '-flags', 'low_delay', ...LIVE_PROBE, ...extra, '-i', opts.input);
      break;
    case 'url':
      // An HTTP camera's MJPEG (multipart) carries no timestamps: ffmpeg would assume 25 fps and
      // the fps filter would drop or repeat frames; arrival times are the true ones.
      args.push(...LIVE_PROBE, '-use_wallclock_as_timestamps', '1', ...extra, '-i', opts.input);
      break;
    case 'stdin':
      args.push(...LIVE_PROBE, ...extra, '-i', 'pipe:0');
      break;
    case 'file':
      args.push('-re', ...(opts.loop === false ? [] : ['-stream_loop', '-1']), ...extra, '-i', opts.input);
      break;
  }
  const filters = scale ? [`scale=${w}:${h}:force_original_aspect_ratio=decrease`, 'scale=trunc(iw/2)*2:trunc(ih/2)*2'] : [];
  if (kind === 'file' || kind === 'url' || kind === 'rtsp') filters.push(`fps=${fps}`);
  args.push('-an', '-sn');
  if (filters.length) args.push('-vf', filters.join(','));
  args.push('-c:v', 'mjpeg', '-q:v', String(opts.quality ?? 5), '-pix_fmt', 'yuvj420p', '-flush_packets', '1', '-f', 'image2pipe', 'pipe:1');
  return args;
}

/** What a stdin stream turned out to carry (decided once per stream, on its first bytes). */
const STDIN_KIND = new WeakMap<NodeJS.ReadableStream, 'mjpeg' | 'other'>();

export class FfmpegSource extends BaseSource {
  private child: ChildProcess | null = null;
  /** Reading MJPEG from stdin without ffmpeg. */
  private direct = false;
  private detachStdin: (() => void) | null = null;
  private splitter = new MjpegSplitter();
  private decoding = false;
  private pending: { jpeg: Buffer; t: number } | null = null;
  private stopping = false;
  private stderrTail: string[] = [];
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly options: FfmpegOptions) {
    super(options.name ?? `ffmpeg:${options.input}`);
  }

  /** The running ffmpeg's pid (tests kill it to simulate an unplugged camera). */
  get pid(): number | undefined {
    return this.child?.pid ?? undefined;
  }

  async start(): Promise<void> {
    if (this.child || this.direct) return;
    this.stopping = false;
    this.splitter.reset();
    this.stderrTail = [];
    const kind = inputKind(this.options.input);
    if (kind === 'stdin') {
      this.startStdin();
      return;
    }
    this.spawnFfmpeg(null);
  }

  /**
   * stdin: an MJPEG stream (rpicam-vid --codec mjpeg, gst … ! jpegenc) is split directly, with
   * no transcoding (less CPU on a Pi, no probing delay); anything else (H.264, raw) goes through
   * ffmpeg. The choice is remembered per stream, since a restart resumes mid-stream.
   */
  private startStdin(): void {
    const input = this.options.stdin ?? process.stdin;
    this.setStatus('starting');
    const known = STDIN_KIND.get(input);
    if (known === 'mjpeg') {
      this.attachDirect(input, null);
      return;
    }
    if (known === 'other') {
      this.spawnFfmpeg(null);
      return;
    }
    const onEnd = (): void => {
      input.off('data', onFirst);
      if (!this.stopping) this.setStatus('lost', 'stdin ended before any data', undefined, true);
    };
    const onFirst = (chunk: Buffer): void => {
      input.off('end', onEnd);
      input.pause();
      const mjpeg = chunk.length >= 3 && chunk[0] === 0xff && chunk[1] === 0xd8 && chunk[2] === 0xff;
      STDIN_KIND.set(input, mjpeg ? 'mjpeg' : 'other');
      if (this.stopping) {
        input.unshift(chunk);
        return;
      }
      if (mjpeg) this.attachDirect(input, chunk);
      else this.spawnFfmpeg(chunk);
    };
    input.once('data', onFirst);
    input.once('end', onEnd);
    this.detachStdin = () => {
      input.off('data', onFirst);
      input.off('end', onEnd);
    };
    input.resume();
  }

  private attachDirect(input: NodeJS.ReadableStream, first: Buffer | null): void {
    const onData = (chunk: Buffer): void => {
      const t = performance.now();
      for (const jpeg of this.splitter.push(chunk)) this.onJpeg(jpeg, t);
    };
    const onEnd = (): void => {
      if (!this.stopping) this.setStatus('lost', 'stdin ended (the camera pipe closed)', undefined, true);
    };
    this.direct = true;
    if (first) onData(first);
    input.on('data', onData);
    input.once('end', onEnd);
    input.resume();
    this.detachStdin = () => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
    };
  }

  private spawnFfmpeg(first: Buffer | null): void {
    const kind = inputKind(this.options.input);
    if (kind === 'file' && !fs.existsSync(this.options.input)) {
      this.setStatus('lost', `file not found: ${this.options.input}`);
      return;
    }
    this.setStatus('starting');
    const bin = this.options.ffmpegPath ?? 'ffmpeg';
    // Own process group: Ctrl-C in a terminal reaches only the daemon, which then stops ffmpeg in
    // order (instead of ffmpeg dying first and being reported as a lost camera). If node dies
    // hard, ffmpeg exits on its own at the next write to the closed pipe.
    const child = spawn(bin, ffmpegArgs(this.options), { stdio: [kind === 'stdin' ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
    this.child = child;
    trackChild(child);
    if (kind === 'stdin' && child.stdin) {
      const input = this.options.stdin ?? process.stdin;
      if (first) child.stdin.write(first);
      input.pipe(child.stdin);
      child.stdin.on('error', () => {
        /* ffmpeg went away: reported by 'exit' */
      });
      child.once('exit', () => input.unpipe(child.stdin ?? undefined));
    }
    child.stdout?.on('data', (chunk: Buffer) => {
      const t = performance.now();
      for (const jpeg of this.splitter.push(chunk)) this.onJpeg(jpeg, t);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim()) this.stderrTail.push(line.trim().slice(0, 300));
      }
      if (this.stderrTail.length > 5) this.stderrTail.splice(0, this.stderrTail.length - 5);
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        untrackChild(child);
        if (this.child === child) this.child = null;
        const msg = e.code === 'ENOENT' ? `${bin} not found (install ffmpeg)` : `cannot start ${bin}: ${e.message}`;
        if (!this.stopping) this.setStatus('lost', msg);
        this.reportError(new Error(msg));
        resolve();
      });
      child.once('exit', (code, signal) => {
        untrackChild(child);
        if (this.child === child) this.child = null;
        if (!this.stopping) {
          const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
          const last = this.stderrTail[this.stderrTail.length - 1];
          // ffmpeg fed from a stdin that has ended stopped for good: a new ffmpeg would get no input.
          const input = kind === 'stdin' ? ((this.options.stdin ?? process.stdin) as NodeJS.ReadableStream & { readableEnded?: boolean }) : null;
          const ended = input?.readableEnded === true;
          this.setStatus('lost', ended ? `stdin ended (the camera pipe closed); ffmpeg ${why}` : `ffmpeg ${why}${last ? `: ${last}` : ''}`, undefined, ended);
        }
        resolve();
      });
    });
  }

  private onJpeg(jpeg: Buffer, t: number): void {
    if (this.stopping) return;
    if (this.decoding) {
      if (this.pending) this.dropped++;
      this.pending = { jpeg, t };
      return;
    }
    void this.decode(jpeg, t);
  }

  private async decode(jpeg: Buffer, t: number): Promise<void> {
    this.decoding = true;
    try {
      let next: { jpeg: Buffer; t: number } | null = { jpeg, t };
      while (next && !this.stopping) {
        const t0 = performance.now();
        try {
          const img = await decodeToRgb(next.jpeg);
          if (!this.stopping) this.emitFrame({ ...img, t: next.t, jpeg: next.jpeg, decodeMs: performance.now() - t0 });
        } catch (e) {
          // One corrupt JPEG (a camera glitch) is skipped, not fatal.
          this.reportError(e);
        }
        next = this.pending;
        this.pending = null;
      }
    } finally {
      this.decoding = false;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.pending = null;
    this.detachStdin?.();
    this.detachStdin = null;
    this.direct = false;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(timer);
    }
    this.child = null;
    this.setStatus('stopped');
  }
}
