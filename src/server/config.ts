/**
 * Daemon configuration from flags, environment (ADVSIGN_*) and a JSON file, with precedence
 * flags > env > file > defaults. Every value is validated with a one-line error naming where it
 * came from. The file is flat JSON with the keys below (see deploy's example config).
 */
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { UserError } from '../data/types';
import { parseEps } from '../attack/registry';
import { LOG_LEVELS, LogLevel } from './log';
import { ATTACK_LOSSES, AttackLoss } from '../attack/loss';
import { checkRoi, NormRoi, parseRoi } from '../util/roi';

export { checkRoi };
export type { NormRoi };

export const LIVE_ATTACKS = ['none', 'fgsm', 'bim', 'pgd', 'mifgsm'] as const;
export type LiveAttack = (typeof LIVE_ATTACKS)[number];
/** The ε slider's range: 0 … 32/255 (beyond that the perturbation is plainly visible). */
export const EPS_MAX = 32 / 255;

export interface ServeConfig {
  host: string;
  port: number;
  source: string;
  /** Extra sources offered on the page (clients may only pick from the configured list). */
  sources: string[];
  model: string | null;
  /** What a model that is not ours expects (see src/cli/model-flags.ts): 'LO,HI', crop|whole, a labels file. */
  inputRange: string | null;
  preprocess: 'crop' | 'whole';
  labels: string | null;
  backend: string | null;
  /** Compute engine: 'ort' | 'tfjs' (null: the best that works, see src/inference/engine.ts). */
  engine: string | null;
  attack: LiveAttack;
  eps: number;
  targeted: boolean;
  target: number;
  steps: number;
  /** Objective of the live gradient attacks (src/attack/loss.ts). */
  loss: AttackLoss;
  roi: NormRoi | null;
  token: string | null;
  requireToken: boolean;
  jpegQuality: number;
  width: number;
  height: number;
  fps: number;
  gpioButton: number | null;
  gpioLedOk: number | null;
  gpioLedFooled: number | null;
  gpioSysfs: string;
  gpioChip: string | null;
  gpioLongPressMs: number;
  /** The button reads 0 when pressed (wired to GND, with the pin's pull-up). */
  gpioButtonActiveLow: boolean;
  logLevel: LogLevel;
  snapshotDir: string;
  maxClients: number;
  /** Open TCP connections at most (page, API and sockets, authenticated or not). */
  maxConnections: number;
  /** Extra ffmpeg input options, e.g. ['-input_format', 'mjpeg'] to take a USB camera's own MJPEG. */
  ffmpegInputArgs: string[];
  /** A `sticker` run's JSON to draw onto the sign in view from the start (the virtual sticker). */
  sticker: string | null;
  /** Where the page's print jobs keep their PDFs (one folder per job). */
  printDir: string;
}

/**
 * The live attack's defaults: BIM, 2 steps on the logit margin at ε 12/255. FGSM at 8/255 fools the
 * shipped model on only ~76 % of the synthetic scene's frames (its confident signs need more than
 * one step or more budget); two margin steps at 12/255 reach ~92 % at twice FGSM's cost, within the
 * one-core frame budget (README, "The live daemon").
 */
export const DEFAULT_CONFIG: Readonly<ServeConfig> = Object.freeze({
  host: '127.0.0.1',
  port: 8080,
  source: 'auto',
  sources: [],
  model: null,
  inputRange: null,
  preprocess: 'crop',
  labels: null,
  backend: null,
  engine: null,
  attack: 'bim',
  eps: 12 / 255,
  targeted: false,
  target: 14,
  steps: 2,
  loss: 'margin',
  roi: null,
  token: null,
  requireToken: false,
  jpegQuality: 80,
  width: 640,
  height: 480,
  fps: 30,
  gpioButton: null,
  gpioLedOk: null,
  gpioLedFooled: null,
  gpioSysfs: '/sys',
  gpioChip: null,
  gpioLongPressMs: 1500,
  gpioButtonActiveLow: false,
  logLevel: 'info',
  snapshotDir: 'snapshots',
  maxClients: 20,
  maxConnections: 256,
  ffmpegInputArgs: [],
  sticker: null,
  printDir: 'prints',
});

type Key = keyof ServeConfig;
type Kind = 'string' | 'int' | 'bool' | 'eps' | 'list' | 'roi' | 'pin' | 'enum' | 'nullableString';

interface KeyDef {
  kind: Kind;
  min?: number;
  max?: number;
  values?: readonly string[];
}

