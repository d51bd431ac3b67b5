/**
 * The daemon's HTTP side: security headers, the Host/Origin check, the token gate, the page,
 * /healthz, /metrics (Prometheus text; JSON at /metrics.json), the snapshot and print downloads
 * and the classroom routes (classroom-http.ts). Paths are in docs/ARCHITECTURE.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import express, { NextFunction, Request, Response } from 'express';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import type { SourceStatus } from '../capture/types';
import { projectRoot, version } from '../util/paths';
import type { ServeConfig } from './config';
import type { Logger } from './log';
import type { Daemon } from './daemon';
import { validatePrintQuery } from './schema';
import { hostAllowed, originAllowed, RateLimiter, requestToken, TOKEN_COOKIE, tokensEqual } from './auth';
import { redact } from './redact';
import { adversarialPdf } from './print';
import { snapshotPng } from './snapshot';
import type { Classroom } from './classroom';
import { classroomRoutes } from './classroom-http';
import { PROMETHEUS_CONTENT_TYPE, prometheusText, ServerMetrics } from './metrics-text';

/** Rate limits as [burst, perMinute], per client address. */
export type RateLimits = Partial<Record<'print' | 'snapshot' | 'source' | 'printJob' | 'upload', [number, number]>>;

/** What the HTTP and the socket side share: the daemon, its configuration and the classroom. */
export interface ServerParts {
  config: ServeConfig;
  /** The access token in force (null: none needed). */
  token: string | null;
  daemon: Daemon;
  room: Classroom;
  classifier: Classifier;
  log: Logger;
  limits: RateLimits;
}

export interface HttpDeps extends ServerParts {
  /** The figures of /metrics, with the socket counts (the socket side exists only after the app). */
  metrics(): ServerMetrics;
}

/** A source status as clients may see it: camera credentials masked. */
export function publicStatus(s: SourceStatus): SourceStatus {
  return { ...s, source: redact(s.source), ...(s.message ? { message: redact(s.message) } : {}) };
}

function staticDir(): string {
  const candidates = [path.join(__dirname, 'static'), path.join(projectRoot(), 'src', 'server', 'static')];
  return candidates.find((d) => fs.existsSync(path.join(d, 'index.html'))) ?? candidates[candidates.length - 1];
}

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader(
    'Content-Security-Policy',
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  );
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  next();
}

/** Host and Origin first (DNS rebinding, cross-site requests), then liveness, then the token. */
function guard(app: express.Express, d: HttpDeps): void {
  const { config: cfg, token, log } = d;
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
    const h = d.daemon.health();
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).json({ ...h, source: publicStatus(h.source) });
  });
  if (!token) return;
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
      res
        .status(401)
        .type('html')
        .send(
          '<!doctype html><meta charset="utf-8"><title>advsign</title><p>This advsign daemon needs its access token: open the address printed when it started (it ends in <code>?token=…</code>).</p>',
        );
    } else {
      res.status(401).json({ error: 'token required' });
    }
  });
}

/** Prometheus text for scrapers; the same figures as JSON at /metrics.json (or Accept: application/json). */
function metricsRoutes(app: express.Express, d: HttpDeps): void {
  app.get('/metrics.json', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json(d.metrics());
  });
  app.get('/metrics', (req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.vary('Accept');
    if (req.accepts(['text/plain', 'application/json']) === 'application/json') {
      res.json(d.metrics());
      return;
    }
    res.setHeader('Content-Type', PROMETHEUS_CONTENT_TYPE);
    res.send(prometheusText(d.metrics(), version()));
  });
}

/** This frame as a PNG snapshot or a printable PDF (rate-limited per address). */
function frameDownloads(app: express.Express, d: HttpDeps): void {
  const printLimit = new RateLimiter(...(d.limits.print ?? [3, 6]));
  const snapshotLimit = new RateLimiter(...(d.limits.snapshot ?? [5, 20]));
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
      const r = d.daemon.last;
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
      const r = d.daemon.last;
      if (!r) {
        res.status(503).json({ error: 'no frame yet' });
        return;
      }
      const pdf = await adversarialPdf(r, q.value.sizeMm, { caption: q.value.caption });
      d.log.info('print.pdf', { sizeMm: q.value.sizeMm, attack: r.attack.name, bytes: pdf.length });
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Disposition', `attachment; filename="advsign-sign-${q.value.sizeMm}mm.pdf"`);
      res.type('application/pdf').send(pdf);
    } catch (e) {
      next(e);
    }
  });
}

export function createHttpApp(d: HttpDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(securityHeaders);
  guard(app, d);
  app.use(express.static(staticDir(), { index: 'index.html', maxAge: 0 }));
  metricsRoutes(app, d);
  frameDownloads(app, d);
  classroomRoutes(app, { room: d.room, classifier: d.classifier, log: d.log, uploadLimit: new RateLimiter(...(d.limits.upload ?? [5, 10])) });

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    d.log.error('http.error', { error: msg });
    if (!res.headersSent) res.status(err instanceof UserError ? 400 : 500).json({ error: msg });
  });
  return app;
}
