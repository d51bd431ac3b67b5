/**
 * Who may join the live socket. An engine.io session (what a bare websocket to /socket.io/
 * opens) costs nothing and needs no token, so it must not count: only sockets that joined the
 * namespace with a valid token count against --max-clients, and a session that has not joined
 * within AUTH_TIMEOUT_MS is closed by socket.io (its connectTimeout, set by app.ts). Anyone can
 * still open sessions, but they expire, and the operator is never told "too many clients"
 * because of them.
 */
import type { LiveServer, LiveSocket } from './protocol';
import type { Logger } from './log';
import { requestToken, tokensEqual } from './auth';

/** A session that has not joined the namespace (with its token) by then is closed. */
export const AUTH_TIMEOUT_MS = 5_000;

/**
 * Closing a websocket sends a close frame and waits for the peer's (ws's closeTimeout: 30 s); a
 * hostile peer never answers, and would keep its connection that long after the session ended.
 */
const CLOSE_GRACE_MS = 1_000;

/** The parts of an engine.io session used here. */
interface EngineSession {
  transport: { name: string };
  request: { socket: { destroy(): void } };
  once(event: 'close', listener: (reason: string) => void): void;
}

export interface AdmissionOptions {
  token: string | null;
  maxClients: number;
  log: Logger;
}

export interface Admission {
  /** Admitted (authenticated, namespace-joined) clients. */
  clients(): number;
}

function presentedToken(socket: LiveSocket): string | null {
  const auth = (socket.handshake.auth ?? {}) as Record<string, unknown>;
  return typeof auth.token === 'string' ? auth.token : requestToken(socket.request);
}

/** Installs the token check and the client cap as the namespace's middleware. */
export function installAdmission(io: LiveServer, o: AdmissionOptions): Admission {
  const nsp = io.of('/');
  // Admitted by the middleware but not yet in nsp.sockets (socket.io adds them a tick later):
  // counted so that a burst of simultaneous joins cannot overshoot the cap.
  let joining = 0;
  const clients = (): number => nsp.sockets.size;
  io.engine.on('connection', (session: EngineSession) => {
    session.once('close', (reason) => {
      if (reason !== 'forced close' || session.transport.name !== 'websocket') return;
      const tcp = session.request.socket;
      setTimeout(() => tcp.destroy(), CLOSE_GRACE_MS).unref();
    });
  });
  io.use((socket, next) => {
    if (o.token) {
      const given = presentedToken(socket);
      if (!given || !tokensEqual(given, o.token)) {
        o.log.warn('socket.unauthorized', { ip: socket.handshake.address });
        next(new Error('unauthorized'));
        return;
      }
    }
    if (clients() + joining >= o.maxClients) {
      o.log.warn('socket.refused', { reason: 'too many clients', clients: clients(), maxClients: o.maxClients });
      next(new Error('too many clients'));
      return;
    }
    joining++;
    setImmediate(() => {
      joining--;
    });
    next();
  });
  return { clients };
}
