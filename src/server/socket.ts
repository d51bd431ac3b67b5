/**
 * The daemon's socket.io side, typed by protocol.ts: admission (token, client cap), the hello,
 * one validated dispatch for every client event, frames fanned out with per-client back-pressure,
 * broadcasts of status, settings and stats. app.ts starts and closes it with the HTTP side.
 */
import type * as http from 'node:http';
import * as path from 'node:path';
import { Server as IoServer } from 'socket.io';
import { CLASS_NAMES } from '../data/classes';
import type { SourceStatus } from '../capture/types';
import { version } from '../util/paths';
import { EPS_MAX, LIVE_ATTACKS } from './config';
import { ensureImages, FrameResult } from './pipeline';
import { CLIENT_EVENTS, MAX_LIVE_STEPS, MAX_MESSAGE_BYTES, messageSize, validateSettings, validateSourceRequest } from './schema';
import { hostAllowed, originAllowed, RateLimiter } from './auth';
import { AUTH_TIMEOUT_MS, installAdmission } from './admission';
import { redact } from './redact';
import { round, STAGES } from './stats';
import { IMAGE_KEYS, FramePayload, Hello, LiveServer, LiveSocket, StatsMessage } from './protocol';
import { Classroom } from './classroom';
import { classroomSocket, ClassroomSocket, isClassroomEvent } from './classroom-socket';
import { pickImages } from './views';
import { publicStatus, ServerParts } from './http';

/** socket.io's transport limit: anything bigger is cut off before it is even parsed. */
export const MAX_HTTP_BUFFER = 16 * 1024;

/**
 * Up to two frames unacknowledged per client: enough to hide the round trip on a fast link,
 * and a slow client simply misses frames (it always gets a recent one, never a backlog).
 */
const MAX_IN_FLIGHT = 2;

export interface SocketDeps extends ServerParts {
  /** Milliseconds a client may take to ack a frame before it is sent the next one anyway. */
  ackTimeoutMs: number;
  /** A session that has not joined with its token by then is closed. */
  authTimeoutMs?: number;
}

type Ack = (r: unknown) => void;

interface ClientState {
  inFlight: number;
  sent: number;
  skipped: number;
}

export function framePayload(r: FrameResult, fps: number): FramePayload {
  const lat = {} as FrameResult['latency'];
  for (const s of STAGES) lat[s] = round(r.latency[s], 2);
  return {
    seq: r.seq,
    width: r.width,
    height: r.height,
    roi: r.roi,
    label: r.label !== undefined ? { classId: r.label, name: CLASS_NAMES[r.label] ?? String(r.label) } : null,
    clean: r.clean,
    adversarial: r.adversarial,
    fooled: r.fooled,
    attack: r.attack,
    linf: round(r.linf, 5),
    moved: round(r.moved, 4),
    stall: r.stall,
    amplify: round(r.amplify, 3),
    latency: lat,
    fps: round(fps, 1),
    sentAt: Date.now(),
    sticker: r.sticker,
    images: r.images,
  };
}

export class LiveSockets {
  readonly io: LiveServer;
  /** Admitted (token-holding, joined) clients. */
  readonly clients: () => number;
  private readonly state = new WeakMap<LiveSocket, ClientState>();
  private readonly classroom: ClassroomSocket;
  private readonly sourceLimit: RateLimiter;
  private readonly statsTimer: NodeJS.Timeout;

