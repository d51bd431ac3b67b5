/** Flag parsing shared by the subcommands: node's parseArgs, with errors turned into one line. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { UserError } from '../data/types';

export type Flags = Record<string, string | boolean | undefined>;

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>, command: string): Flags {
  try {
    const { values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
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

export function required(flags: Flags, name: string, command: string): string {
  const v = str(flags, name);
  if (!v) throw new UserError(`${command}: --${name} is required (see 'advsign ${command} --help')`);
  return v;
}
