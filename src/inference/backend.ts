/**
 * Compute backend choice: tensorflow (tfjs-node, native) → wasm → cpu, at run time.
 * tfjs-node is an optional dependency: it downloads libtensorflow at install, which fails
 * offline and has no linux-arm64 build, so its absence is normal and only reported.
 */
import { tf } from './tf';
import { UserError } from '../data/types';
import { registerWasmGradKernels } from './wasm-grad-kernels';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendAttempt {
  name: BackendName;
  ok: boolean;
  /** Why it was not used (or 'selected'). */
  reason: string;
}

export interface BackendChoice {
  backend: BackendName;
  /** Where the choice came from: the ADVSIGN_BACKEND variable, an explicit request, or the automatic order. */
  source: 'env' | 'request' | 'auto';
  attempts: BackendAttempt[];
}

let current: BackendChoice | null = null;

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 200);
}

async function tryBackend(name: BackendName): Promise<string | null> {
  try {
    if (name === 'tensorflow') {
      // Registers the 'tensorflow' backend as a side effect; throws when libtensorflow is missing.
      require('@tensorflow/tfjs-node');
    } else if (name === 'wasm') {
      require('@tensorflow/tfjs-backend-wasm');
      registerWasmGradKernels();
    }
    const ok = await tf.setBackend(name);
    if (!ok) return `tf.setBackend('${name}') returned false`;
    await tf.ready();
    return null;
  } catch (e) {
    return firstLine(e);
  }
}

/** Parses a backend name, with a clear error listing the known ones. */
export function parseBackendName(name: string): BackendName {
  const n = name.trim().toLowerCase();
  const alias: Record<string, BackendName> = { node: 'tensorflow', 'tfjs-node': 'tensorflow', tf: 'tensorflow' };
  const v = alias[n] ?? n;
  if ((BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendName;
  throw new UserError(`unknown backend '${name}': use one of ${BACKEND_NAMES.join(', ')}`);
}

/**
 * Selects and initialises the backend once per process. `requested` (or ADVSIGN_BACKEND) forces
 * one backend and fails if it cannot start; otherwise the first that starts wins.
 */
export async function initBackend(requested?: string): Promise<BackendChoice> {
  const env = process.env.ADVSIGN_BACKEND;
  const wanted = requested ?? (env && env.trim() !== '' ? env : undefined);
  if (current && (!wanted || current.backend === parseBackendName(wanted))) return current;
  if (!process.env.TF_CPP_MIN_LOG_LEVEL) process.env.TF_CPP_MIN_LOG_LEVEL = '2';
  const attempts: BackendAttempt[] = [];
  if (wanted) {
    const name = parseBackendName(wanted);
    const err = await tryBackend(name);
    if (err) throw new UserError(`backend '${name}' could not start: ${err}`);
    attempts.push({ name, ok: true, reason: 'selected' });
    current = { backend: name, source: requested ? 'request' : 'env', attempts };
    return current;
  }
  for (const name of BACKEND_NAMES) {
    const err = await tryBackend(name);
    attempts.push({ name, ok: err == null, reason: err ?? 'selected' });
    if (err == null) {
      current = { backend: name, source: 'auto', attempts };
      return current;
    }
  }
  throw new Error(`no TensorFlow.js backend could start: ${attempts.map((a) => `${a.name}: ${a.reason}`).join('; ')}`);
}

/** Switches to another backend within the same process (used by benchmarks to compare). */
export async function switchBackend(name: BackendName): Promise<void> {
  const err = await tryBackend(name);
  if (err) throw new UserError(`backend '${name}' could not start: ${err}`);
}

export function currentBackend(): BackendChoice | null {
  return current;
}
