/**
 * A push button and two LEDs on the Pi header: the button toggles the attack (short press) or
 * saves a snapshot (long press); green lights while the model is right, red while it is fooled.
 *
 * Pins are opened through a small PinDriver interface: onoff (sysfs) on a real board, or an
 * in-memory driver as the stand-in when GPIO is not accessible (a laptop, a container, onoff's
 * native part not built). The stand-in logs and keeps its pin state readable for tests. Every
 * pin opened is unexported on close(), and on process exit if close() was never reached.
 */
import { globalGpioNumber, ResolvedPin } from './sysfs';

export type Level = 0 | 1;
export type Indication = 'ok' | 'fooled' | 'off';
export type PressKind = 'short' | 'long';

export interface Pin {
  write(v: Level): void;
  read(): Level;
  watch(cb: (v: Level) => void): void;
  unexport(): void;
}

export interface PinDriver {
  readonly kind: 'onoff' | 'memory';
  open(global: number, direction: 'in' | 'out', opts?: { edge?: 'both'; debounceMs?: number }): Pin;
}

/** In-memory pins: the stand-in, and the fake board tests use. */
export class MemoryDriver implements PinDriver {
  readonly kind = 'memory' as const;
  readonly values = new Map<number, Level>();
  readonly exported = new Set<number>();
  private readonly watchers = new Map<number, ((v: Level) => void)[]>();

  open(global: number, direction: 'in' | 'out'): Pin {
    this.exported.add(global);
    if (!this.values.has(global)) this.values.set(global, 0);
    return {
      write: (v) => {
        if (direction !== 'out') throw new Error(`pin ${global} is an input`);
        this.values.set(global, v);
      },
      read: () => this.values.get(global) ?? 0,
      watch: (cb) => this.watchers.set(global, [...(this.watchers.get(global) ?? []), cb]),
      unexport: () => {
        this.exported.delete(global);
        this.watchers.delete(global);
      },
    };
  }

  /** Drives an input pin as the outside world would (a finger on the button). */
  set(global: number, v: Level): void {
    this.values.set(global, v);
    for (const cb of this.watchers.get(global) ?? []) cb(v);
  }
}

interface OnoffGpio {
  writeSync(v: Level): void;
  readSync(): Level;
  watch(cb: (err: Error | null | undefined, v: Level) => void): void;
  unexport(): void;
}
interface OnoffModule {
  Gpio: { accessible: boolean; new (n: number, dir: 'in' | 'out', edge?: 'both' | 'none', opts?: { debounceTimeout?: number }): OnoffGpio };
}

