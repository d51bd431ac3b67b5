/**
 * The monitoring server: express for the page, the API and health/metrics (http.ts), socket.io
 * for the live stream and the controls (socket.ts), over one Daemon. Startable in-process with an
 * injected classifier and source on port 0 (tests, the live bench); `advsign serve` wraps it
 * with configuration and signals.
 *
 * The socket protocol (events and payload types, both directions) is in protocol.ts; every client
 * message is validated by schema.ts. The classroom pieces (virtual sticker, print jobs, per-page
 * views) live in classroom*.ts and are wired in by http.ts and socket.ts.
 */
import type * as http from 'node:http';
import type { Classifier } from '../inference/model';
import type { FrameSource } from '../capture/types';
import type { CaptureOptions } from '../capture/factory';
import type { GpioController } from '../gpio';
import { resolveToken, ServeConfig, tokenRequired } from './config';
import { createLogger, Logger } from './log';
import { Daemon } from './daemon';
import { createLimitedServer, DEFAULT_HTTP_LIMITS, HttpLimits } from './http-limits';
import { listen, serverUrls } from './listen';
import { redact } from './redact';
import type { FramePayload, LiveServer } from './protocol';
import { Classroom } from './classroom';
import { createHttpApp, publicStatus, RateLimits } from './http';
import { framePayload, LiveSockets, MAX_HTTP_BUFFER } from './socket';
import type { ServerMetrics } from './metrics-text';

export type { FramePayload };
export { framePayload, MAX_HTTP_BUFFER, redact };

export interface ServerOptions {
  config: ServeConfig;
  classifier: Classifier;
  logger?: Logger;
  sourceFactory?: (spec: string) => FrameSource;
  capture?: CaptureOptions;
  gpio?: GpioController;
  allowedSources?: string[];
  /** Rate limits as [burst, perMinute] (tests tighten or loosen them). */
  limits?: RateLimits;
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
  io: LiveServer;
  http: http.Server;
  clients(): number;
  close(): Promise<void>;
}

/** The daemon, its HTTP server and its sockets: `AdvsignServer.start(options)`, then `close()`. */
export class AdvsignServer implements RunningServer {
  url = '';
  urls: string[] = [];
  port = 0;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly host: string,
    private readonly log: Logger,
    readonly token: string | null,
    readonly tokenGenerated: boolean,
    readonly daemon: Daemon,
    private readonly room: Classroom,
    readonly http: http.Server,
    private readonly sockets: LiveSockets,
  ) {}

  get io(): LiveServer {
    return this.sockets.io;
  }

  clients(): number {
    return this.sockets.clients();
  }

  static async start(opts: ServerOptions): Promise<AdvsignServer> {
    const cfg = opts.config;
    const log = opts.logger ?? createLogger({ level: cfg.logLevel });
    const { token, generated } = resolveToken(cfg);
    const daemon = new Daemon({
      config: cfg,
      classifier: opts.classifier,
      logger: log,
      sourceFactory: opts.sourceFactory,
      capture: opts.capture,
      gpio: opts.gpio,
      allowedSources: opts.allowedSources,
    });
    const limits = opts.limits ?? {};
    const room = new Classroom({ classifier: opts.classifier, daemon, logger: log, config: cfg, modelPath: opts.modelPath ?? null });
    // A bad --sticker file stops the start in one line, before the port is bound.
    await room.loadConfigured();

    let sockets: LiveSockets | null = null;
    const metrics = (): ServerMetrics => {
      const m = daemon.metrics();
      return { ...m, source: publicStatus(m.source), clients: sockets?.clients() ?? 0, sessions: sockets?.sessions() ?? 0 };
    };
    const app = createHttpApp({ config: cfg, token, daemon, room, classifier: opts.classifier, log, limits, metrics });
    const server = createLimitedServer(app, { ...DEFAULT_HTTP_LIMITS, maxConnections: cfg.maxConnections, ...opts.httpLimits }, log);
    sockets = new LiveSockets(server, {
      config: cfg,
      token,
      daemon,
      room,
      classifier: opts.classifier,
      log,
      limits,
      ackTimeoutMs: opts.ackTimeoutMs ?? 5000,
      authTimeoutMs: opts.authTimeoutMs,
    });
    const self = new AdvsignServer(cfg.host, log, token, generated, daemon, room, server, sockets);

    self.port = await listen(server, cfg.port, cfg.host);
    ({ local: self.url, shown: self.urls } = serverUrls(cfg.host, self.port));
    log.info('server.listening', { host: cfg.host, port: self.port, tokenRequired: Boolean(token), forced: tokenRequired(cfg) && cfg.requireToken });
    try {
      await daemon.start();
    } catch (e) {
      sockets.io.close();
      throw e;
    }
    return self;
  }

  /** Stops the print jobs, tells the pages, stops the daemon, then closes sockets and HTTP (once). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.room.close();
      this.sockets.announceStop();
      await this.daemon.stop();
      await this.sockets.close(this.http);
      this.log.info('server.closed', {});
    })();
    return this.closing;
  }
}

export function startServer(opts: ServerOptions): Promise<RunningServer> {
  return AdvsignServer.start(opts);
}
