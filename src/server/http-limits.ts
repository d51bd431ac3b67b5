/**
 * Bounds on what one TCP peer can hold open: a request must send its headers within
 * `headersTimeoutMs` and finish within `requestTimeoutMs` (slowloris), an idle keep-alive
 * connection is closed after `keepAliveTimeoutMs`, and at most `maxConnections` connections are
 * open at once (beyond that new ones are dropped at accept). Upgraded connections (the live
 * socket) are exempt from the request timeouts; engine.io's ping and the admission timeout
 * (admission.ts) bound them instead.
 */
import * as http from 'node:http';
import type { RequestListener } from 'node:http';
import type { Logger } from './log';

export interface HttpLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  /** How often Node checks the request timeouts. */
  checkIntervalMs: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  // Longer than engine.io's long-polling request (pingInterval, 10 s).
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  checkIntervalMs: 1_000,
});

export function createLimitedServer(app: RequestListener, limits: HttpLimits, log: Logger): http.Server {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
    app,
  );
  server.maxConnections = limits.maxConnections;
  server.on('drop', (d?: { remoteAddress?: string }) => {
    log.warn('http.connection_dropped', { reason: `${limits.maxConnections} connections open`, ip: d?.remoteAddress });
  });
  return server;
}
