/**
 * `--source` specs → frame sources:
 *   auto | synthetic | webcam[:/dev/videoN] | ffmpeg:<input> | dir:<path> | video:<file>
 * `auto` opens a camera when one exists and a tool to read it is installed, else the synthetic scene.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../data/types';
import type { FrameSource } from './types';
import { FfmpegSource } from './ffmpeg';
import { DirectorySource } from './dir';
import { WebcamSource } from './webcam';
import { SyntheticSource, SyntheticOptions } from './synthetic';
import { SupervisedSource, SupervisorOptions } from './supervisor';

export type SourceSpec =
  | { kind: 'synthetic' }
  | { kind: 'webcam'; device?: string }
  | { kind: 'ffmpeg'; input: string }
  | { kind: 'dir'; path: string }
  | { kind: 'video'; file: string };

export type SourceRequest = SourceSpec | { kind: 'auto' };

export const SOURCE_SYNTAX = 'auto | synthetic | webcam[:/dev/videoN] | ffmpeg:<input> | dir:<path> | video:<file>';

export function parseSourceSpec(text: string): SourceRequest {
  const t = text.trim();
  const i = t.indexOf(':');
  const head = (i < 0 ? t : t.slice(0, i)).toLowerCase();
  const rest = i < 0 ? '' : t.slice(i + 1);
  switch (head) {
    case 'auto':
    case 'synthetic':
      if (rest) break;
      return { kind: head };
    case 'webcam':
      if (rest && !/^\/dev\/video\d+$/.test(rest)) throw new UserError(`webcam device must look like /dev/videoN, got '${rest}'`);
      return rest ? { kind: 'webcam', device: rest } : { kind: 'webcam' };
    case 'ffmpeg':
      if (!rest) throw new UserError(`ffmpeg source needs an input, e.g. ffmpeg:/dev/video0, ffmpeg:testsrc, ffmpeg:rtsp://… or ffmpeg:-`);
      return { kind: 'ffmpeg', input: rest };
    case 'dir':
      if (!rest) throw new UserError('dir source needs a folder, e.g. dir:./photos');
      return { kind: 'dir', path: rest };
    case 'video':
      if (!rest) throw new UserError('video source needs a file, e.g. video:drive.mp4');
      return { kind: 'video', file: rest };
    default:
      break;
  }
  throw new UserError(`unknown source '${text}': use ${SOURCE_SYNTAX}`);
}

export function specToString(s: SourceRequest): string {
  switch (s.kind) {
    case 'auto':
    case 'synthetic':
      return s.kind;
    case 'webcam':
      return s.device ? `webcam:${s.device}` : 'webcam';
    case 'ffmpeg':
      return `ffmpeg:${s.input}`;
    case 'dir':
      return `dir:${s.path}`;
    case 'video':
      return `video:${s.file}`;
  }
}

/** Finds an executable on PATH. */
export function which(bin: string, envPath = process.env.PATH ?? ''): string | null {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

export interface AutoProbe {
  /** Camera devices present (default: /dev/video* sorted). */
  cameras?: string[];
  hasFfmpeg?: boolean;
  hasFswebcam?: boolean;
}

export function listCameras(devDir = '/dev'): string[] {
  try {
    return fs
      .readdirSync(devDir)
      .filter((n) => /^video\d+$/.test(n))
      .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
      .map((n) => path.join(devDir, n));
  } catch {
    return [];
  }
}

/** What `auto` resolves to on this machine, and why. */
export function resolveAuto(probe: AutoProbe = {}): { spec: SourceSpec; reason: string } {
  const cams = probe.cameras ?? listCameras();
  const ff = probe.hasFfmpeg ?? which('ffmpeg') !== null;
  const fsw = probe.hasFswebcam ?? which('fswebcam') !== null;
  if (cams.length > 0 && ff) return { spec: { kind: 'ffmpeg', input: cams[0] }, reason: `camera ${cams[0]} read with ffmpeg` };
  if (cams.length > 0 && fsw) return { spec: { kind: 'webcam', device: cams[0] }, reason: `camera ${cams[0]} read with fswebcam` };
  if (cams.length > 0) return { spec: { kind: 'synthetic' }, reason: `camera ${cams[0]} found but neither ffmpeg nor fswebcam is installed: synthetic scene` };
  return { spec: { kind: 'synthetic' }, reason: 'no camera found: synthetic scene' };
}

export interface CaptureOptions {
  width?: number;
  height?: number;
  fps?: number;
  ffmpegPath?: string;
  /** Extra ffmpeg input arguments (e.g. ['-input_format', 'mjpeg'] for a camera's own MJPEG). */
  ffmpegInputArgs?: string[];
  stdin?: NodeJS.ReadableStream;
  synthetic?: SyntheticOptions;
  supervisor?: SupervisorOptions;
}

/** One unsupervised source for a (resolved) spec. */
export function createRawSource(spec: SourceSpec, o: CaptureOptions = {}): FrameSource {
  const name = specToString(spec);
  switch (spec.kind) {
    case 'synthetic':
      return new SyntheticSource({ width: o.width, height: o.height, fps: o.fps ?? 15, ...o.synthetic }, name);
    case 'webcam':
      return new WebcamSource({ device: spec.device, width: o.width, height: o.height, fps: o.fps, name });
    case 'ffmpeg':
      return new FfmpegSource({
        input: spec.input,
        width: o.width,
        height: o.height,
        fps: o.fps,
        ffmpegPath: o.ffmpegPath,
        inputArgs: o.ffmpegInputArgs,
        stdin: o.stdin,
        name,
      });
    case 'dir':
      return new DirectorySource({ dir: spec.path, fps: o.fps ? Math.min(o.fps, 10) : 5, name });
    case 'video':
      return new FfmpegSource({ input: path.resolve(spec.file), loop: true, width: o.width, height: o.height, fps: o.fps, ffmpegPath: o.ffmpegPath, name });
  }
}

/** A supervised source (restarts with backoff when lost) for a spec string, `auto` resolved. */
export function createSource(text: string, o: CaptureOptions = {}): { source: SupervisedSource; spec: SourceSpec; note?: string } {
  const req = parseSourceSpec(text);
  let spec: SourceSpec;
  let note: string | undefined;
  if (req.kind === 'auto') {
    const r = resolveAuto();
    spec = r.spec;
    note = r.reason;
  } else {
    spec = req;
  }
  const source = new SupervisedSource(() => createRawSource(spec, o), specToString(spec), o.supervisor);
  return { source, spec, note };
}
