/**
 * Validation of everything a client sends, written out by hand: exact types, ranges, known keys
 * only. A message that fails is answered with an 'error' event and otherwise ignored; nothing a
 * client sends can throw inside the daemon.
 */
import { EPS_MAX, LIVE_ATTACKS, LiveAttack } from './config';
import { ATTACK_LOSSES, AttackLoss } from '../attack/loss';
import { IMAGE_KEYS, ImageKey, PrintRequest, SettingsPatch, SourceRequest, StickerRequest, ViewRequest } from './protocol';

export type Result<T> = { ok: true; value: T; notes?: string[] } | { ok: false; error: string };

/** Client → server events. Anything else is rejected as unknown. */
export const CLIENT_EVENTS = ['settings', 'source', 'sticker', 'view', 'print'] as const;
export type ClientEvent = (typeof CLIENT_EVENTS)[number];

/** Largest accepted message (JSON), far below socket.io's transport limit. */
export const MAX_MESSAGE_BYTES = 1024;
export const MAX_LIVE_STEPS = 20;

export type { SettingsPatch };

const SETTINGS_KEYS = new Set(['attack', 'eps', 'targeted', 'target', 'steps', 'loss', 'roi', 'paused']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function hasBinary(v: unknown, depth = 0): boolean {
  if (Buffer.isBuffer(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return true;
  if (depth > 8 || v === null || typeof v !== 'object') return false;
  return Object.values(v as Record<string, unknown>).some((x) => hasBinary(x, depth + 1));
}

/** Size of a message as JSON; Infinity for anything that is not plain JSON (binary, cycles). */
export function messageSize(v: unknown): number {
  if (hasBinary(v)) return Infinity; // checked first: Buffer.toJSON would hide it from a replacer
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 0 : Buffer.byteLength(s);
  } catch {
    return Infinity;
  }
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

export function validateSettings(msg: unknown, numClasses: number): Result<SettingsPatch> {
  if (!isPlainObject(msg)) return { ok: false, error: 'settings must be an object' };
  const keys = Object.keys(msg);
  const unknown = keys.filter((k) => !SETTINGS_KEYS.has(k));
  if (unknown.length)
    return {
      ok: false,
      error: `unknown settings key${unknown.length > 1 ? 's' : ''}: ${unknown
        .slice(0, 5)
        .map((k) => k.slice(0, 32))
        .join(', ')}`,
    };
  if (keys.length === 0) return { ok: false, error: 'settings is empty' };
  const out: SettingsPatch = {};
  const notes: string[] = [];
  if ('attack' in msg) {
    const a = msg.attack;
    if (typeof a !== 'string' || !(LIVE_ATTACKS as readonly string[]).includes(a))
      return { ok: false, error: `attack must be one of ${LIVE_ATTACKS.join(', ')}` };
    out.attack = a as LiveAttack;
  }
  if ('eps' in msg) {
    const e = msg.eps;
    if (!finite(e)) return { ok: false, error: 'eps must be a finite number' };
    // Clamped, not refused: a slider overshooting by a hair should still work.
    out.eps = Math.min(EPS_MAX, Math.max(0, e));
    if (out.eps !== e) notes.push(`eps clamped to ${out.eps.toFixed(4)}`);
  }
  if ('targeted' in msg) {
    if (typeof msg.targeted !== 'boolean') return { ok: false, error: 'targeted must be true or false' };
    out.targeted = msg.targeted;
  }
  if ('target' in msg) {
    const t = msg.target;
    if (!finite(t) || !Number.isInteger(t) || t < 0 || t >= numClasses) return { ok: false, error: `target must be a class id 0…${numClasses - 1}` };
    out.target = t;
  }
  if ('steps' in msg) {
    const s = msg.steps;
    if (!finite(s) || !Number.isInteger(s) || s < 1 || s > MAX_LIVE_STEPS) return { ok: false, error: `steps must be a whole number 1…${MAX_LIVE_STEPS}` };
    out.steps = s;
  }
  if ('loss' in msg) {
    const l = msg.loss;
    if (typeof l !== 'string' || !(ATTACK_LOSSES as readonly string[]).includes(l))
      return { ok: false, error: `loss must be one of ${ATTACK_LOSSES.join(', ')}` };
    out.loss = l as AttackLoss;
  }
  if ('paused' in msg) {
    if (typeof msg.paused !== 'boolean') return { ok: false, error: 'paused must be true or false' };
    out.paused = msg.paused;
  }
  if ('roi' in msg) {
    const r = msg.roi;
    if (r === null) out.roi = null;
    else {
      if (!isPlainObject(r)) return { ok: false, error: 'roi must be {x, y, w, h} or null' };
      const rk = Object.keys(r);
      if (rk.length !== 4 || !['x', 'y', 'w', 'h'].every((k) => rk.includes(k))) return { ok: false, error: 'roi must have exactly x, y, w, h' };
      const { x, y, w, h } = r as Record<string, unknown>;
      if (![x, y, w, h].every(finite)) return { ok: false, error: 'roi values must be finite numbers' };
      const [nx, ny, nw, nh] = [x, y, w, h] as number[];
      if (nw < 0.02 || nh < 0.02 || nw > 1 || nh > 1) return { ok: false, error: 'roi w and h must be within 0.02…1 (fractions of the frame)' };
      // Nudged inside the frame rather than refused: a drag may end a pixel outside.
      const cx = Math.min(1 - nw, Math.max(0, nx));
      const cy = Math.min(1 - nh, Math.max(0, ny));
      out.roi = { x: cx, y: cy, w: nw, h: nh };
    }
  }
  return { ok: true, value: out, ...(notes.length ? { notes } : {}) };
}

export function validateSourceRequest(msg: unknown, allowed: readonly string[]): Result<SourceRequest> {
  if (!isPlainObject(msg)) return { ok: false, error: 'source request must be an object {source}' };
  const keys = Object.keys(msg);
  if (keys.length !== 1 || keys[0] !== 'source') return { ok: false, error: 'source request must have exactly the key source' };
  const s = msg.source;
  if (typeof s !== 'string' || s.length === 0 || s.length > 300) return { ok: false, error: 'source must be a string' };
  // Only sources the operator configured: a client must not make the daemon open arbitrary files or URLs.
  if (!allowed.includes(s)) return { ok: false, error: `source '${s.slice(0, 60)}' is not offered (choose one of: ${allowed.join(', ')})` };
  return { ok: true, value: { source: s } };
}

/** GET /api/print query: size_mm within 10…1000 mm. */
export function validatePrintQuery(q: Record<string, unknown>): Result<{ sizeMm: number; caption: boolean }> {
  const unknown = Object.keys(q).filter((k) => k !== 'size_mm' && k !== 'caption' && k !== 'token');
  if (unknown.length) return { ok: false, error: `unknown query parameter ${unknown[0].slice(0, 32)}` };
  const raw = q.size_mm;
  if (raw === undefined) return { ok: true, value: { sizeMm: 200, caption: true } };
  if (typeof raw !== 'string' || !/^\d{1,4}(\.\d{1,3})?$/.test(raw)) return { ok: false, error: 'size_mm must be a number of millimetres, e.g. 200' };
  const sizeMm = Number(raw);
  if (sizeMm < 10 || sizeMm > 1000) return { ok: false, error: 'size_mm must be within 10…1000' };
  const cap = q.caption;
  if (cap !== undefined && cap !== '0' && cap !== '1') return { ok: false, error: 'caption must be 0 or 1' };
  return { ok: true, value: { sizeMm, caption: cap !== '0' } };
}

function exactKeys(msg: Record<string, unknown>, keys: readonly string[], what: string): string | null {
  const k = Object.keys(msg);
  if (k.length !== keys.length || !keys.every((x) => k.includes(x))) return `${what} must have exactly the keys ${keys.join(', ')}`;
  return null;
}

/** 'sticker' {id}: a known sticker's id, or null to clear it. */
export function validateStickerRequest(msg: unknown): Result<StickerRequest> {
  if (!isPlainObject(msg)) return { ok: false, error: 'sticker request must be an object {id}' };
  const e = exactKeys(msg, ['id'], 'sticker request');
  if (e) return { ok: false, error: e };
  const id = msg.id;
  if (id !== null && (typeof id !== 'string' || !/^[a-z]+-\d{1,6}$/.test(id))) return { ok: false, error: "sticker id must be a sticker's id or null" };
  return { ok: true, value: { id } };
}

/** 'view' {images}: the images this client draws (the daemon encodes only those). */
export function validateViewRequest(msg: unknown): Result<ViewRequest> {
  if (!isPlainObject(msg)) return { ok: false, error: 'view request must be an object {images}' };
  const e = exactKeys(msg, ['images'], 'view request');
  if (e) return { ok: false, error: e };
  const imgs = msg.images;
  if (!Array.isArray(imgs) || imgs.length > IMAGE_KEYS.length || !imgs.every((k) => typeof k === 'string' && (IMAGE_KEYS as readonly string[]).includes(k))) {
    return { ok: false, error: `images must be a list drawn from ${IMAGE_KEYS.join(', ')}` };
  }
  return { ok: true, value: { images: [...new Set(imgs as ImageKey[])] } };
}

/** 'print' {action:'start', target, signMm, steps} | {action:'cancel'}. */
export function validatePrintRequest(msg: unknown, numClasses: number, steps: [number, number], signMm: [number, number]): Result<PrintRequest> {
  if (!isPlainObject(msg)) return { ok: false, error: 'print request must be an object' };
  if (msg.action === 'cancel') {
    const e = exactKeys(msg, ['action'], 'a cancel request');
    return e ? { ok: false, error: e } : { ok: true, value: { action: 'cancel' } };
  }
  if (msg.action !== 'start') return { ok: false, error: "print action must be 'start' or 'cancel'" };
  const e = exactKeys(msg, ['action', 'target', 'signMm', 'steps'], 'a print request');
  if (e) return { ok: false, error: e };
  const t = msg.target;
  if (t !== null && (!finite(t) || !Number.isInteger(t) || t < 0 || t >= numClasses))
    return { ok: false, error: `target must be a class id 0…${numClasses - 1} or null (untargeted)` };
  const mm = msg.signMm;
  if (!finite(mm) || mm < signMm[0] || mm > signMm[1]) return { ok: false, error: `signMm must be ${signMm[0]}…${signMm[1]} mm` };
  const st = msg.steps;
  if (!finite(st) || !Number.isInteger(st) || st < steps[0] || st > steps[1])
    return { ok: false, error: `steps must be a whole number ${steps[0]}…${steps[1]}` };
  return { ok: true, value: { action: 'start', target: t as number | null, signMm: mm, steps: st } };
}