  constructor(
    server: http.Server,
    private readonly d: SocketDeps,
  ) {
    const cfg = d.config;
    this.io = new IoServer(server, {
      maxHttpBufferSize: MAX_HTTP_BUFFER,
      serveClient: true, // the page loads /socket.io/socket.io.js from the installed package: no CDN
      allowRequest: (req, cb) => cb(null, hostAllowed(req, cfg.host) && originAllowed(req)),
      pingInterval: 10_000,
      pingTimeout: 8_000,
      connectTimeout: d.authTimeoutMs ?? AUTH_TIMEOUT_MS,
    });
    this.clients = installAdmission(this.io, { token: d.token, maxClients: cfg.maxClients, log: d.log }).clients;
    this.sourceLimit = new RateLimiter(...(d.limits.source ?? [3, 12]));
    this.classroom = classroomSocket({
      io: this.io,
      room: d.room,
      daemon: d.daemon,
      numClasses: d.classifier.numClasses,
      log: d.log,
      jobLimit: new RateLimiter(...(d.limits.printJob ?? [3, 6])),
    });
    this.io.on('connection', (socket) => this.connected(socket));
    this.broadcastDaemon();
    this.statsTimer = setInterval(() => this.sendStats(), 1000);
    this.statsTimer.unref();
  }

  /** Open engine.io sessions, joined or not. */
  sessions(): number {
    return this.io.engine.clientsCount;
  }

  private hello(): Hello {
    const { daemon, classifier, room } = this.d;
    return {
      version: version(),
      classes: classifier.classNames ?? CLASS_NAMES,
      settings: daemon.settings,
      sources: daemon.allowed.map(redact),
      source: publicStatus(daemon.sourceStatus),
      limits: { epsMax: EPS_MAX, maxSteps: MAX_LIVE_STEPS, attacks: LIVE_ATTACKS, maxMessageBytes: MAX_MESSAGE_BYTES, ...Classroom.limits() },
      model: { inputSize: classifier.inputSize, numClasses: classifier.numClasses },
      ...room.hello(),
    };
  }

  private sendFrame(socket: LiveSocket, payload: FramePayload): void {
    const st = this.state.get(socket);
    if (!st) return;
    if (st.inFlight >= MAX_IN_FLIGHT) {
      st.skipped++;
      return;
    }
    st.inFlight++;
    st.sent++;
    socket.timeout(this.d.ackTimeoutMs).emit('frame', { ...payload, images: pickImages(payload.images, this.d.room.views.get(socket.id)) }, () => {
      // Acked or timed out: either way the client may have the next frame.
      st.inFlight = Math.max(0, st.inFlight - 1);
    });
  }

