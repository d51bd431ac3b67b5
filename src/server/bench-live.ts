/**
 * `advsign bench --live`: the whole daemon (capture → ROI → classify → attack → encode → socket)
 * at the daemon's defaults over one full cycle of the synthetic scene (every sign class in turn,
 * 640×480 at 30 fps), measured from outside: a socket.io client in the same process acks every
 * frame as the page does. Reports frames per second, p95 end-to-end latency (frame arrival →
 * encoded and handed to the socket), CPU time per frame, the fooled rate over the cycle and per
 * sign class, frames where the attack was on yet changed nothing, peak RSS, and RSS, heap and
 * tf.memory().numTensors sampled from the start to the end of the measured window (flat = no
 * leak; `npm run soak` runs it for 10 minutes); with a sticker run, its fooled rate.
 *
 * With `unauthenticated: N`, N bare engine.io sessions (no token, never joining) are held open
 * the whole time, reopened as fast as the daemon closes them: the client's frame rate is then
 * what the operator gets while someone on the network tries to crowd them out.
 */
import * as crypto from 'node:crypto';
import { tf } from '../inference/tf';
import { initBackend } from '../inference/backend';
import { engineOf, liveOrtThreads, releaseClassifier, useEngine } from '../inference/engine';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import { which } from '../capture/factory';
import { CLASS_NAMES } from '../data/classes';
import { DEFAULT_SCENE_CLASSES } from '../capture/synthetic';
import type { AttackLoss } from '../attack/loss';
import { DEFAULT_CONFIG, LiveAttack, ServeConfig } from './config';
import { createLogger } from './log';
import { startServer } from './app';
import type { Daemon } from './daemon';
import type { FrameResult } from './pipeline';
import { loadServeModel } from './model';
import { Ring, round, STAGES, Stage } from './stats';
import { RawSessions } from './raw-sessions';

/** One cycle of the synthetic scene: every class for its 4 s. */
export const SCENE_CYCLE_SECONDS = DEFAULT_SCENE_CLASSES.length * 4;

export interface LiveBenchOptions {
  /** Measured window (default: one scene cycle for the synthetic source, else 10 s). */
  seconds?: number;
  /** Stop after this many measured frames instead (e.g. 10000 for the tensor-leak check). */
  frames?: number;
  /** Source spec (default 'synthetic'; 'ffmpeg:testsrc' = lavfi testsrc at width×height, fps). */
  source?: string;
  attack?: LiveAttack;
  eps?: number;
  steps?: number;
  loss?: AttackLoss;
  /** A `sticker` run's JSON: the virtual sticker is drawn on every frame. */
  sticker?: string;
  width?: number;
  height?: number;
  fps?: number;
  /** A classifier to use; else modelDir, else the shipped model, else an untrained cnn4 (same cost). */
  classifier?: Classifier;
  modelDir?: string;
  /** Engine for a loaded model: 'ort' | 'tfjs' (default: the best that works). */
  engine?: string;
  warmupSeconds?: number;
  /** Attach a socket.io client that acks frames (default true when socket.io-client is installed). */
  withClient?: boolean;
  /** Bare sessions without the token held open while measuring (default 0). */
  unauthenticated?: number;
}

export interface MemorySample {
  seconds: number;
  rssMB: number;
  heapMB: number;
  numTensors: number;
}

export interface ClassFigure {
  name: string;
  frames: number;
  fooledRate: number;
}

export interface LiveBenchResult {
  framesPerSecond: number;
  p95LatencyMs: number;
  p50LatencyMs: number;
  rssMB: number;
  numTensorsStart: number;
  numTensorsEnd: number;
  frames: number;
  droppedFrames: number;
  seconds: number;
  source: string;
  attack: string;
  eps: number;
  steps: number;
  loss: string;
  /** Share of measured frames the attack fooled (null with the attack off). */
  fooledRate: number | null;
  /** Frames where the attack was on and changed nothing (the page states why). */
  zeroPerturbationFrames: number;
  /** Fooled rate per true sign class (sources that know it: the synthetic scene). */
  fooledRateByClass: Record<string, ClassFigure>;
  /** With a sticker: the share of frames it fooled, and its run file. */
  sticker: { file: string; fooledRate: number } | null;
  backend: string;
  engine: string;
  model: string;
  /**
   * CPU time the whole process (every thread) spent per measured frame, ms: unlike the frame rate
   * it barely changes when other programs share the cores, so 1000 / cpuMsPerFrame is what one
   * free core of this machine could sustain.
   */
  cpuMsPerFrame: number;
  /** Per-stage p50/p95, ms. */
  stages: Record<Stage, { p50: number; p95: number }>;
  /** What the socket client received (null without a client). */
  client: { framesPerSecond: number; p95LatencyMs: number } | null;
  /** RSS, heap and tensors from the start to the end of the window (about 10 samples). */
  memory: MemorySample[];
  /** The flood of token-less sessions, when asked for. */
  unauthenticated: { sessions: number; openAtEnd: number; closedByDaemon: number } | null;
  notes: string[];
}

