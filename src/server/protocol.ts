/**
 * The socket.io protocol between the daemon and the page, in one place: event names and payload
 * types in both directions. What a client sends is validated by schema.ts before any handler
 * sees it; what the server sends is built from these types.
 *
 *   server → client
 *     'hello'     Hello (on connect)
 *     'frame'     FramePayload, with an ack: the next frame goes out only after the ack (or a
 *                 timeout), so a slow client always gets a recent frame, never a queue
 *     'status'    SourceStatus ('starting' | 'running' | 'lost' | 'retrying' | 'stopped')
 *     'settings'  PipelineSettings (after any change, from any client or the button)
 *     'stats'     StatsMessage, each second
 *     'stickers'  StickersMessage (the virtual stickers known and the one in use, on any change)
 *     'job'       JobMessage (the print job: progress a few times a second, then its outcome)
 *     'snapshot'  {file} (a button long press saved one on the device)
 *     'error'     {code, message} (invalid / unknown / oversized message, rate limit)
 *   client → server (each with an optional ack)
 *     'settings'  SettingsPatch           → {ok, settings, notes?} | {ok:false, error}
 *     'source'    {source}                → {ok, source} | {ok:false, error}
 *     'sticker'   StickerRequest          → {ok, stickers} | {ok:false, error}
 *     'view'      ViewRequest             → {ok, images}
 *     'print'     PrintRequest            → {ok, job} | {ok:false, error}
 * Bulk data never rides the socket: sticker uploads are POST /api/sticker, PDFs are downloads.
 * ServerToClientEvents / ClientToServerEvents below type socket.io itself (socket.ts) and clients.
 */
import type { Server, Socket } from 'socket.io';
import type { SourceStatus } from '../capture/types';
import type { AttackLoss } from '../attack/loss';
import type { LiveAttack, ServeConfig } from './config';
import type { NormRoi, PixelRoi } from '../util/roi';
import type { Latency, Stage } from './stats';

/** The images a frame can carry; a client names the ones it draws (ViewRequest). */
export const IMAGE_KEYS = ['frame', 'cleanCrop', 'perturbation', 'adversarial', 'sticker'] as const;
export type ImageKey = (typeof IMAGE_KEYS)[number];

export interface StickerFrame {
  id: string;
  /** The model's prediction on the input with the virtual sticker drawn on. */
  prediction: PredictionSummary;
  /** Untargeted: the prediction differs from the clean one; targeted: it is the target (and the clean one is not). */
  fooled: boolean;
  target: number | null;
  /** The run was made for this class; false when another sign is in view. */
  matchesSign: boolean;
}

/** The per-frame settings: the attack fields of the serve config, plus pause. */
export type PipelineSettings = Pick<ServeConfig, 'attack' | 'eps' | 'targeted' | 'target' | 'steps' | 'loss' | 'roi'> & { paused: boolean };

export interface TopEntry {
  classId: number;
  name: string;
  p: number;
}

export interface PredictionSummary {
  classId: number;
  name: string;
  confidence: number;
  top5: TopEntry[];
}

/** What a processed frame tells the page (the pipeline's FrameResult adds its own fields). */
export interface FrameFields {
  seq: number;
  width: number;
  height: number;
  roi: PixelRoi;
  clean: PredictionSummary;
  adversarial: PredictionSummary;
  fooled: boolean;
  attack: { name: LiveAttack; eps: number; targeted: boolean; target: number; steps: number; error?: string };
  /** Measured max |adversarial − clean| (≤ eps). */
  linf: number;
  /** Share of the input values the attack changed. */
  moved: number;
  /** Why an attack that is on changed nothing (null otherwise). */
  stall: string | null;
  /** The perturbation image shows 0.5 + δ·amplify. */
  amplify: number;
  sticker: StickerFrame | null;
  latency: Latency;
}

/** A processed frame as the page gets it: the pipeline's result without its float crops. */
export type FramePayload = FrameFields & {
  label: { classId: number; name: string } | null;
  fps: number;
  sentAt: number;
  /** Only the images this client asked for. */
  images: Partial<Record<ImageKey, Buffer>>;
};