const KEYS: Record<Key, KeyDef> = {
  host: { kind: 'string' },
  port: { kind: 'int', min: 0, max: 65535 },
  source: { kind: 'string' },
  sources: { kind: 'list' },
  model: { kind: 'nullableString' },
  inputRange: { kind: 'nullableString' },
  preprocess: { kind: 'enum', values: ['crop', 'whole'] },
  labels: { kind: 'nullableString' },
  backend: { kind: 'nullableString' },
  engine: { kind: 'nullableString' },
  attack: { kind: 'enum', values: LIVE_ATTACKS },
  eps: { kind: 'eps' },
  targeted: { kind: 'bool' },
  target: { kind: 'int', min: 0, max: 42 },
  steps: { kind: 'int', min: 1, max: 50 },
  loss: { kind: 'enum', values: ATTACK_LOSSES },
  roi: { kind: 'roi' },
  token: { kind: 'nullableString' },
  requireToken: { kind: 'bool' },
  jpegQuality: { kind: 'int', min: 20, max: 100 },
  width: { kind: 'int', min: 32, max: 4096 },
  height: { kind: 'int', min: 32, max: 4096 },
  fps: { kind: 'int', min: 1, max: 120 },
  gpioButton: { kind: 'pin' },
  gpioLedOk: { kind: 'pin' },
  gpioLedFooled: { kind: 'pin' },
  gpioSysfs: { kind: 'string' },
  gpioChip: { kind: 'nullableString' },
  gpioLongPressMs: { kind: 'int', min: 200, max: 10000 },
  gpioButtonActiveLow: { kind: 'bool' },
  logLevel: { kind: 'enum', values: LOG_LEVELS },
  snapshotDir: { kind: 'string' },
  maxClients: { kind: 'int', min: 1, max: 1000 },
  maxConnections: { kind: 'int', min: 4, max: 100_000 },
  ffmpegInputArgs: { kind: 'list' },
  sticker: { kind: 'nullableString' },
  printDir: { kind: 'string' },
};

export const CONFIG_KEYS = Object.keys(KEYS) as Key[];

