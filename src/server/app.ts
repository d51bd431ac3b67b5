/**
 * The monitoring server: express for the page, the API and health/metrics, socket.io for the
 * live stream and the controls. Startable in-process with an injected classifier and source on
 * port 0 (tests, the live bench); `advsign serve` wraps it with configuration and signals.
 *
 * The socket protocol (events and payload types, both directions) is in protocol.ts; every client
 * message is validated by schema.ts. The classroom pieces (virtual sticker, print jobs, per-page
 * views) live in classroom*.ts and are wired in here.
 */
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import express, { NextFunction, Request, Response } from 'express';
import { Server as IoServer, Socket } from 'socket.io';
import type { Classifier } from '../inference/model';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import type { FrameSource, SourceStatus } from '../capture/types';
import type { CaptureOptions } from '../capture/factory';
import type { GpioController } from '../gpio';
import { projectRoot, version } from '../cli/paths';
import { EPS_MAX, LIVE_ATTACKS, ServeConfig, resolveToken, tokenRequired } from './config';
import { createLogger, Logger } from './log';
import { Daemon } from './daemon';
import { ensureImages, FrameResult } from './pipeline';
import { CLIENT_EVENTS, MAX_LIVE_STEPS, MAX_MESSAGE_BYTES, messageSize, validatePrintQuery, validateSettings, validateSourceRequest } from './schema';
import { hostAllowed, originAllowed, RateLimiter, requestToken, TOKEN_COOKIE, tokensEqual } from './auth';
import { AUTH_TIMEOUT_MS, installAdmission } from './admission';
import { createLimitedServer, DEFAULT_HTTP_LIMITS, HttpLimits } from './http-limits';
import { listen, serverUrls } from './listen';
import { redact } from './redact';
import { adversarialPdf } from './print';
import { snapshotPng } from './snapshot';
import { round, STAGES } from './stats';
import { IMAGE_KEYS, FramePayload, Hello, StatsMessage } from './protocol';
import { Classroom } from './classroom';
import { classroomSocket, isClassroomEvent } from './classroom-socket';
import { classroomRoutes } from './classroom-http';
import { pickImages } from './views';

export type { FramePayload };

/** socket.io's transport limit: anything bigger is cut off before it is even parsed. */
export const MAX_HTTP_BUFFER = 16 * 1024;

export interface ServerOptions {
  config: ServeConfig;
  classifier: Classifier;
  logger?: Logger;
  sourceFactory?: (spec: string) => FrameSource;
  capture?: CaptureOptions;
  gpio?: GpioController;
  allowedSources?: string[];
  /** Rate limits as [burst, perMinute] (tests tighten or loosen them). */
  limits?: Partial<Record<'print' | 'snapshot' | 'source' | 'printJob' | 'upload', [number, number]>>;
  /** The classifier's model folder, for print jobs (null or absent: the page cannot start them). */
  modelPath?: string | null;
  /** Milliseconds a client may take to ack a frame before it is sent the next one anyway. */
  ackTimeoutMs?: number;
  /** Server timeouts and the connection cap (default DEFAULT_HTTP_LIMITS, maxConnections from the config). */
  httpLimits?: Partial<HttpLimits>;
  /** A session that has not joined with its token by then is closed (default AUTH_TIMEOUT_MS). */
  authTimeoutMs?: number;
}

export interface RunningServer {
  /** A URL this process can connect to. */
  url: string;
  /** The addresses to tell the user (for 0.0.0.0: each network address). */
  urls: string[];
  host: string;
  port: number;
  /** The access token in force (null: none needed). */
  token: string | null;
  tokenGenerated: boolean;
  daemon: Daemon;
  io: IoServer;
  http: http.Server;
  clients(): number;
  close(): Promise<void>;
}

export { redact };

function publicStatus(s: SourceStatus): SourceStatus {
  return { ...s, source: redact(s.source), ...(s.message ? { message: redact(s.message) } : {}) };
}

function staticDir(): string {
  const candidates = [path.join(__dirname, 'static'), path.join(projectRoot(), 'src', 'server', 'static')];
  return candidates.find((d) => fs.existsSync(path.join(d, 'index.html'))) ?? candidates[candidates.length - 1];
}

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Content-Security-Policy', "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  next();
}

