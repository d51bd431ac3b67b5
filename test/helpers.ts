/** Shared test helpers: running the CLI as a user would, temp folders, the shared GTSRB copy. */
import { spawn, SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Tensor } from '../src/inference/tf';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'advsign.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `advsign args…`; `onStderr` sees output as it arrives (e.g. to send Ctrl-C mid-run). */
export function runCli(args: string[], opts: SpawnOptions & { onStderr?: (text: string, kill: (s: NodeJS.Signals) => void) => void } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      ...opts,
      env: { ...process.env, ADVSIGN_QUIET: '0', ...(opts.env ?? {}) },
    });
    let stdout = '',
      stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr, (s) => child.kill(s));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function tempDir(prefix = 'advsign-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** ../shared/data/gtsrb when present (development and CI only). */
export function sharedGtsrb(): string | null {
  const p = process.env.ADVSIGN_GTSRB ?? path.resolve(ROOT, '..', 'shared', 'data', 'gtsrb');
  return fs.existsSync(path.join(p, 'Train.csv')) ? p : null;
}

/** Polls `cond` every 20 ms until it holds, or fails after `ms` naming `what`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Flags of the quickest sticker run (stop sign → 30 km/h; 2 steps, 2 EOT samples, 4 evaluation
 * views, no print round trip, no baseline, 100 mm): for tests that need a run's files, not a good sticker.
 */
export function tinyStickerArgs(model: string, out: string, ...extra: string[]): string[] {
  return [
    '--model',
    model,
    '--sign',
    '14',
    '--target',
    '1',
    '--out',
    out,
    ...'--steps 2 --eot-samples 2 --eval 4 --roundtrip 0 --skip-baseline --sign-mm 100'.split(' '),
    ...extra,
  ];
}

/** ‖a − b‖ / ‖b‖ in L2 or L∞ (max |·|), no floor: NaN when both are all zero, so a vacuous comparison fails. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, norm: 'l2' | 'linf' = 'l2'): number {
  if (a.length !== b.length) throw new Error(`relativeError: ${a.length} values against ${b.length}`);
  let d = 0,
    m = 0;
  for (let i = 0; i < b.length; i++) {
    const [e, r] = [Math.abs(a[i] - b[i]), Math.abs(b[i])];
    if (norm === 'l2') [d, m] = [d + e * e, m + r * r];
    else [d, m] = [Math.max(d, e), Math.max(m, r)];
  }
  return norm === 'l2' ? Math.sqrt(d / m) : d / m;
}

/** relativeError of two tensors' values. */
export async function tensorRelativeError(a: Tensor, b: Tensor, norm: 'l2' | 'linf' = 'l2'): Promise<number> {
  return relativeError(await a.data(), await b.data(), norm);
}
