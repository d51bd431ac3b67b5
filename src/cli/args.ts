/** Flag parsing shared by the subcommands: node's parseArgs, with errors turned into one line. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { UserError } from '../data/types';

export type Flags = Record<string, string | boolean | undefined>;

/**
 * `--eps -1`: parseArgs takes a value starting with '-' for an option and refuses it ("argument is
 * ambiguous"). A negative number after a string option is its value, so the option's own check
 * can say what is wrong with it.
 */
export function joinNegativeValues(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = /^--([^=]+)$/.exec(argv[i])?.[1];
    const next = argv[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else {
      out.push(argv[i]);
    }
  }
  return out;
}

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>, command: string): Flags {
  try {
    const { values } = parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: false });
    return values as Flags;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    throw new UserError(`${command}: ${msg} (see 'advsign ${command} --help')`);
  }
}

export function str(flags: Flags, name: string, fallback?: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : fallback;
}

export function int(flags: Flags, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min || n > max) {
    throw new UserError(`--${name} must be a whole number from ${min} to ${max}, got '${String(v)}'`);
  }
  return n;
}

export function num(flags: Flags, name: string, fallback: number, min: number, max: number): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < min || n > max) {
    throw new UserError(`--${name} must be a number from ${min} to ${max}, got '${String(v)}'`);
  }
  return n;
}

/** A class id flag (--sign, --target): a whole number; its range is checked against the model. */
export function classFlag(flags: Flags, name: string): number | null {
  const v = flags[name];
  if (v === undefined) return null;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isInteger(n)) throw new UserError(`--${name} must be a class id (a whole number 0..42), got '${String(v)}'`);
  return n;
}

export function required(flags: Flags, name: string, command: string): string {
  const v = str(flags, name);
  if (!v) throw new UserError(`${command}: --${name} is required (see 'advsign ${command} --help')`);
  return v;
}
