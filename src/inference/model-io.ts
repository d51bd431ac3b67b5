/**
 * Saving and loading models as TensorFlow.js files (model.json + weights.bin), the same format
 * tfjs-node's file:// handler writes, without needing tfjs-node. Saves are atomic
 * (util/atomic-file): an interrupted save never leaves a half model, nor its temporary folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from './tf';
import { LayersClassifier } from './model';
import { UserError } from '../data/types';
import { hasTfliteIdentifier } from '../tflite/schema';
import { recoverDir, replaceDirAtomic, writeFileAtomic } from '../util/atomic-file';

export interface ModelCard {
  name: string;
  architecture: string;
  inputSize: number;
  numClasses: number;
  classNames?: string[];
  [key: string]: unknown;
}

/** Writes JSON to a file atomically (temporary file, fsync, rename). */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Saves model (and optionally its card) into `dir`. The new files are complete before any old
 * file is replaced: a crash at any point leaves either the old or the new model, never a mix.
 */
export async function saveModel(model: tf.LayersModel, dir: string, card?: ModelCard): Promise<void> {
  await replaceDirAtomic(dir, (staging) => writeModelFiles(model, dir, staging, card));
}

async function writeModelFiles(model: tf.LayersModel, dir: string, staging: string, card?: ModelCard): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = Buffer.from(artifacts.weightData as ArrayBuffer);
      const json = {
        format: 'layers-model',
        generatedBy: `advsign (TensorFlow.js ${tf.version.tfjs})`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
      };
      fs.writeFileSync(path.join(staging, 'weights.bin'), weights);
      fs.writeFileSync(path.join(staging, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (card) fs.writeFileSync(path.join(staging, 'card.json'), JSON.stringify(card, null, 2) + '\n');
  else if (fs.existsSync(path.join(dir, 'card.json'))) fs.copyFileSync(path.join(dir, 'card.json'), path.join(staging, 'card.json'));
}

interface ModelJson {
  format?: string;
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  signature?: unknown;
  userDefinedMetadata?: tf.io.ModelArtifacts['userDefinedMetadata'];
  modelInitializer?: unknown;
}

/** Resolves a user's --model argument: a folder holding model.json, or the model.json itself. */
export function resolveModelPath(p: string): string {
  const abs = path.resolve(p);
  recoverDir(abs); // a save killed mid-swap left the old model aside
  if (!fs.existsSync(abs)) throw new UserError(`model not found: ${p}`);
  return fs.statSync(abs).isDirectory() ? path.join(abs, 'model.json') : abs;
}

/** A TensorFlow.js model.json with its weight files read, checked for the usual breakage. */
export interface ModelFiles {
  jsonPath: string;
  /** 'graph-model' for tensorflowjs_converter graph models, else a layers model. */
  format: 'layers-model' | 'graph-model';
  artifacts: tf.io.ModelArtifacts;
}

/** Reads model.json and its weights (layers or graph model) with one-line errors. */
export function readModelFiles(p: string): ModelFiles {
  const jsonPath = resolveModelPath(p);
  if (!fs.existsSync(jsonPath)) throw new UserError(`no model.json in ${p}`);
  const text = fs.readFileSync(jsonPath);
  if (hasTfliteIdentifier(text)) throw new UserError(`${p} is a TFLite file; this needs a TensorFlow.js model folder (model.json + weights)`);
  let parsed: ModelJson;
  try {
    parsed = JSON.parse(text.toString('utf8')) as ModelJson;
  } catch (e) {
    throw new UserError(
      `corrupt model file ${jsonPath}: not JSON (a model is a folder with model.json, a model.json or a .tflite file): ${(e as Error).message.split('\n')[0]}`,
    );
  }
  if (!parsed || typeof parsed !== 'object' || !parsed.modelTopology || !Array.isArray(parsed.weightsManifest)) {
    throw new UserError(`${jsonPath} is not a TensorFlow.js model (modelTopology or weightsManifest missing)`);
  }
  const topology = parsed.modelTopology as { node?: unknown };
  const format = parsed.format === 'graph-model' || Array.isArray(topology.node) ? 'graph-model' : 'layers-model';
  const dir = path.dirname(jsonPath);
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of parsed.weightsManifest) {
    specs.push(...group.weights);
    for (const f of group.paths) {
      const wp = path.join(dir, f);
      if (!fs.existsSync(wp)) throw new UserError(`weights file missing: ${wp}`);
      buffers.push(fs.readFileSync(wp));
    }
  }
  const all = Buffer.concat(buffers);
  const expected = specs.reduce((sum, s) => sum + s.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (specs.every((s) => s.dtype === 'float32' && !s.quantization) && all.length !== expected) {
    throw new UserError(`weights in ${dir} have ${all.length} bytes, model.json expects ${expected}: the files do not belong together or are truncated`);
  }
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return {
    jsonPath,
    format,
    artifacts: {
      format,
      modelTopology: parsed.modelTopology as tf.io.ModelArtifacts['modelTopology'],
      weightSpecs: specs,
      weightData,
      signature: parsed.signature as tf.io.ModelArtifacts['signature'],
      userDefinedMetadata: parsed.userDefinedMetadata,
      modelInitializer: parsed.modelInitializer as tf.io.ModelArtifacts['modelInitializer'],
    },
  };
}

/** Loads a saved Keras-style model with clear errors for missing or corrupt files. */
export async function loadLayersModel(p: string): Promise<tf.LayersModel> {
  const files = readModelFiles(p);
  if (files.format === 'graph-model') throw new UserError(`${files.jsonPath} is a TensorFlow.js graph model; this needs a layers model`);
  try {
    return await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  } catch (e) {
    throw new UserError(`cannot load model ${files.jsonPath}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** True when the model's last layer applies softmax (so its outputs are probabilities). */
export function endsInSoftmax(model: tf.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  const cfg = last.getConfig() as { activation?: string };
  return cfg.activation === 'softmax' || last.getClassName() === 'Softmax';
}

/** Loads a model folder as a Classifier; a softmax head is detected and handled. */
export async function loadClassifier(p: string): Promise<LayersClassifier> {
  const model = await loadLayersModel(p);
  try {
    return new LayersClassifier(model, endsInSoftmax(model));
  } catch (e) {
    throw new UserError(`${p}: ${(e as Error).message}`);
  }
}

/** Reads models/NAME/card.json when present. */
export function readCard(p: string): ModelCard | null {
  const f = path.join(path.dirname(resolveModelPath(p)), 'card.json');
  if (!fs.existsSync(f)) return null;
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8')) as ModelCard;
  } catch {
    throw new UserError(`corrupt model card ${f}`);
  }
}

/** One training run in a model's ancestry: which model it produced and how. */
export interface LineageStep {
  model: string;
  command: string | null;
  seconds: number | null;
}

/**
 * The runs that produced a model, oldest first: the ancestry recorded in its card plus the run
 * that made the model itself. A fine-tuned model's card carries this for its --init model, so the
 * whole chain can be reproduced even after the starting model has been replaced.
 */
export function lineageOf(card: ModelCard | null, fallbackName: string): LineageStep[] {
  const training = (card?.training ?? {}) as { command?: unknown; seconds?: unknown; lineage?: unknown };
  const earlier = Array.isArray(training.lineage) ? (training.lineage as LineageStep[]) : [];
  return [
    ...earlier,
    {
      model: typeof card?.name === 'string' ? card.name : fallbackName,
      command: typeof training.command === 'string' ? training.command : null,
      seconds: typeof training.seconds === 'number' ? training.seconds : null,
    },
  ];
}