export function framePayload(r: FrameResult, fps: number): FramePayload {
  const lat = {} as FrameResult['latency'];
  for (const s of STAGES) lat[s] = round(r.latency[s], 2);
  return {
    seq: r.seq, width: r.width, height: r.height, roi: r.roi,
    label: r.label !== undefined ? { classId: r.label, name: CLASS_NAMES[r.label] ?? String(r.label) } : null,
    clean: r.clean, adversarial: r.adversarial, fooled: r.fooled, attack: r.attack,
    linf: round(r.linf, 5), moved: round(r.moved, 4), stall: r.stall, amplify: round(r.amplify, 3), latency: lat, fps: round(fps, 1), sentAt: Date.now(),
    sticker: r.sticker, images: r.images,
  };
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const cfg = opts.config;
  const log = opts.logger ?? createLogger({ level: cfg.logLevel });
  const { token, generated } = resolveToken(cfg);
  const daemon = new Daemon({
    config: cfg, classifier: opts.classifier, logger: log, sourceFactory: opts.sourceFactory,
    capture: opts.capture, gpio: opts.gpio, allowedSources: opts.allowedSources,
  });
  const lim = opts.limits ?? {};
  const printLimit = new RateLimiter(...(lim.print ?? [3, 6]));
  const snapshotLimit = new RateLimiter(...(lim.snapshot ?? [5, 20]));
  const sourceLimit = new RateLimiter(...(lim.source ?? [3, 12]));
  const ackTimeout = opts.ackTimeoutMs ?? 5000;
  const room = new Classroom({ classifier: opts.classifier, daemon, logger: log, config: cfg, modelPath: opts.modelPath ?? null });
  // A bad --sticker file stops the start in one line, before the port is bound.
  await room.loadConfigured();

  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(securityHeaders);
  app.use((req, res, next) => {
    if (!hostAllowed(req, cfg.host)) {
      res.status(421).json({ error: 'unexpected Host header' });
      return;
    }
    if (!originAllowed(req)) {
      res.status(403).json({ error: 'cross-origin request refused' });
      return;
    }
    next();
  });
  // Liveness stays open (supervisors and load balancers probe it); it tells nothing secret.
  app.get('/healthz', (_req, res) => {
    const h = daemon.health();
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).json({ ...h, source: publicStatus(h.source) });
  });
  if (token) {
    app.use((req, res, next) => {
      const given = requestToken(req, req.query as Record<string, unknown>);
      if (given && tokensEqual(given, token)) {
        if (typeof req.query.token === 'string') {
          res.cookie(TOKEN_COOKIE, token, { httpOnly: true, sameSite: 'strict', path: '/' });
          if (req.method === 'GET' && (req.path === '/' || req.path === '/index.html')) {
            res.redirect(302, '/'); // drop the token from the address bar and history
            return;
          }
        }
        next();
        return;
      }
      log.warn('http.unauthorized', { path: req.path.slice(0, 100), ip: req.ip });
      if (req.accepts(['html', 'json']) === 'html') {
        res.status(401).type('html').send('<!doctype html><meta charset="utf-8"><title>advsign</title><p>This advsign daemon needs its access token: open the address printed when it started (it ends in <code>?token=…</code>).</p>');
      } else {
        res.status(401).json({ error: 'token required' });
      }
    });
  }
  app.use(express.static(staticDir(), { index: 'index.html', maxAge: 0 }));

  app.get('/metrics', (_req, res) => {
    const m = daemon.metrics();
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ...m, source: publicStatus(m.source), clients: clients(), sessions: io.engine.clientsCount });
  });

  const limited = (limiter: RateLimiter, req: Request, res: Response): boolean => {
    const ok = limiter.take(req.ip ?? 'unknown');
    if (ok === true) return true;
    res.setHeader('Retry-After', String(ok));
    res.status(429).json({ error: `too many requests: retry in ${ok} s` });
    return false;
  };

  app.get('/api/snapshot.png', async (req, res, next) => {
    try {
      if (!limited(snapshotLimit, req, res)) return;
      const r = daemon.last;
      if (!r) {
        res.status(503).json({ error: 'no frame yet' });
        return;
      }
      const png = await snapshotPng(r);
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Disposition', `attachment; filename="advsign-snapshot-${r.seq}.png"`);
      res.type('png').send(png);
    } catch (e) {
      next(e);
    }
  });

  app.get('/api/print', async (req, res, next) => {
    try {
      const q = validatePrintQuery(req.query as Record<string, unknown>);
      if (!q.ok) {
        res.status(400).json({ error: q.error });
        return;
      }
      if (!limited(printLimit, req, res)) return;
      const r = daemon.last;
      if (!r) {
        res.status(503).json({ error: 'no frame yet' });
        return;
      }
      const pdf = await adversarialPdf(r, q.value.sizeMm, { caption: q.value.caption });
      log.info('print.pdf', { sizeMm: q.value.sizeMm, attack: r.attack.name, bytes: pdf.length });
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Disposition', `attachment; filename="advsign-sign-${q.value.sizeMm}mm.pdf"`);
      res.type('application/pdf').send(pdf);
    } catch (e) {
      next(e);
    }
  });

  classroomRoutes(app, { room, classifier: opts.classifier, log, uploadLimit: new RateLimiter(...(lim.upload ?? [5, 10])) });

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    log.error('http.error', { error: msg });
    if (!res.headersSent) res.status(err instanceof UserError ? 400 : 500).json({ error: msg });
  });

  const server = createLimitedServer(app, { ...DEFAULT_HTTP_LIMITS, maxConnections: cfg.maxConnections, ...opts.httpLimits }, log);
  const io = new IoServer(server, {
    maxHttpBufferSize: MAX_HTTP_BUFFER,
    serveClient: true, // the page loads /socket.io/socket.io.js from the installed package: no CDN
    allowRequest: (req, cb) => cb(null, hostAllowed(req, cfg.host) && originAllowed(req)),
    pingInterval: 10_000,
    pingTimeout: 8_000,
    connectTimeout: opts.authTimeoutMs ?? AUTH_TIMEOUT_MS,
  });
  const admission = installAdmission(io, { token, maxClients: cfg.maxClients, log });
  const clients = admission.clients;

  // Up to two frames unacknowledged per client: enough to hide the round trip on a fast link,
  // and a slow client simply misses frames (it always gets a recent one, never a backlog).
  const MAX_IN_FLIGHT = 2;
  interface ClientState { inFlight: number; sent: number; skipped: number }
  const state = new WeakMap<Socket, ClientState>();

  const hello = (): Hello => ({
    version: version(), classes: opts.classifier.classNames ?? CLASS_NAMES, settings: daemon.settings, sources: daemon.allowed.map(redact),
    source: publicStatus(daemon.sourceStatus),
    limits: { epsMax: EPS_MAX, maxSteps: MAX_LIVE_STEPS, attacks: LIVE_ATTACKS, maxMessageBytes: MAX_MESSAGE_BYTES, ...Classroom.limits() },
    model: { inputSize: opts.classifier.inputSize, numClasses: opts.classifier.numClasses },
    ...room.hello(),
  });
  const classroom = classroomSocket({
    io, room, daemon, numClasses: opts.classifier.numClasses, log, jobLimit: new RateLimiter(...(lim.printJob ?? [3, 6])),
  });

  const sendFrame = (socket: Socket, payload: FramePayload): void => {
    const st = state.get(socket);
    if (!st) return;
    if (st.inFlight >= MAX_IN_FLIGHT) {
      st.skipped++;
      return;
    }
    st.inFlight++;
    st.sent++;
    socket.timeout(ackTimeout).emit('frame', { ...payload, images: pickImages(payload.images, room.views.get(socket.id)) }, () => {
      // Acked or timed out: either way the client may have the next frame.
      st.inFlight = Math.max(0, st.inFlight - 1);
    });
  };

  io.on('connection', (socket) => {
    state.set(socket, { inFlight: 0, sent: 0, skipped: 0 });
    classroom.connected(socket);
    log.info('socket.connected', { id: socket.id, ip: socket.handshake.address, clients: clients() });
    socket.emit('hello', hello());
    socket.emit('status', publicStatus(daemon.sourceStatus));
    // The last frame may have been encoded for nobody: encode what a page draws, then send it.
    const last = daemon.last;
    if (last) void ensureImages(last, IMAGE_KEYS, cfg.jpegQuality).then(() => sendFrame(socket, framePayload(last, daemon.stats.fps())), () => undefined);

    const reject = (code: string, message: string, ack?: (r: unknown) => void): void => {
      socket.emit('error', { code, message });
      ack?.({ ok: false, code, error: message });
    };

    // Every event goes through here first: unknown names, extra arguments, binary and oversized
    // payloads are answered with 'error' and never reach a handler.
    socket.onAny((event: unknown, ...args: unknown[]) => {
      const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : undefined;
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
        if (name === 'settings') {
          const v = validateSettings(args[0], opts.classifier.numClasses);
          if (!v.ok) {
            reject('invalid', v.error, ack);
            return;
          }
          const settings = daemon.updateSettings(v.value, socket.id);
          ack?.({ ok: true, settings, ...(v.notes ? { notes: v.notes } : {}) });
        } else if (name === 'source') {
          const v = validateSourceRequest(args[0], daemon.allowed.map(redact));
          if (!v.ok) {
            reject('invalid', v.error, ack);
            return;
          }
          // Switching restarts capture for everyone: one global budget, whoever asks.
          const ok = sourceLimit.take('global');
          if (ok !== true) {
            reject('rate_limited', `source switches are limited: retry in ${ok} s`, ack);
            return;
          }
          const real = daemon.allowed.find((s) => redact(s) === v.value.source) ?? v.value.source;
          daemon.switchSource(real).then(
            () => ack?.({ ok: true, source: v.value.source }),
            (e: Error) => reject('source_failed', e.message.split('\n')[0], ack),
          );
        } else if (isClassroomEvent(name)) {
          classroom.handle(name, socket, args[0], reject, ack);
        }
      } catch (e) {
        log.error('socket.handler_failed', { event: name, error: (e as Error).message });
        reject('internal', 'request failed', ack);
      }
    });

    // An incoming event named 'error' would otherwise reach EventEmitter's throw-if-unhandled path.
    socket.on('error', () => undefined);

    socket.on('disconnect', (reason) => {
      classroom.disconnected(socket);
      const st = state.get(socket);
      log.info('socket.disconnected', { id: socket.id, reason, sent: st?.sent, skipped: st?.skipped, clients: clients() });
    });
  });

  daemon.on('result', (r: FrameResult) => {
    if (clients() === 0) return;
    const payload = framePayload(r, daemon.stats.fps());
    for (const socket of io.sockets.sockets.values()) sendFrame(socket, payload);
  });
  daemon.on('status', (s: SourceStatus) => io.emit('status', publicStatus(s)));
  daemon.on('settings', (s) => io.emit('settings', s));
  daemon.on('snapshot', (file: string) => io.emit('snapshot', { file: path.basename(file) }));

  const statsTimer = setInterval(() => {
    if (clients() === 0) return;
    const m = daemon.metrics();
    const latency: Record<string, { p50: number; p95: number }> = {};
    for (const s of STAGES) latency[s] = { p50: m.latency[s].p50, p95: m.latency[s].p95 };
    const stats: StatsMessage = { fps: m.fps, fooledRate: m.fooledRate, stickerFooledRate: m.stickerFooledRate, stalledFrames: m.stalledFrames,
      frames: m.frames, dropped: m.dropped, latency, clients: clients(), numTensors: m.numTensors, rssMB: m.rssMB, backend: m.backend };
    io.emit('stats', stats);
  }, 1000);
  statsTimer.unref();

  const port = await listen(server, cfg.port, cfg.host);
  const { local: url, shown: urls } = serverUrls(cfg.host, port);
  log.info('server.listening', { host: cfg.host, port, tokenRequired: Boolean(token), forced: tokenRequired(cfg) && cfg.requireToken });

  try {
    await daemon.start();
  } catch (e) {
    io.close();
    throw e;
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(statsTimer);
      await room.close();
      io.emit('status', { state: 'stopped', source: redact(daemon.sourceSpec), message: 'daemon shutting down', at: Date.now() });
      await daemon.stop();
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => {
        io.close(() => resolve());
        server.closeAllConnections();
      });
      log.info('server.closed', {});
    })();
    return closing;
  };

  return { url, urls, host: cfg.host, port, token, tokenGenerated: generated, daemon, io, http: server, clients, close };
}
