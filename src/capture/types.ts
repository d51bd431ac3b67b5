/**
 * Frame sources: one interface for cameras, ffmpeg pipes, folders, videos and the synthetic
 * scene. A source emits 'frame' events at its own rate and 'status' events when its state
 * changes; it never retries by itself (the Supervisor does, so every source recovers the same way).
 */

/**
 * One captured image. RGB is kept as 8-bit bytes, not floats: a 640×480 float frame is 3.7 MB,
 * 30 times a second, while the model only ever needs the small ROI converted to floats.
 */
export interface Frame {
  /** Interleaved 8-bit RGB, width*height*3 bytes, row-major. */
  rgb: Buffer;
  width: number;
  height: number;
  /** performance.now() when the frame arrived (last byte from the pipe, or render start). */
  t: number;
  /** Per-source sequence number. */
  seq: number;
  /** The frame as JPEG when the source already had one (MJPEG cameras): shown as is, never re-encoded. */
  jpeg?: Buffer;
  /** Time spent decoding or rendering this frame, ms. */
  decodeMs: number;
  /** Ground-truth class when the source knows it (the synthetic scene). */
  label?: number;
}

export type SourceState = 'idle' | 'starting' | 'running' | 'lost' | 'retrying' | 'stopped';

export interface SourceStatus {
  state: SourceState;
  /** The source spec, e.g. 'ffmpeg:testsrc'. */
  source: string;
  message?: string;
  /** Retry attempt number while recovering. */
  attempt?: number;
  /**
   * The source cannot come back by restarting it (its stdin pipe closed): supervisors stop, and
   * the daemon exits non-zero so a service manager restarts the whole camera pipeline.
   */
  final?: boolean;
  /** Date.now() of the change. */
  at: number;
}

export type FrameListener = (frame: Frame) => void;
export type StatusListener = (status: SourceStatus) => void;
export type ErrorListener = (error: Error) => void;

export interface FrameSource {
  /** The spec the source was made from (shown on the page and in /healthz). */
  readonly name: string;
  readonly status: SourceStatus;
  /** Resolves once the source is started (not necessarily producing frames yet). */
  start(): Promise<void>;
  /** Stops producing frames and releases processes/timers; safe to call twice. */
  stop(): Promise<void>;
  on(event: 'frame', listener: FrameListener): this;
  on(event: 'status', listener: StatusListener): this;
  on(event: 'error', listener: ErrorListener): this;
  off(event: 'frame', listener: FrameListener): this;
  off(event: 'status', listener: StatusListener): this;
  off(event: 'error', listener: ErrorListener): this;
}