/** camelCase key → --kebab-case flag and ADVSIGN_SNAKE_CASE variable. */
export function flagName(k: Key): string {
  return k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
export function envName(k: Key): string {
  return `ADVSIGN_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Options for node's parseArgs: one string flag per key (booleans also accept --flag alone). */
export function configFlagOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const o: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const k of CONFIG_KEYS) o[flagName(k)] = { type: KEYS[k].kind === 'bool' ? 'boolean' : 'string' };
  return o;
}

function parseValue(k: Key, v: unknown, where: string): unknown {
  const d = KEYS[k];
  const bad = (what: string): never => {
    throw new UserError(`${where}: ${k} ${what}, got ${JSON.stringify(v)}`);
  };
  switch (d.kind) {
    case 'string':
      if (typeof v !== 'string' || v.trim() === '') bad('must be a non-empty string');
      return (v as string).trim();
    case 'nullableString':
      if (v === null || v === '') return null;
      if (typeof v !== 'string') bad('must be a string');
      return (v as string).trim();
    case 'int':
    case 'pin': {
      if (d.kind === 'pin' && (v === null || v === '' || v === 'none' || v === 'off')) return null;
      const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
      const max = d.kind === 'pin' ? 63 : (d.max ?? Number.MAX_SAFE_INTEGER);
      const min = d.kind === 'pin' ? 0 : (d.min ?? 0);
      if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) bad(`must be a whole number from ${min} to ${max}`);
      return n;
    }
    case 'bool':
      if (typeof v === 'boolean') return v;
      if (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v)) return true;
      if (typeof v === 'string' && /^(0|false|no|off)$/i.test(v)) return false;
      return bad('must be true or false');
    case 'eps': {
      let e: number;
      if (typeof v === 'number') e = v;
      else if (typeof v === 'string') {
        try {
          e = parseEps(v);
        } catch (err) {
          throw new UserError(`${where}: ${(err as Error).message}`);
        }
      } else return bad('must be a number such as 8/255');
      if (!Number.isFinite(e) || e < 0 || e > EPS_MAX + 1e-9) bad(`must be within 0 … 32/255 (${EPS_MAX.toFixed(4)})`);
      return e;
    }
    case 'list':
      if (typeof v === 'string')
        return v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return (v as string[]).map((s) => s.trim()).filter(Boolean);
      return bad('must be a list of strings');
    case 'roi':
      return parseRoi(v, where);
    case 'enum':
      if (typeof v !== 'string' || !d.values!.includes(v.trim().toLowerCase())) bad(`must be one of ${d.values!.join(', ')}`);
      return (v as string).trim().toLowerCase();
  }
}

export type Origin = 'flag' | 'env' | 'file' | 'default';

export interface LoadedConfig {
  config: ServeConfig;
  origins: Record<Key, Origin>;
  file: string | null;
}

export interface ConfigInputs {
  flags?: Record<string, string | boolean | undefined>;
  env?: NodeJS.ProcessEnv;
  /** Config file path (else --config / ADVSIGN_CONFIG / the deploy default if it exists). */
  file?: string | null;
  /** Where the deploy default lives (tests point it elsewhere). */
  defaultFile?: string;
}

export const DEFAULT_CONFIG_FILE = '/etc/advsign/config.json';

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`config file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new UserError(`config file ${file} is not valid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new UserError(`config file ${file} must hold a JSON object`);
  const o = obj as Record<string, unknown>;
  // A nested "gpio" block reads more naturally in a file: {"gpio": {"button": 17, "ledOk": 27, "ledFooled": 22}}.
  if (o.gpio && typeof o.gpio === 'object' && !Array.isArray(o.gpio)) {
    const g = o.gpio as Record<string, unknown>;
    const map: Record<string, Key> = {
      button: 'gpioButton',
      ledOk: 'gpioLedOk',
      ledFooled: 'gpioLedFooled',
      sysfs: 'gpioSysfs',
      chip: 'gpioChip',
      longPressMs: 'gpioLongPressMs',
      buttonActiveLow: 'gpioButtonActiveLow',
    };
    for (const [k, v] of Object.entries(g)) {
      if (!map[k]) throw new UserError(`config file ${file}: unknown key gpio.${k} (known: ${Object.keys(map).join(', ')})`);
      o[map[k]] = v;
    }
    delete o.gpio;
  }
  const unknown = Object.keys(o).filter((k) => !(CONFIG_KEYS as string[]).includes(k) && !k.startsWith('$') && k !== 'comment');
  if (unknown.length)
    throw new UserError(`config file ${file}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${CONFIG_KEYS.join(', ')})`);
  return o;
}

export function loadConfig(inputs: ConfigInputs = {}): LoadedConfig {
  const flags = inputs.flags ?? {};
  const env = inputs.env ?? {};
  let file: string | null = null;
  if (inputs.file !== undefined) file = inputs.file;
  else if (typeof flags.config === 'string') file = flags.config;
  else if (env.ADVSIGN_CONFIG) file = env.ADVSIGN_CONFIG;
  else {
    const def = inputs.defaultFile ?? DEFAULT_CONFIG_FILE;
    if (fs.existsSync(def)) file = def;
  }
  const fromFile = file ? readConfigFile(file) : {};
  const config = { ...DEFAULT_CONFIG, sources: [], ffmpegInputArgs: [] } as ServeConfig;
  const origins = {} as Record<Key, Origin>;
  const record = config as unknown as Record<Key, unknown>;
  for (const k of CONFIG_KEYS) {
    origins[k] = 'default';
    const fv = fromFile[k];
    const ev = env[envName(k)];
    const flag = flags[flagName(k)];
    if (flag !== undefined) {
      record[k] = parseValue(k, flag, `--${flagName(k)}`);
      origins[k] = 'flag';
    } else if (ev !== undefined && ev !== '') {
      record[k] = parseValue(k, ev, envName(k));
      origins[k] = 'env';
    } else if (fv !== undefined) {
      record[k] = parseValue(k, fv, `config file ${file}`);
      origins[k] = 'file';
    }
  }
  if (config.maxConnections <= config.maxClients) {
    throw new UserError(
      `maxConnections (${config.maxConnections}) must exceed maxClients (${config.maxClients}): each client holds a connection and the page loads over others`,
    );
  }
  if (config.token !== null && config.token.length < 12) throw new UserError('token must be at least 12 characters (or leave it out and one is generated)');
  return { config, origins, file };
}

/** 127.0.0.0/8, ::1 and 'localhost'. Anything else (0.0.0.0, a LAN address) is reachable from outside. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

export function tokenRequired(cfg: Pick<ServeConfig, 'host' | 'requireToken'>): boolean {
  return cfg.requireToken || !isLoopback(cfg.host);
}

/** The access token in force: the configured one, or a fresh random one when needed and absent. */
export function resolveToken(cfg: Pick<ServeConfig, 'host' | 'requireToken' | 'token'>): { token: string | null; generated: boolean } {
  if (!tokenRequired(cfg)) return { token: cfg.token, generated: false };
  if (cfg.token) return { token: cfg.token, generated: false };
  return { token: crypto.randomBytes(18).toString('base64url'), generated: true };
}