/** onoff, when it loads (its native epoll part must be built) and /sys/class/gpio is writable. */
export function onoffDriver(): { driver: PinDriver | null; reason?: string } {
  let mod: OnoffModule;
  try {
    mod = require('onoff') as OnoffModule;
  } catch (e) {
    return { driver: null, reason: `onoff unavailable: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!mod.Gpio.accessible) return { driver: null, reason: 'GPIO not accessible (/sys/class/gpio/export not writable)' };
  return {
    driver: {
      kind: 'onoff',
      open(global, direction, opts) {
        const g =
          direction === 'in' ? new mod.Gpio(global, 'in', opts?.edge ?? 'none', { debounceTimeout: opts?.debounceMs ?? 10 }) : new mod.Gpio(global, 'out');
        return {
          write: (v) => g.writeSync(v),
          read: () => g.readSync(),
          watch: (cb) =>
            g.watch((err, v) => {
              if (!err) cb(v);
            }),
          unexport: () => g.unexport(),
        };
      },
    },
  };
}

export interface GpioConfig {
  /** BCM numbers; null/undefined: not connected. */
  button?: number | null;
  ledOk?: number | null;
  ledFooled?: number | null;
  /** sysfs root (default /sys): tests point it at a fake tree. */
  sysfsRoot?: string;
  /** Label of the header gpiochip when it is not a Raspberry Pi one. */
  chipLabel?: string;
  /** Button reads 0 when pressed (wired to GND with a pull-up). Default false: BCM 17 idles pulled down, wire it to 3V3. */
  buttonActiveLow?: boolean;
  longPressMs?: number;
  debounceMs?: number;
}

export interface GpioLog {
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
}

export interface GpioState {
  mode: 'onoff' | 'stand-in' | 'disabled';
  reason?: string;
  leds: { ok: boolean; fooled: boolean };
  /** BCM → global numbers in use. */
  pins: { role: 'button' | 'ledOk' | 'ledFooled'; bcm: number; global: number }[];
  presses: { short: number; long: number };
  closed: boolean;
}

export class GpioController {
  private readonly pins = new Map<'button' | 'ledOk' | 'ledFooled', { pin: Pin; resolved: ResolvedPin }>();
  private readonly listeners: ((k: PressKind) => void)[] = [];
  private readonly st: GpioState;
  private pressedAt = 0;
  private longTimer: NodeJS.Timeout | null = null;
  private longFired = false;
  private exitHook: (() => void) | null = null;

  constructor(
    private readonly cfg: GpioConfig,
    driver: PinDriver | null,
    mode: GpioState['mode'],
    reason: string | undefined,
    private readonly log?: GpioLog,
  ) {
    this.st = { mode, ...(reason ? { reason } : {}), leds: { ok: false, fooled: false }, pins: [], presses: { short: 0, long: 0 }, closed: false };
    if (!driver) return;
    const roles: ['button' | 'ledOk' | 'ledFooled', number | null | undefined][] = [
      ['button', cfg.button],
      ['ledOk', cfg.ledOk],
      ['ledFooled', cfg.ledFooled],
    ];
    try {
      this.openPins(driver, roles);
    } catch (e) {
      // Half-opened: release what was exported before reporting.
      for (const { pin } of this.pins.values()) {
        try {
          pin.unexport();
        } catch {
          /* ignore */
        }
      }
      this.pins.clear();
      throw e;
    }
    // close() is the normal path; this catches exits that never reach it (unexport is synchronous).
    this.exitHook = () => this.close();
    process.once('exit', this.exitHook);
  }

  private openPins(driver: PinDriver, roles: ['button' | 'ledOk' | 'ledFooled', number | null | undefined][]): void {
    const cfg = this.cfg;
    for (const [role, bcm] of roles) {
      if (bcm === null || bcm === undefined) continue;
      let resolved: ResolvedPin;
      try {
        resolved = globalGpioNumber(bcm, { sysRoot: cfg.sysfsRoot, chipLabel: cfg.chipLabel });
      } catch (e) {
        if (driver.kind === 'onoff') throw e;
        resolved = { bcm, global: bcm, chip: null }; // stand-in without a sysfs: BCM numbers as they are
      }
      const pin =
        role === 'button' ? driver.open(resolved.global, 'in', { edge: 'both', debounceMs: cfg.debounceMs ?? 10 }) : driver.open(resolved.global, 'out');
      if (role !== 'button') pin.write(0);
      else pin.watch((v) => this.onButton(v));
      this.pins.set(role, { pin, resolved });
      this.st.pins.push({ role, bcm, global: resolved.global });
    }
  }

  get state(): GpioState {
    return { ...this.st, leds: { ...this.st.leds }, pins: this.st.pins.map((p) => ({ ...p })), presses: { ...this.st.presses } };
  }

  onPress(cb: (k: PressKind) => void): void {
    this.listeners.push(cb);
  }

  /** LEDs: green = model right, red = fooled, both off when nothing is shown. Writes only on change. */
  indicate(i: Indication): void {
    const ok = i === 'ok';
    const fooled = i === 'fooled';
    if (this.st.closed || (ok === this.st.leds.ok && fooled === this.st.leds.fooled)) return;
    this.st.leds = { ok, fooled };
    this.pins.get('ledOk')?.pin.write(ok ? 1 : 0);
    this.pins.get('ledFooled')?.pin.write(fooled ? 1 : 0);
    if (this.st.mode === 'stand-in') this.log?.info('gpio.leds', { ok, fooled });
  }

  private onButton(v: Level): void {
    const down = this.cfg.buttonActiveLow ? v === 0 : v === 1;
    const longMs = this.cfg.longPressMs ?? 1500;
    if (down) {
      if (this.pressedAt) return;
      this.pressedAt = performance.now();
      this.longFired = false;
      // A long press fires while still held, so the user sees it happen.
      this.longTimer = setTimeout(() => {
        this.longFired = true;
        this.fire('long');
      }, longMs);
    } else {
      if (!this.pressedAt) return;
      this.pressedAt = 0;
      if (this.longTimer) clearTimeout(this.longTimer);
      this.longTimer = null;
      if (!this.longFired) this.fire('short');
    }
  }

  private fire(k: PressKind): void {
    this.st.presses[k]++;
    this.log?.info('gpio.button', { press: k });
    for (const cb of this.listeners) {
      try {
        cb(k);
      } catch (e) {
        this.log?.warn('gpio.button.handler_failed', { error: (e as Error).message });
      }
    }
  }

  /** A press without hardware (the stand-in's way to be exercised). */
  simulatePress(k: PressKind): void {
    this.fire(k);
  }

  /** LEDs off, pins unexported. Safe to call more than once. */
  close(): void {
    if (this.st.closed) return;
    if (this.longTimer) clearTimeout(this.longTimer);
    for (const [role, { pin }] of this.pins) {
      try {
        if (role !== 'button') pin.write(0);
        pin.unexport();
      } catch (e) {
        this.log?.warn('gpio.unexport_failed', { role, error: (e as Error).message });
      }
    }
    this.pins.clear();
    this.st.leds = { ok: false, fooled: false };
    this.st.closed = true;
    if (this.exitHook) process.removeListener('exit', this.exitHook);
    this.exitHook = null;
  }
}

/**
 * Opens the configured pins: onoff when GPIO is accessible, else the in-memory stand-in. With no
 * pins configured the controller is 'disabled' (indicate() and close() are no-ops).
 */
export function createGpio(cfg: GpioConfig, opts: { driver?: PinDriver; log?: GpioLog } = {}): GpioController {
  const any = [cfg.button, cfg.ledOk, cfg.ledFooled].some((p) => p !== null && p !== undefined);
  if (!any) return new GpioController(cfg, null, 'disabled', 'no GPIO pins configured', opts.log);
  if (opts.driver) return new GpioController(cfg, opts.driver, opts.driver.kind === 'onoff' ? 'onoff' : 'stand-in', undefined, opts.log);
  const { driver, reason } = onoffDriver();
  if (driver) {
    try {
      return new GpioController(cfg, driver, 'onoff', undefined, opts.log);
    } catch (e) {
      opts.log?.warn('gpio.fallback', { reason: (e as Error).message });
      return new GpioController(cfg, new MemoryDriver(), 'stand-in', (e as Error).message, opts.log);
    }
  }
  opts.log?.info('gpio.stand_in', { reason });
  return new GpioController(cfg, new MemoryDriver(), 'stand-in', reason, opts.log);
}

export { globalGpioNumber, listGpioChips, findHeaderChip, HEADER_CHIP_LABELS } from './sysfs';
export type { GpioChip, ResolvedPin } from './sysfs';
