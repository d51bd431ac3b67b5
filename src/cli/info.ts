/** `advsign info`: version, the backend in use and why the others were not, the models found. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, BackendChoice } from '../inference/backend';
import { loadClassifier } from '../inference/model-io';
import { EngineChoice, ortStatus, releaseClassifier, useEngine } from '../inference/engine';
import { tf } from '../inference/tf';
import { jsonTarget, parseFlags, writeJsonOutput } from './args';
import { checkOutputs } from '../util/atomic-file';
import { projectRoot, version } from './paths';

export interface ModelSummary {
  path: string;
  architecture?: string;
  inputSize?: number;
  testAccuracy?: number;
}

export interface InfoReport {
  version: string;
  node: string;
  platform: string;
  arch: string;
  tfjs: string;
  backend: BackendChoice;
  /** The engine commands use for the default model (and why), and whether onnxruntime loads. */
  engine: EngineChoice & { model: string | null; ortLoads: boolean; ortReason: string };
  models: ModelSummary[];
}

export function findModels(root = projectRoot()): ModelSummary[] {
  const dir = path.join(root, 'models');
  if (!fs.existsSync(dir)) return [];
  const out: ModelSummary[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    const m = path.join(dir, name, 'model.json');
    if (!fs.existsSync(m)) continue;
    const summary: ModelSummary = { path: path.relative(root, path.join(dir, name)) };
    try {
      const card = JSON.parse(fs.readFileSync(path.join(dir, name, 'card.json'), 'utf8')) as {
        architecture?: string;
        inputSize?: number;
        cleanAccuracy?: { test?: number };
      };
      summary.architecture = card.architecture;
      summary.inputSize = card.inputSize;
      summary.testAccuracy = card.cleanAccuracy?.test;
    } catch {
      /* a model without a readable card is still listed */
    }
    out.push(summary);
  }
  return out;
}

/** The engine the default (first) model gets, decided the way every command decides it. */
async function engineReport(models: ModelSummary[], requested: string | undefined, root = projectRoot()): Promise<InfoReport['engine']> {
  const ort = ortStatus();
  const first = models.find((m) => m.path === path.join('models', 'gtsrb-cnn')) ?? models[0];
  const base = { model: first?.path ?? null, ortLoads: ort.ok, ortReason: ort.reason };
  if (!first) return { ...base, engine: ort.ok ? 'ort' : 'tfjs', source: 'auto', reason: ort.ok ? `${ort.reason} (no model to check)` : ort.reason };
  const clf = await loadClassifier(path.join(root, first.path));
  const { classifier, engine } = useEngine(clf, requested);
  releaseClassifier(classifier);
  return { ...base, ...engine };
}

export const INFO_HELP = `advsign info [options]

  --json FILE|-          write the report as JSON to FILE; '-' or a bare --json: stdout only
  --backend NAME         tensorflow | wasm | cpu (default: the fastest that starts; ADVSIGN_BACKEND)
  --engine ort|tfjs      the engine to report for the default model (default: ort when it loads; ADVSIGN_ENGINE)

Prints the version, Node and platform, the tfjs backend in use and why the others did not start,
the compute engine the default model gets and whether onnxruntime-node loads, and the models
under models/ with their architecture, input size and test accuracy.`;

export async function infoCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { json: { type: 'string' }, backend: { type: 'string' }, engine: { type: 'string' } }, 'info');
  checkOutputs(jsonTarget(f));
  const backend = await initBackend(f.backend as string | undefined);
  const models = findModels();
  const report: InfoReport = {
    version: version(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    tfjs: tf.version.tfjs,
    backend,
    engine: await engineReport(models, f.engine as string | undefined),
    models,
  };
  const json = jsonTarget(f);
  if (json) writeJsonOutput(json, report);
  if (json === '-') return;
  console.log(`advsign ${report.version} (node ${report.node}, ${report.platform}/${report.arch}, tfjs ${report.tfjs})`);
  console.log(`backend: ${backend.backend} (${backend.source})`);
  for (const a of backend.attempts) console.log(`  ${a.name.padEnd(10)} ${a.ok ? 'ok' : 'unavailable'}: ${a.reason}`);
  const e = report.engine;
  console.log(
    `engine: ${e.engine} (${e.source})${e.model ? ` for ${e.model}` : ''}: ${e.reason}` +
      (e.ort ? `, ${e.ort.threads} thread${e.ort.threads > 1 ? 's' : ''}` : ''),
  );
  if (e.engine !== 'ort') console.log(`  ort        ${e.ortLoads ? 'loads' : 'unavailable'}: ${e.ortReason}`);
  console.log('  (--engine ort|tfjs or ADVSIGN_ENGINE chooses for inference, attacks and training; batch-norm and TRADES training run on tfjs)');
  console.log(`models:${report.models.length ? '' : ' none'}`);
  for (const m of report.models) {
    console.log(
      `  ${m.path}  ${m.architecture ?? '?'} ${m.inputSize ?? '?'}px` + (m.testAccuracy != null ? `  test accuracy ${(m.testAccuracy * 100).toFixed(2)}%` : ''),
    );
  }
}
