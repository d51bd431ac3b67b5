/**
 * `advsign bench` figures for a deployed (.tflite) target: the interpreter's inference time per
 * 32×32 image (float32 and int8), Square Attack's query rate against it at batch 64, and the cost
 * of FGSM through the graph rebuilt from the file (on tfjs, and written as ONNX on onnxruntime) next
 * to FGSM on the tfjs model it came from.
 * The model is the project's cnn4 (random weights: the cost does not depend on them).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf, Tensor4D } from '../inference/tf';
import { buildModel, LayersClassifier } from '../inference/model';
import type { Classifier } from '../inference/model';
import { loadModel, LoadedModel } from '../inference/load-model';
import { renderDataset } from '../data/synthetic';
import { fgsm } from '../attack/one-step';
import { square } from '../attack/square';
import { convertToTflite } from './export';
import { useEngine } from '../inference/engine';

export interface TfliteBench {
  /** Interpreter time per image, batch-1 files, 32×32×3. */
  floatMsPerImage: number;
  int8MsPerImage: number;
  /** Square Attack on the interpreter, 64 images at a time: model queries per second. */
  squareQueriesPerSecondBatch64: { float: number; int8: number };
  /**
   * FGSM at batch 64, images per second: the tfjs model, the graph rebuilt from its float/int8 file
   * on tfjs, and (null when onnxruntime does not load) the same files' graphs on onnxruntime.
   */
  fgsmBatch64: {
    tfjs: number;
    rebuiltFloat: number;
    rebuiltInt8: number;
    costRatioFloat: number;
    costRatioInt8: number;
    ortFloat: number | null;
    ortInt8: number | null;
  };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function msPerImage(clf: Classifier, x: Float32Array, n: number, repeats: number): Promise<number> {
  const runtime = clf.runtime as Classifier & { predictLogits(images: Float32Array, n: number): Float32Array };
  runtime.predictLogits(x.subarray(0, 32 * 32 * 3), 1);
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    runtime.predictLogits(x, n);
    times.push((performance.now() - t0) / n);
  }
  return median(times);
}

async function squareRate(clf: Classifier, x: Tensor4D, maxQueries: number): Promise<number> {
  const runtime = clf.runtime as Classifier;
  // Labels = the model's own predictions, so every image starts correct and is attacked.
  const y = tf.tidy(() => tf.argMax(runtime.logits(x), 1).cast('int32') as tf.Tensor1D);
  const t0 = performance.now();
  const r = await square.run(runtime, x, y, { eps: 8 / 255, maxQueries, seed: 1 });
  const seconds = (performance.now() - t0) / 1000;
  r.adversarial.dispose();
  y.dispose();
  return (r.queries ?? new Int32Array(0)).reduce((a, b) => a + b, 0) / seconds;
}

/** Median time of one FGSM batch on each classifier, interleaved so load changes hit all alike. */
async function fgsmTimes(clfs: Classifier[], x: Tensor4D, repeats: number): Promise<number[]> {
  const y = tf.tensor1d(
    Array.from({ length: x.shape[0] }, (_, i) => i % 43),
    'int32',
  );
  const once = async (c: Classifier) => {
    const t0 = performance.now();
    const r = await fgsm.run(c, x, y, { eps: 8 / 255 });
    await r.adversarial.data();
    r.adversarial.dispose();
    return performance.now() - t0;
  };
  for (const c of clfs) await once(c);
  const times: number[][] = clfs.map(() => []);
  for (let i = 0; i < repeats; i++) for (const [k, c] of clfs.entries()) times[k].push(await once(c));
  y.dispose();
  return times.map(median);
}

export async function benchTflite(o: { quick?: boolean } = {}): Promise<TfliteBench> {
  const repeats = o.quick ? 3 : 9;
  const model = buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 1 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-bench-'));
  const loaded: LoadedModel[] = [];
  const x = tf.randomUniform([64, 32, 32, 3], 0, 1, 'float32', 5) as Tensor4D;
  try {
    const calibration = renderDataset({ perClass: 2, size: 32, seed: 4004, augment: true });
    for (const quantize of ['none', 'int8'] as const) {
      const r = await convertToTflite(model, { quantize, calibration: quantize === 'int8' ? calibration : undefined, verifyImages: 0 });
      const file = path.join(dir, `${quantize}.tflite`);
      fs.writeFileSync(file, r.tflite);
      loaded.push(await loadModel(file));
    }
    const [float, int8] = loaded.map((m) => m.classifier);
    const pixels = x.dataSync() as Float32Array;
    const own = new LayersClassifier(model);
    // The default engine of each file: onnxruntime when it loads (its graph written as ONNX).
    const native = [float, int8].map((c) => useEngine(c, undefined)).filter((e) => e.engine.engine === 'ort');
    const [tfjs, rebuiltFloat, rebuiltInt8, ortFloat, ortInt8] = await fgsmTimes([own, float, int8, ...native.map((e) => e.classifier)], x, repeats);
    for (const e of native) e.classifier.dispose?.();
    const queries = o.quick ? 20 : 100;
    return {
      floatMsPerImage: await msPerImage(float, pixels, 64, repeats),
      int8MsPerImage: await msPerImage(int8, pixels, 64, repeats),
      squareQueriesPerSecondBatch64: { float: await squareRate(float, x, queries), int8: await squareRate(int8, x, queries) },
      fgsmBatch64: {
        tfjs: 64000 / tfjs,
        rebuiltFloat: 64000 / rebuiltFloat,
        rebuiltInt8: 64000 / rebuiltInt8,
        costRatioFloat: rebuiltFloat / tfjs,
        costRatioInt8: rebuiltInt8 / tfjs,
        ortFloat: ortFloat ? 64000 / ortFloat : null,
        ortInt8: ortInt8 ? 64000 / ortInt8 : null,
      },
    };
  } finally {
    x.dispose();
    for (const m of loaded) m.dispose();
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