export interface StickerSummary {
  id: string;
  /** 'Stop → Speed limit (30km/h)' */
  name: string;
  classId: number;
  className: string;
  target: { classId: number; name: string } | null;
  mode: 'sticker' | 'sign';
  signMm: number;
  origin: 'cli' | 'upload' | 'job';
  /** Download address of the run's PDF, when the daemon has it (print jobs). */
  pdf: string | null;
  heldOutSuccess: number | null;
}

export interface StickersMessage {
  active: string | null;
  items: StickerSummary[];
}

export type JobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface JobMessage {
  id: string;
  state: JobState;
  classId: number;
  className: string;
  target: { classId: number; name: string } | null;
  signMm: number;
  steps: number;
  phase: 'starting' | 'optimise' | 'measure' | 'export' | 'finished';
  /** Optimisation steps done so far. */
  done: number;
  startedAt: number;
  seconds: number;
  /** Why it failed or was cancelled, in a sentence. */
  message?: string;
  /** When done: the PDF's download address and the virtual sticker it became. */
  pdf?: string;
  stickerId?: string;
}

export interface Hello {
  version: string;
  classes: readonly string[];
  settings: PipelineSettings;
  sources: string[];
  source: SourceStatus;
  limits: { epsMax: number; maxSteps: number; attacks: readonly string[]; maxMessageBytes: number; printSteps: [number, number]; signMm: [number, number] };
  model: { inputSize: number; numClasses: number };
  stickers: StickersMessage;
  /** The last print job (running or finished), so a page that reconnects sees its outcome. */
  job: JobMessage | null;
  /** Whether print jobs can run (they need the daemon's model on disk). */
  printJobs: { available: boolean; reason?: string };
}

export interface StatsMessage {
  fps: number;
  fooledRate: number;
  stickerFooledRate: number | null;
  stalledFrames: number;
  frames: number;
  dropped: number;
  latency: Record<Stage, { p50: number; p95: number }>;
  clients: number;
  numTensors: number;
  rssMB: number;
  backend: string;
}

/** A change to the live settings (every key optional; schema.ts validates it). */
export interface SettingsPatch {
  attack?: LiveAttack;
  eps?: number;
  targeted?: boolean;
  target?: number;
  steps?: number;
  loss?: AttackLoss;
  roi?: NormRoi | null;
  paused?: boolean;
}

/** Switch the frame source to one the daemon offers (Hello.sources). */
export interface SourceRequest {
  source: string;
}

/** Load a known sticker by id, or clear it (id null). */
export interface StickerRequest {
  id: string | null;
}

export interface ViewRequest {
  images: ImageKey[];
}

export type PrintRequest = { action: 'start'; target: number | null; signMm: number; steps: number } | { action: 'cancel' };

/** What every refused client request is acked with (the same code is emitted as 'error'). */
export interface Refusal {
  ok: false;
  code: string;
  error: string;
}

export interface ErrorMessage {
  code: string;
  message: string;
}

type Reply<T> = (reply: ({ ok: true } & T) | Refusal) => void;

/** socket.io's typed events, server → client (Server<ClientToServerEvents, ServerToClientEvents>). */
export interface ServerToClientEvents {
  hello: (m: Hello) => void;
  /** Acked by the client: the next frame goes out only after the ack or a timeout. */
  frame: (m: FramePayload, ack: () => void) => void;
  status: (s: SourceStatus) => void;
  settings: (s: PipelineSettings) => void;
  stats: (s: StatsMessage) => void;
  stickers: (m: StickersMessage) => void;
  job: (m: JobMessage) => void;
  snapshot: (m: { file: string }) => void;
  error: (e: ErrorMessage) => void;
}

/** Client → server: one argument each and an optional ack (what arrives is validated first). */
export interface ClientToServerEvents {
  settings: (patch: SettingsPatch, ack?: Reply<{ settings: PipelineSettings; notes?: string[] }>) => void;
  source: (req: SourceRequest, ack?: Reply<SourceRequest>) => void;
  sticker: (req: StickerRequest, ack?: Reply<{ stickers: StickersMessage }>) => void;
  view: (req: ViewRequest, ack?: Reply<ViewRequest>) => void;
  print: (req: PrintRequest, ack?: Reply<{ job: JobMessage | null }>) => void;
}

/** The daemon's socket.io server and its sockets, typed by the events above. */
export type LiveServer = Server<ClientToServerEvents, ServerToClientEvents>;
export type LiveSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

export type { NormRoi, PixelRoi };