export async function benchLive(opts: LiveBenchOptions = {}): Promise<LiveBenchResult> {
  const source = opts.source ?? 'synthetic';
  const seconds = opts.seconds ?? (source === 'synthetic' ? SCENE_CYCLE_SECONDS : 10);
  const notes: string[] = [];
  if ((source.startsWith('ffmpeg:') || source.startsWith('video:')) && !which('ffmpeg')) {
    throw new UserError('the live bench needs ffmpeg on PATH (apt-get install ffmpeg)');
  }
  const backend = await initBackend();
  let classifier = opts.classifier;
  let modelName = 'injected classifier';
  let owned = false;
  if (!classifier) {
    try {
      const m = await loadServeModel(opts.modelDir ?? null);
      classifier = m.classifier;
      modelName = m.description;
    } catch (e) {
      if (opts.modelDir) throw e;
      const m = await loadServeModel('untrained:cnn4');
      classifier = m.classifier;
      modelName = m.description;
      notes.push('no trained model found: untrained cnn4 (same compute cost, meaningless predictions)');
    }
    owned = true;
    classifier = useEngine(classifier, opts.engine, liveOrtThreads()).classifier;
  }
  const config: ServeConfig = {
    ...DEFAULT_CONFIG,
    sources: [],
    ffmpegInputArgs: [],
    host: '127.0.0.1',
    port: 0,
    source,
    logLevel: 'warn',
    attack: opts.attack ?? DEFAULT_CONFIG.attack,
    eps: opts.eps ?? DEFAULT_CONFIG.eps,
    steps: opts.steps ?? DEFAULT_CONFIG.steps,
    loss: opts.loss ?? DEFAULT_CONFIG.loss,
    sticker: opts.sticker ?? null,
    width: opts.width ?? 640,
    height: opts.height ?? 480,
    fps: opts.fps ?? 30,
  };
  const flood = opts.unauthenticated ?? 0;
  // Flooded, the daemon runs as on a network: a token that the bench client has and the flood lacks.
  if (flood > 0) Object.assign(config, { requireToken: true, token: crypto.randomBytes(18).toString('base64url') });
  const server = await startServer({ config, classifier, logger: createLogger({ level: 'warn' }), allowedSources: [source] });
  const raw = flood > 0 ? new RawSessions('127.0.0.1', server.port, flood) : null;
  let client: { disconnect(): void } | null = null;
  const clientTimes: number[] = [];
  const clientLat = new Ring(100_000);
  let measuring = false;
  try {
    await raw?.start();
    if (opts.withClient !== false) {
      try {
        const { io } = require('socket.io-client') as typeof import('socket.io-client');
        const sock = io(server.url, { transports: ['websocket'], reconnection: false, auth: { token: config.token } });
        sock.on('frame', (p: { latency: { total: number }; sentAt: number }, ack?: () => void) => {
          if (measuring) {
            clientTimes.push(performance.now());
            clientLat.push(p.latency.total + Math.max(0, Date.now() - p.sentAt));
          }
          ack?.();
        });
        client = sock;
      } catch {
        notes.push('socket.io-client not installed: measured at the server only');
      }
    }
    // Warm up: first frames, first attack (kernel set-up), JIT.
    const warm = Math.max(0.5, opts.warmupSeconds ?? 2);
    const t0 = performance.now();
    while (server.daemon.stats.frames < 5 && performance.now() - t0 < 15_000) await sleep(100);
    if (server.daemon.stats.frames < 5)
      throw new Error(`no frames from ${source} within 15 s (status: ${server.daemon.sourceStatus.state} ${server.daemon.sourceStatus.message ?? ''})`);
    await sleep(warm * 1000);

    const total = new Ring(100_000);
    const stage = new Map<Stage, Ring>(STAGES.map((s) => [s, new Ring(100_000)]));
    let frames = 0,
      fooled = 0,
      zero = 0,
      stickerFooled = 0;
    const byClass = new Map<number, { frames: number; fooled: number }>();
    const attackOn = config.attack !== 'none';
    const droppedStart = server.daemon.stats.dropped;
    let finished: () => void = () => undefined;
    const enough = new Promise<void>((r) => {
      finished = r;
    });
    const onResult = (r: FrameResult): void => {
      frames++;
      total.push(r.latency.total);
      for (const s of STAGES) stage.get(s)!.push(r.latency[s]);
      if (r.fooled) fooled++;
      if (attackOn && r.stall !== null) zero++;
      if (r.sticker?.fooled) stickerFooled++;
      if (r.label !== undefined && attackOn) {
        const c = byClass.get(r.label) ?? { frames: 0, fooled: 0 };
        c.frames++;
        if (r.fooled) c.fooled++;
        byClass.set(r.label, c);
      }
      if (opts.frames !== undefined && frames >= opts.frames) finished();
    };
    const numTensorsStart = await tensorsAtRest(server.daemon, true);
    let rss = process.memoryUsage().rss;
    const rssTimer = setInterval(() => {
      rss = Math.max(rss, process.memoryUsage().rss);
    }, 200);
    const memory: MemorySample[] = [];
    const sample = (): void => {
      const m = process.memoryUsage();
      memory.push({
        seconds: round((performance.now() - start) / 1000, 1),
        rssMB: round(m.rss / 2 ** 20, 1),
        heapMB: round(m.heapUsed / 2 ** 20, 1),
        numTensors: tf.memory().numTensors,
      });
    };
    server.daemon.on('result', onResult);
    measuring = true;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    sample();
    const sampleTimer = setInterval(sample, Math.max(1000, (seconds * 1000) / 10));
    await (opts.frames !== undefined ? enough : sleep(seconds * 1000));
    const elapsed = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    measuring = false;
    server.daemon.off('result', onResult);
    clearInterval(rssTimer);
    clearInterval(sampleTimer);
    const numTensorsEnd = await tensorsAtRest(server.daemon, false);
    sample();
    const perClass: Record<string, ClassFigure> = {};
    for (const [c, v] of [...byClass.entries()].sort((a, b) => a[0] - b[0])) {
      perClass[c] = { name: CLASS_NAMES[c] ?? String(c), frames: v.frames, fooledRate: round(v.fooled / v.frames, 3) };
    }
    const stages = {} as LiveBenchResult['stages'];
    for (const s of STAGES) stages[s] = { p50: round(stage.get(s)!.percentile(50)), p95: round(stage.get(s)!.percentile(95)) };
    return {
      framesPerSecond: round(frames / elapsed, 1),
      p95LatencyMs: round(total.percentile(95)),
      p50LatencyMs: round(total.percentile(50)),
      rssMB: round(rss / 2 ** 20, 1),
      numTensorsStart,
      numTensorsEnd,
      frames,
      droppedFrames: server.daemon.stats.dropped - droppedStart,
      seconds: round(elapsed, 2),
      source,
      attack: config.attack,
      eps: round(config.eps, 5),
      steps: config.steps,
      loss: config.loss,
      fooledRate: attackOn && frames ? round(fooled / frames, 4) : null,
      zeroPerturbationFrames: zero,
      fooledRateByClass: perClass,
      sticker: opts.sticker ? { file: opts.sticker, fooledRate: frames ? round(stickerFooled / frames, 4) : 0 } : null,
      backend: backend.backend,
      engine: engineOf(classifier),
      model: modelName,
      cpuMsPerFrame: frames ? round((cpu.user + cpu.system) / 1000 / frames, 2) : 0,
      stages,
      client: client ? { framesPerSecond: round(clientTimes.length / elapsed, 1), p95LatencyMs: round(clientLat.percentile(95)) } : null,
      memory,
      unauthenticated: raw ? { sessions: flood, openAtEnd: raw.open, closedByDaemon: raw.dropped } : null,
      notes,
    };
  } finally {
    client?.disconnect();
    raw?.close();
    await server.close();
    if (owned) releaseClassifier(classifier);
  }
}

/**
 * tf.memory().numTensors with no frame in flight: the loop analyses one frame while it encodes
 * the previous one, so a count taken mid-frame includes that frame's tensors. Pauses the loop,
 * lets it settle, counts, and resumes it when asked.
 */
async function tensorsAtRest(daemon: Daemon, resume: boolean): Promise<number> {
  daemon.updateSettings({ paused: true }, 'bench');
  await sleep(1000);
  const n = tf.memory().numTensors;
  if (resume) daemon.updateSettings({ paused: false }, 'bench');
  return n;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
