/**
 * Structured logs: one JSON object per line on stderr, one line per event, with a level, so
 * journald / Loki / jq can filter them. `event` is a stable dotted name; the rest are fields.
 *
 * Two protections apply to every line, whoever logs it:
 * - credentials in URLs (rtsp://user:pass@cam/…) are masked, so a camera password given in
 *   --source never reaches the journal, whichever message carries it (ffmpeg's errors included);
 * - each event is rate limited: past `burst` lines of one event in a window, lines are counted
 *   instead of written, and one `log.suppressed` line with the count follows when the window
 *   ends. A client flooding settings messages or unauthorized requests cannot flood the journal.
 */
import { redact } from './redact';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

export interface LogRateLimit {
  /** Lines of one event written per window; the rest are counted. */
  burst: number;
  windowMs: number;
}

export const DEFAULT_LOG_RATE_LIMIT: LogRateLimit = { burst: 20, windowMs: 10_000 };

export interface LoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
  /** null: no rate limiting. */
  rateLimit?: LogRateLimit | null;
}

/** A logger whose pending suppression counts can be written out now (at shutdown, in tests). */
export interface FlushableLogger extends Logger {
  flush(): void;
}

type Level = Exclude<LogLevel, 'silent'>;
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

interface Window {
  level: Level;
  event: string;
  start: number;
  written: number;
  suppressed: number;
}

export function createLogger(opts: LoggerOptions = {}): FlushableLogger {
  const min = RANK[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const limit = opts.rateLimit === undefined ? DEFAULT_LOG_RATE_LIMIT : opts.rateLimit;
  const windows = new Map<string, Window>();
  let timer: NodeJS.Timeout | null = null;

  const writeLine = (level: Level, event: string, fields?: LogFields): void => {
    let line: string;
    try {
      line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields });
    } catch {
      line = JSON.stringify({ ts: new Date().toISOString(), level, event, note: 'fields not serialisable' });
    }
    write(redact(line) + '\n');
  };

  const close = (w: Window, now: number): void => {
    if (w.suppressed > 0) {
      writeLine(w.level, 'log.suppressed', { suppressedEvent: w.event, suppressed: w.suppressed, seconds: Math.round((now - w.start) / 100) / 10 });
    }
  };

  /** Ends the windows that are over (all of them when forced), writing their summaries. */
  const flush = (force: boolean): void => {
    const now = Date.now();
    for (const [key, w] of windows) {
      if (!force && now - w.start < (limit?.windowMs ?? 0)) continue;
      close(w, now);
      windows.delete(key);
    }
    if (windows.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  };

  /** True when the line may be written (and counts it). */
  const admit = (level: Level, event: string): boolean => {
    if (!limit) return true;
    const now = Date.now();
    const key = `${level} ${event}`;
    let w = windows.get(key);
    if (w && now - w.start >= limit.windowMs) {
      close(w, now);
      w = undefined;
    }
    if (!w) {
      w = { level, event, start: now, written: 0, suppressed: 0 };
      windows.set(key, w);
      // Summaries must come out even when the flood stops; the timer never keeps the process alive.
      timer ??= setInterval(() => flush(false), limit.windowMs);
      timer.unref();
    }
    if (w.written < limit.burst) {
      w.written++;
      return true;
    }
    w.suppressed++;
    return false;
  };

  const emit = (level: Level, event: string, fields?: LogFields): void => {
    if (RANK[level] < min) return;
    if (admit(level, event)) writeLine(level, event, fields);
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    flush: () => flush(true),
  };
}

/** A logger that keeps lines in memory (tests). */
export function memoryLogger(level: LogLevel = 'debug', rateLimit?: LogRateLimit | null): FlushableLogger & { lines: LogFields[] } {
  const lines: LogFields[] = [];
  const l = createLogger({ level, rateLimit, write: (s) => lines.push(JSON.parse(s) as LogFields) });
  return Object.assign(l, { lines });
}