  private connected(socket: LiveSocket): void {
    const { daemon, log, config } = this.d;
    this.state.set(socket, { inFlight: 0, sent: 0, skipped: 0 });
    this.classroom.connected(socket);
    log.info('socket.connected', { id: socket.id, ip: socket.handshake.address, clients: this.clients() });
    socket.emit('hello', this.hello());
    socket.emit('status', publicStatus(daemon.sourceStatus));
    // The last frame may have been encoded for nobody: encode what a page draws, then send it.
    const last = daemon.last;
    if (last)
      void ensureImages(last, IMAGE_KEYS, config.jpegQuality).then(
        () => this.sendFrame(socket, framePayload(last, daemon.stats.fps())),
        () => undefined,
      );

    const reject = (code: string, message: string, ack?: Ack): void => {
      socket.emit('error', { code, message });
      ack?.({ ok: false, code, error: message });
    };
    // Every event goes through here first: unknown names, extra arguments, binary and oversized
    // payloads are answered with 'error' and never reach a handler.
    socket.onAny((event: unknown, ...args: unknown[]) => {
      const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as Ack) : undefined;
      const name = typeof event === 'string' ? event : '';
      if (!(CLIENT_EVENTS as readonly string[]).includes(name)) {
        reject('unknown_event', `unknown event '${name.slice(0, 40)}'`, ack);
        return;
      }
      if (args.length !== 1) {
        reject('bad_message', `'${name}' takes exactly one argument`, ack);
        return;
      }
      const size = messageSize(args[0]);
      if (size > MAX_MESSAGE_BYTES) {
        reject('too_large', size === Infinity ? 'binary payloads are not accepted' : `message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`, ack);
        return;
      }
      try {
        this.dispatch(name, socket, args[0], reject, ack);
      } catch (e) {
        log.error('socket.handler_failed', { event: name, error: (e as Error).message });
        reject('internal', 'request failed', ack);
      }
    });
    // An incoming event named 'error' would otherwise reach EventEmitter's throw-if-unhandled path.
    socket.on('error', () => undefined);
    socket.on('disconnect', (reason) => {
      this.classroom.disconnected(socket);
      const st = this.state.get(socket);
      log.info('socket.disconnected', { id: socket.id, reason, sent: st?.sent, skipped: st?.skipped, clients: this.clients() });
    });
  }

  private dispatch(name: string, socket: LiveSocket, msg: unknown, reject: (code: string, message: string, ack?: Ack) => void, ack?: Ack): void {
    const { daemon, classifier } = this.d;
    if (name === 'settings') {
      const v = validateSettings(msg, classifier.numClasses);
      if (!v.ok) return reject('invalid', v.error, ack);
      const settings = daemon.updateSettings(v.value, socket.id);
      ack?.({ ok: true, settings, ...(v.notes ? { notes: v.notes } : {}) });
    } else if (name === 'source') {
      const v = validateSourceRequest(msg, daemon.allowed.map(redact));
      if (!v.ok) return reject('invalid', v.error, ack);
      // Switching restarts capture for everyone: one global budget, whoever asks.
      const ok = this.sourceLimit.take('global');
      if (ok !== true) return reject('rate_limited', `source switches are limited: retry in ${ok} s`, ack);
      const real = daemon.allowed.find((s) => redact(s) === v.value.source) ?? v.value.source;
      daemon.switchSource(real).then(
        () => ack?.({ ok: true, source: v.value.source }),
        (e: Error) => reject('source_failed', e.message.split('\n')[0], ack),
      );
    } else if (isClassroomEvent(name)) {
      this.classroom.handle(name, socket, msg, reject, ack);
    }
  }

  /** The daemon's results and state changes, to every page. */
  private broadcastDaemon(): void {
    const { daemon } = this.d;
    daemon.on('result', (r: FrameResult) => {
      if (this.clients() === 0) return;
      const payload = framePayload(r, daemon.stats.fps());
      for (const socket of this.io.sockets.sockets.values()) this.sendFrame(socket, payload);
    });
    daemon.on('status', (s: SourceStatus) => this.io.emit('status', publicStatus(s)));
    daemon.on('settings', (s) => this.io.emit('settings', s));
    daemon.on('snapshot', (file: string) => this.io.emit('snapshot', { file: path.basename(file) }));
  }

  private sendStats(): void {
    if (this.clients() === 0) return;
    const m = this.d.daemon.metrics();
    const latency = {} as StatsMessage['latency'];
    for (const s of STAGES) latency[s] = { p50: m.latency[s].p50, p95: m.latency[s].p95 };
    const stats: StatsMessage = {
      fps: m.fps,
      fooledRate: m.fooledRate,
      stickerFooledRate: m.stickerFooledRate,
      stalledFrames: m.stalledFrames,
      frames: m.frames,
      dropped: m.dropped,
      latency,
      clients: this.clients(),
      numTensors: m.numTensors,
      rssMB: m.rssMB,
      backend: m.backend,
    };
    this.io.emit('stats', stats);
  }

  /** No more stats; every page is told the daemon is stopping (before the daemon stops). */
  announceStop(): void {
    clearInterval(this.statsTimer);
    this.io.emit('status', { state: 'stopped', source: redact(this.d.daemon.sourceSpec), message: 'daemon shutting down', at: Date.now() });
  }

  /** Disconnects every socket and closes socket.io with the HTTP server under it. */
  async close(server: http.Server): Promise<void> {
    clearInterval(this.statsTimer);
    this.io.disconnectSockets(true);
    await new Promise<void>((resolve) => {
      this.io.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
