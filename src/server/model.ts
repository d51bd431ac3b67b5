/** The daemon's classifier: a saved model folder, the shipped default, or (explicitly) an untrained one. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildModel, Classifier, LayersClassifier } from '../inference/model';
import { loadModel, ModelDescription } from '../inference/load-model';
import { DEFAULT_MODEL_INPUT, ModelInputOptions } from '../inference/model-input';
import { defaultModelDir } from '../util/paths';
import { UserError } from '../data/types';

export interface LoadedModel {
  classifier: Classifier;
  /** What was loaded, for logs and /metrics. */
  description: string;
  untrained: boolean;
  /** Which runtime computes what (null for an untrained model). */
  details: ModelDescription | null;
  /** The model on disk (null for an untrained one): what print jobs load. */
  path: string | null;
}

/**
 * `spec` null → the shipped models/gtsrb-cnn; 'untrained' or 'untrained:<arch>' → fresh random
 * weights (for demos of the plumbing and benchmarks: predictions are meaningless).
 */
export async function loadServeModel(spec: string | null, input: ModelInputOptions = DEFAULT_MODEL_INPUT): Promise<LoadedModel> {
  if (spec && /^untrained(:.+)?$/.test(spec)) {
    const arch = spec.includes(':') ? spec.slice(spec.indexOf(':') + 1) : 'cnn4';
    if (!['cnn4', 'cnn4-small', 'cnn4-wide', 'cnn4-bn'].includes(arch)) throw new UserError(`unknown architecture '${arch}' in --model ${spec}`);
    const model = buildModel({ arch: arch as 'cnn4', inputSize: 32, numClasses: 43 });
    return { classifier: new LayersClassifier(model), description: `untrained ${arch}`, untrained: true, details: null, path: null };
  }
  const dir = spec ?? defaultModelDir();
  const json = fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? path.join(dir, 'model.json') : dir;
  if (!fs.existsSync(json)) {
    throw new UserError(
      spec
        ? `model not found: ${spec}`
        : `no model at ${dir}: train one with 'advsign train --data synthetic --out models/gtsrb-cnn', pass --model DIR, or --model untrained to try the daemon with random weights`,
    );
  }
  const loaded = await loadModel(dir, input);
  return {
    classifier: loaded.classifier,
    description: path.relative(process.cwd(), dir) || dir,
    untrained: false,
    details: loaded.description,
    path: path.resolve(dir),
  };
}
