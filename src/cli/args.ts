/** Flag parsing shared by the subcommands: node's parseArgs, with errors turned into one line. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { UserError } from '../data/types';
import { writeFileAtomic } from '../util/atomic-file';

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

/**
 * The one JSON convention (docs/ARCHITECTURE.md, "CLI"): `--json FILE` writes the JSON to FILE,
 * `--json -` to stdout, and a bare `--json` (last, or followed by another flag) means stdout too,
 * so `advsign bench --json` (npm run bench) keeps working.
 */
export const JSON_FLAG: NonNullable<ParseArgsConfig['options']> = { json: { type: 'string' } };

/** The help line of --json, the same on every command. */
export const JSON_HELP = `--json FILE|-          write the JSON to FILE, or to stdout with '-' (a bare --json is '-')`;

function bareJsonToStdout(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  if (options.json?.type !== 'string') return argv;
  return argv.flatMap((a, i) => (a === '--json' && (i === argv.length - 1 || argv[i + 1].startsWith('--')) ? ['--json', '-'] : [a]));
}

/** Where --json goes: a file, '-' for stdout, or undefined without --json. */
export function jsonTarget(flags: Flags): string | undefined {
  const v = flags.json;
  if (v === '') throw new UserError("--json needs a file name, or '-' for stdout");
  return typeof v === 'string' ? v : undefined;
}

/** Writes `data` as JSON where --json said: stdout for '-', else the file (atomically, with a one-line error). */
export function writeJsonOutput(target: string, data: unknown): void {
  const text = JSON.stringify(data, null, 2) + '\n';
  if (target === '-') process.stdout.write(text);
  else writeFileAtomic(target, text);
}

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>, command: string): Flags {
  try {
    const args = bareJsonToStdout(joinNegativeValues(argv, options), options);
    const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
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
  if (typeof v !== 'string' || v.trim() === '' || !Number.isInteger(n))
    throw new UserError(`--${name} must be a class id (a whole number 0..42), got '${String(v)}'`);
  return n;
}

export function required(flags: Flags, name: string, command: string): string {
  const v = str(flags, name);
  if (!v) throw new UserError(`${command}: --${name} is required (see 'advsign ${command} --help')`);
  return v;
}
