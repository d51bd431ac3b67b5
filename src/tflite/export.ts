/**
 * Exporting a project model (models/NAME, TensorFlow.js format) to a .tflite file, float32 or
 * int8, and checking the file against the tfjs model by running both.
 */
import * as path from 'node:path';
import { tf } from '../inference/tf';
import { loadLayersModel } from '../inference/model-io';
import { writeFileAtomic } from '../util/atomic-file';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { renderDataset } from '../data/synthetic';
import { planFromModel } from './plan';
import { Calibration, calibrate, Int8Head, planToTflite, Quantize } from './convert';
import { loadTfliteModel } from './runtime';
import { parseModel } from './schema';

export interface ExportOptions {
  quantize: Quantize;
  /** Images whose activation ranges set the int8 scales (synthetic signs when absent). */
  calibration?: ImageSet;
  /** At most this many calibration images are used (default 1000). */
  calibrationImages?: number;
  /**
   * Run the written file in the TFLite runtime and compare with the tfjs model on this many
   * images (default 256; 0 skips the check). Uses the calibration images, or synthetic ones.
   */
  verifyImages?: number;
  /** Free text stored in the model's description field. */
  description?: string;
  /** int8 only: the logits layer as hybrid (default: int8 weights, float logits) or fully int8. */
  head?: Int8Head;
}

export interface ExportResult {
  /** File size in bytes. */
  bytes: number;
  /** TFLite ops in execution order. */
  ops: string[];
  quantize: Quantize;
  /** Largest |logit difference| TFLite vs tfjs over the check images. */
  maxAbsDiff?: number;
  /** Share of check images where TFLite and tfjs predict the same class. */
  agreement?: number;
  /** Images used for the check. */
  verifiedOn?: number;
  /** Where the calibration images came from and how many were used (int8). */
  calibration?: { source: 'given' | 'synthetic'; images: number };
  /** Folding and dropping decisions. */
  notes: string[];
}

export interface ConvertResult extends Omit<ExportResult, 'bytes'> {
  tflite: Uint8Array;
}

function syntheticCheckSet(size: number): ImageSet {
  // 3 per class, a seed apart from the training and test renders (1001, 2002).
  return renderDataset({ perClass: 3, size, seed: 3003, augment: true });
}

/** Largest |a − b| and top-1 agreement of two logit arrays [n, k]. */
export function compareLogits(a: Float32Array, b: Float32Array, n: number, k: number): { maxAbsDiff: number; agreement: number } {
  let maxAbsDiff = 0,
    same = 0;
  for (let i = 0; i < n; i++) {
    let ia = 0,
      ib = 0;
    for (let j = 0; j < k; j++) {
      const d = Math.abs(a[i * k + j] - b[i * k + j]);
      if (d > maxAbsDiff || Number.isNaN(d)) maxAbsDiff = Number.isNaN(d) ? Infinity : d;
      if (a[i * k + j] > a[i * k + ia]) ia = j;
      if (b[i * k + j] > b[i * k + ib]) ib = j;
    }
    if (ia === ib) same++;
  }
  return { maxAbsDiff, agreement: n ? same / n : 1 };
}

/** tfjs logits of a LayersModel over a set, batched. */
export function tfjsLogits(model: tf.LayersModel, images: Float32Array, n: number, size: number, batch = 256): Float32Array {
  const k = model.outputs[0].shape[1] as number;
  const out = new Float32Array(n * k);
  const per = size * size * 3;
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const z = tf.tidy(() => model.predict(tf.tensor4d(images.subarray(i * per, (i + m) * per), [m, size, size, 3])) as tf.Tensor);
    out.set(z.dataSync() as Float32Array, i * k);
    z.dispose();
  }
  return out;
}

/** Converts an in-memory tfjs model to TFLite bytes (and checks them unless verifyImages is 0). */
export async function convertToTflite(model: tf.LayersModel, o: ExportOptions): Promise<ConvertResult> {
  const plan = planFromModel(model);
  const s = plan.inputSize;
  let calSet = o.calibration;
  const source: 'given' | 'synthetic' = calSet ? 'given' : 'synthetic';
  if (calSet && calSet.size !== s) {
    throw new UserError(`input size mismatch: the model takes ${s}×${s} images, the calibration set has ${calSet.size}×${calSet.size}`);
  }
  let cal: Calibration | undefined;
  if (o.quantize === 'int8') {
    calSet ??= renderDataset({ perClass: 12, size: s, seed: 4004, augment: true });
    cal = calibrate(plan, calSet, o.calibrationImages ?? 1000);
  }
  const tflite = planToTflite(plan, { quantize: o.quantize, calibration: cal, description: o.description, head: o.head });
  const result: ConvertResult = {
    tflite,
    quantize: o.quantize,
    ops: parseModel(tflite).operators.map((op) => op.name),
    notes: plan.notes,
    calibration: cal ? { source, images: cal.images } : undefined,
  };
  const nCheck = o.verifyImages ?? 256;
  if (nCheck > 0) {
    const check = o.calibration ?? syntheticCheckSet(s);
    const n = Math.min(nCheck, check.n);
    const per = s * s * 3;
    // Spread over the set, which is often sorted by class.
    const x = new Float32Array(n * per);
    for (let i = 0; i < n; i++) {
      const k = Math.floor((i * check.n) / n);
      x.set(check.images.subarray(k * per, (k + 1) * per), i * per);
    }
    const clf = await loadTfliteModel(tflite);
    try {
      const a = clf.predictLogits(x, n);
      const b = tfjsLogits(model, x, n, s);
      const c = compareLogits(a, b, n, plan.numClasses);
      Object.assign(result, { maxAbsDiff: c.maxAbsDiff, agreement: c.agreement, verifiedOn: n });
    } finally {
      clf.dispose();
    }
  }
  return result;
}

/**
 * Exports models/NAME to `outFile` (.tflite). The file is written atomically (temporary file,
 * then rename) so a failed export never leaves a truncated model behind.
 */
export async function exportTflite(modelDir: string, outFile: string, o: ExportOptions): Promise<ExportResult> {
  const model = await loadLayersModel(modelDir);
  try {
    const { tflite, ...rest } = await convertToTflite(model, {
      ...o,
      description: o.description ?? `advsign ${path.basename(path.resolve(modelDir))} (${o.quantize === 'int8' ? 'int8' : 'float32'})`,
    });
    writeFileAtomic(outFile, tflite);
    return { bytes: tflite.length, ...rest };
  } finally {
    model.dispose();
  }
}
