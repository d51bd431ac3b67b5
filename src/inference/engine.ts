/**
 * The compute engine behind a loaded classifier, chosen at run time: `ort` (onnxruntime-node,
 * native and multi-threaded, from the model's ONNX export with its gradient graph) when it loads
 * and the model's layers export, else `tfjs` (the backend of backend.ts, which also trains).
 * `--engine` or ADVSIGN_ENGINE forces one; `advsign info` reports the choice and why.
 */
import * as os from 'node:os';
import { UserError } from '../data/types';
import type { Classifier } from './model';
import { LayersClassifier } from './model';
import { planOf, Plan, Unsupported } from './onnx/layers';
import type { OnnxModel } from './onnx/export';
import { OrtClassifier, OrtModule } from './ort-classifier';
import { OrtTrainer } from './ort-train';

export const ENGINE_NAMES = ['ort', 'tfjs'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

export interface EngineChoice {
  engine: EngineName;
  source: 'env' | 'request' | 'auto';
  /** Why this engine (and, when tfjs was chosen automatically, why not ort). */
  reason: string;
  /** onnxruntime's version and threads when it loaded. */
  ort?: { version: string; threads: number };
}

export interface OrtStatus {
  ok: boolean;
  reason: string;
  version?: string;
  threads: number;
}

let ortModule: OrtModule | null | undefined;
let ortError = '';

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
}

/** onnxruntime-node, loaded once (null when its native binding does not load on this machine). */
export function loadOrt(): OrtModule | null {
  if (ortModule !== undefined) return ortModule;
  try {
    ortModule = require('onnxruntime-node') as OrtModule;
    // Loading the binding is what fails on an unsupported platform: touch it now, not at first use.
    void ortModule.listSupportedBackends();
  } catch (e) {
    ortModule = null;
    ortError = firstLine(e);
  }
  return ortModule;
}

/** Threads for onnxruntime: the cores this process may use (taskset and cgroups included). */
export function ortThreads(): number {
  const env = Number(process.env.ADVSIGN_ORT_THREADS);
  if (Number.isInteger(env) && env >= 1) return env;
  return availableCores();
}

export function availableCores(): number {
  return Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
}

/**
 * Threads for the live loop: one (ADVSIGN_ORT_THREADS overrides). It classifies and attacks one
 * 32×32 image at a time, where a second intra-op thread only spins; the other cores render the
 * scene, encode the page's images and run print jobs.
 */
export function liveOrtThreads(): number {
  const env = Number(process.env.ADVSIGN_ORT_THREADS);
  return Number.isInteger(env) && env >= 1 ? env : 1;
}

export function ortStatus(): OrtStatus {
  const ort = loadOrt();
  if (!ort) return { ok: false, reason: `onnxruntime-node does not load: ${ortError}`, threads: 0 };
  const version = ort.env.versions.node ?? ort.env.versions.common;
  return { ok: true, reason: `onnxruntime-node ${version} on ${process.platform}/${process.arch}`, version, threads: ortThreads() };
}

export function parseEngineName(name: string): EngineName {
  const v = name.trim().toLowerCase();
  const alias: Record<string, EngineName> = { onnx: 'ort', onnxruntime: 'ort', tf: 'tfjs', tensorflow: 'tfjs' };
  const e = alias[v] ?? v;
  if ((ENGINE_NAMES as readonly string[]).includes(e)) return e as EngineName;
  throw new UserError(`unknown engine '${name}': use one of ${ENGINE_NAMES.join(', ')}`);
}

/** The ONNX plan of a classifier, or why it has none. */
export function exportPlan(clf: Classifier): Plan | OnnxModel | string {
  if (clf.onnx !== undefined) return clf.onnx;
  if (!(clf instanceof LayersClassifier)) return 'the model is not a tfjs layers model';
  try {
    return planOf(clf.model, clf.outputsSoftmax);
  } catch (e) {
    if (e instanceof Unsupported) return `its ONNX export does not support ${e.message}`;
    throw e;
  }
}

/**
 * The classifier on the engine asked for (`requested`, else ADVSIGN_ENGINE, else the best that
 * works). Asking for ort where it cannot run is a UserError with the reason.
 */
function wantedEngine(requested?: string): { name: EngineName | null; source: EngineChoice['source'] } {
  const env = process.env.ADVSIGN_ENGINE;
  const wanted = requested ?? (env && env.trim() !== '' ? env : undefined);
  return { name: wanted ? parseEngineName(wanted) : null, source: requested ? 'request' : wanted ? 'env' : 'auto' };
}

export function useEngine(clf: Classifier, requested?: string, threads = ortThreads()): { classifier: Classifier; engine: EngineChoice } {
  const { name, source } = wantedEngine(requested);
  if (name === 'tfjs') return { classifier: clf, engine: { engine: 'tfjs', source, reason: 'selected' } };
  const status = ortStatus();
  const plan = status.ok ? exportPlan(clf) : status.reason;
  if (typeof plan === 'string') {
    if (name === 'ort') throw new UserError(`engine 'ort' cannot run this model: ${plan}`);
    return { classifier: clf, engine: { engine: 'tfjs', source, reason: `ort unavailable: ${plan}` } };
  }
  const ort = loadOrt() as OrtModule;
  return {
    classifier: new OrtClassifier(clf, plan, ort, threads),
    engine: { engine: 'ort', source, reason: status.reason, ort: { version: status.version as string, threads } },
  };
}

/**
 * Where training steps run: on onnxruntime (an OrtTrainer, the gradient of one batch per session
 * call) when asked for or by default when it loads and the model's training graph (with `ibp`,
 * IBP training's graph too) exports, else on tfjs (null trainer). Asking for ort where it cannot
 * train is a UserError with the reason.
 */
export async function trainingEngine(
  clf: LayersClassifier,
  requested?: string,
  threads = ortThreads(),
  ibp = false,
): Promise<{ trainer: OrtTrainer | null; engine: EngineChoice }> {
  const { name, source } = wantedEngine(requested);
  if (name === 'tfjs') return { trainer: null, engine: { engine: 'tfjs', source, reason: 'selected' } };
  const status = ortStatus();
  const trainer = status.ok ? await OrtTrainer.create(clf, loadOrt() as OrtModule, threads, ibp) : status.reason;
  if (typeof trainer === 'string') {
    if (name === 'ort') throw new UserError(`engine 'ort' cannot train this model: ${trainer}`);
    return { trainer: null, engine: { engine: 'tfjs', source, reason: `ort unavailable: ${trainer}` } };
  }
  return { trainer, engine: { engine: 'ort', source, reason: status.reason, ort: { version: status.version as string, threads } } };
}

/** The engine a classifier runs on. */
export function engineOf(clf: Classifier): EngineName {
  return clf instanceof OrtClassifier ? 'ort' : 'tfjs';
}

/** Frees a classifier and, for an engine wrapper, the model behind it (its sessions first). */
export function releaseClassifier(clf: Classifier): void {
  clf.dispose?.();
  if (clf instanceof OrtClassifier) clf.inner.dispose?.();
}
