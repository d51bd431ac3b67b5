/**
 * Access control and abuse limits for the page, the API and the socket.
 *
 * - Token: required whenever the daemon listens beyond loopback (or when forced). Presented as
 *   ?token=… once (answered with an HttpOnly cookie and a redirect that drops it from the URL),
 *   an `Authorization: Bearer` / `X-Advsign-Token` header, the cookie, or socket.io's handshake
 *   `auth.token`. Compared in constant time.
 * - Origin: a browser page on another site must not drive the daemon through the visitor's
 *   browser (WebSockets ignore CORS), so a cross-origin Origin header is refused.
 * - Host: bound to loopback, only loopback Host names are served (DNS rebinding).
 * - Rate limits: token buckets for the expensive requests.
 */
import * as crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopback } from './config';

export const TOKEN_COOKIE = 'advsign_token';

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

export function tokensEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}

/** The token a request carries (header, cookie or query), if any. */
export function requestToken(req: IncomingMessage, query?: Record<string, unknown>): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const h = req.headers['x-advsign-token'];
  if (typeof h === 'string' && h) return h;
  const q = query?.token;
  if (typeof q === 'string' && q) return q;
  const c = parseCookies(req.headers.cookie)[TOKEN_COOKIE];
  return c || null;
}

function hostOnly(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  return h.replace(/:\d+$/, '');
}

/** Refuses cross-site Origins (the Origin's host must equal the Host header). */
export function originAllowed(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || origin === '') return true; // not a cross-site browser request
  if (origin === 'null') return false; // sandboxed frames, file:// pages
  try {
    const u = new URL(origin);
    return u.host.toLowerCase() === String(req.headers.host ?? '').toLowerCase();
  } catch {
    return false;
  }
}

/** When bound to loopback, only loopback Host names: a rebinding DNS name pointing at 127.0.0.1 is refused. */
export function hostAllowed(req: IncomingMessage, boundHost: string): boolean {
  if (!isLoopback(boundHost)) return true;
  const h = req.headers.host;
  if (!h) return true; // HTTP/1.0 clients; no browser sends this
  return isLoopback(hostOnly(h).replace(/^\[|\]$/g, ''));
}

/** A token bucket per key: `burst` requests at once, refilled at `perMinute`. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly burst: number,
    readonly perMinute: number,
  ) {}

  /** True if allowed (and counted); otherwise the seconds to wait. */
  take(key: string, now = Date.now()): true | number {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 10_000) this.buckets.clear(); // bounded memory under a flood of keys
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 60_000) * this.perMinute);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    return Math.ceil(((1 - b.tokens) / this.perMinute) * 60);
  }
}
