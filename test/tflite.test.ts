/**
 * TFLite export and inference: the hand-written flatbuffers load in the real TFLite runtime
 * (@tensorflow/tfjs-tflite, wasm) and agree with the tfjs model; int8 stays faithful; bad files
 * fail with clear errors; the TFLite model is a black box to attacks.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel } from '../src/inference/model';
import { loadLayersModel, saveModel } from '../src/inference/model-io';
import { trainClassifier } from '../src/inference/train';
import { renderDataset } from '../src/data/synthetic';
import { splitByGroup } from '../src/data/gtsrb';
import { loadDataset } from '../src/data/load';
import type { ImageSet } from '../src/data/types';
import { fb, FbReader, serializeFlatBuffer } from '../src/tflite/flatbuffer';
import { bufferData, ModelDesc, Op, opts, parseModel, serializeModel, TensorType } from '../src/tflite/schema';
import { compareLogits, convertToTflite, tfjsLogits } from '../src/tflite/export';
import { assertInputSize, loadTfliteModel } from '../src/tflite/runtime';
import { tfliteRobustness } from '../src/tflite/robustness';
import { exportCommand } from '../src/cli/export';
import { ROOT, sharedGtsrb, tempDir } from './helpers';

function randomImages(n: number, size: number, seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform([n, size, size, 3], 0, 1, 'float32', seed).dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.strictEqual(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** A tiny valid float model: MUL by 2 then RESHAPE to [1, 12] (input [1, 2, 2, 3]). */
function tinyModel(extraOp?: { op: number; customCode?: string }): ModelDesc {
  const f32 = (v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
  const m: ModelDesc = {
    description: 'tiny',
    buffers: [new Uint8Array(0), f32([2]), new Uint8Array(Int32Array.from([1, 12]).buffer)],
    tensors: [
      { name: 'input', shape: [1, 2, 2, 3], type: TensorType.FLOAT32, buffer: 0 },
      { name: 'two', shape: [1], type: TensorType.FLOAT32, buffer: 1 },
      { name: 'doubled', shape: [1, 2, 2, 3], type: TensorType.FLOAT32, buffer: 0 },
      { name: 'shape', shape: [2], type: TensorType.INT32, buffer: 2 },
      { name: 'output', shape: [1, 12], type: TensorType.FLOAT32, buffer: 0 },
    ],
    operators: [
      { op: Op.MUL, inputs: [0, 1], outputs: [2], options: opts.mul() },
      { op: Op.RESHAPE, inputs: [2, 3], outputs: [4], options: opts.reshape([1, 12]) },
    ],
    inputs: [0],
    outputs: [4],
  };
  if (extraOp) m.operators.push({ op: extraOp.op, inputs: [4], outputs: [4], customCode: extraOp.customCode });
  return m;
}

/** The ops a converted cnn4-family model has, with or without batch norm (folded into the convs). */
const CNN4_OPS = ['MUL', 'ADD', 'CONV_2D', 'CONV_2D', 'MAX_POOL_2D', 'CONV_2D', 'CONV_2D', 'MAX_POOL_2D', 'RESHAPE', 'FULLY_CONNECTED', 'FULLY_CONNECTED'];

describe('tflite: flatbuffer writer', () => {
  it('writes tables, vectors and strings that read back, with aligned data', () => {
    const bytes = serializeFlatBuffer(
      fb.table([
        fb.u32(3),
        fb.str('héllo'),
        fb.vec('i32', [1, -2, 3]),
        fb.tables([fb.table([fb.i8(-5), null, fb.f32(1.5)]), fb.table([])]),
        fb.bytes(Uint8Array.from([9, 8, 7]), 16),
        fb.vec('i64', [BigInt(-128), BigInt(5)]),
      ]),
      'TEST',
    );
    const r = new FbReader(bytes);
    assert.strictEqual(r.identifier(), 'TEST');
    const root = r.root();
    assert.strictEqual(r.scalar(root, 0, 'u32', 0), 3);
    assert.strictEqual(r.string(root, 1), 'héllo');
    assert.deepStrictEqual(r.scalars(root, 2, 'i32'), [1, -2, 3]);
    const [a, b] = r.tables(root, 3);
    assert.strictEqual(r.scalar(a, 0, 'i8', 0), -5);
    assert.strictEqual(r.scalar(a, 1, 'i32', 42), 42, 'absent field gives the default');
    assert.strictEqual(r.scalar(a, 2, 'f32', 0), 1.5);
    assert.strictEqual(r.scalar(b, 0, 'i8', 7), 7);
    const v = r.vector(root, 4)!;
    assert.strictEqual(v.start % 16, 0, 'force_align 16 honoured');
    assert.deepStrictEqual(Array.from(r.bytesOf(root, 4)!), [9, 8, 7]);
    assert.strictEqual(r.vector(root, 5)!.start % 8, 0);
    assert.deepStrictEqual(r.scalars(root, 5, 'i64'), [-128, 5]);
    assert.strictEqual(r.scalar(root, 9, 'u32', 11), 11, 'field beyond the vtable gives the default');
  });
});

describe('tflite: export and run', function () {
  this.timeout(120000);
  let trained: tf.LayersModel;
  let calib: ImageSet;
  let check: ImageSet;

  before(async () => {
    await initBackend();
    // A briefly trained model has real class margins, which int8 agreement needs to mean anything.
    const all = renderDataset({ perClass: 15, size: 32, seed: 11 });
    const { train, val } = splitByGroup(all, 0.2, 1);
    const r = await trainClassifier(train, val, {
      arch: 'cnn4-small',
      epochs: 4,
      batchSize: 32,
      learningRate: 3e-3,
      seed: 3,
      patience: 6,
      augment: false,
      progress: false,
    });
    trained = r.model;
    calib = train;
    check = renderDataset({ perClass: 5, size: 32, seed: 77 });
  });

  after(() => trained?.dispose());

  it('loads a hand-built model in the TFLite runtime and computes it', async () => {
    const clf = await loadTfliteModel(serializeModel(tinyModel()));
    assert.strictEqual(clf.inputSize, 2);
    assert.strictEqual(clf.numClasses, 12);
    const x = Float32Array.from({ length: 12 }, (_, i) => i / 12);
    assert.deepStrictEqual(
      Array.from(clf.predictLogits(x, 1)),
      Array.from(x, (v) => 2 * v),
    );
    clf.dispose();
  });

  it('quantises and dequantises for models with int8 input and output', async () => {
    const q = { scale: [1 / 255], zeroPoint: [-128] };
    const m: ModelDesc = {
      description: 'int8 io',
      buffers: [new Uint8Array(0), new Uint8Array(Int32Array.from([1, 12]).buffer)],
      tensors: [
        { name: 'input', shape: [1, 2, 2, 3], type: TensorType.INT8, buffer: 0, quantization: q },
        { name: 'shape', shape: [2], type: TensorType.INT32, buffer: 1 },
        { name: 'output', shape: [1, 12], type: TensorType.INT8, buffer: 0, quantization: q },
      ],
      operators: [{ op: Op.RESHAPE, inputs: [0, 1], outputs: [2], options: opts.reshape([1, 12]) }],
      inputs: [0],
      outputs: [2],
    };
    const clf = await loadTfliteModel(serializeModel(m));
    assert.strictEqual(clf.info.inputType, 'int8');
    const x = Float32Array.from({ length: 24 }, (_, i) => (i % 12) / 11);
    const y = clf.predictLogits(x, 2);
    assert.ok(maxAbsDiff(y, x) <= 0.5 / 255 + 1e-7, `round trip error ${maxAbsDiff(y, x)}`);
    clf.dispose();
  });

  it('float export of cnn4-small matches tfjs logits (max |diff| ≤ 1e-4)', async () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 1 });
    const r = await convertToTflite(model, { quantize: 'none', verifyImages: 0 });
    const p = parseModel(r.tflite);
    assert.strictEqual(p.version, 3);
    assert.deepStrictEqual(r.ops, CNN4_OPS);
    // Layouts: conv filters [out, h, w, in], dense weights [out, in].
    const conv1 = p.tensors.find((t) => t.name === 'conv1_1/filter')!;
    assert.deepStrictEqual(conv1.shape, [16, 3, 3, 3]);
    assert.deepStrictEqual(p.tensors.find((t) => t.name === 'fc1/weights')!.shape, [64, 2048]);
    const k = model.getLayer('conv1_1').getWeights()[0].dataSync();
    const f = new Float32Array(bufferData(r.tflite, conv1.buffer).slice().buffer);
    // tfjs [kh=1, kw=2, in=0, out=5] ↔ TFLite [out=5, kh=1, kw=2, in=0]
    assert.strictEqual(f[((5 * 3 + 1) * 3 + 2) * 3 + 0], k[((1 * 3 + 2) * 3 + 0) * 16 + 5]);
    const clf = await loadTfliteModel(r.tflite);
    const n = 12;
    const x = randomImages(n, 32, 5);
    const d = maxAbsDiff(clf.predictLogits(x, n), tfjsLogits(model, x, n, 32));
    assert.ok(d <= 1e-4, `max |diff| ${d}`);
    clf.dispose();
    model.dispose();
  });

  it('folds batch norm (cnn4-bn with non-trivial statistics) exactly', async () => {
    const model = buildModel({ arch: 'cnn4-bn', inputSize: 32, numClasses: 43, seed: 2 });
    let seed = 10;
    for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
      const c = layer.getWeights()[0].shape[0];
      const u = (lo: number, hi: number) => tf.randomUniform([c], lo, hi, 'float32', seed++);
      // gamma, beta, moving mean, moving variance
      layer.setWeights([u(0.5, 1.5), u(-0.5, 0.5), u(-0.3, 0.3), u(0.5, 2)]);
    }
    const r = await convertToTflite(model, { quantize: 'none', verifyImages: 0 });
    // Same graph as without batch norm: nothing is left of it but the conv weights and biases.
    assert.deepStrictEqual(r.ops, CNN4_OPS);
    assert.ok(
      r.notes.some((s) => /bn1_1.*folded into conv1_1/.test(s)),
      r.notes.join('; '),
    );
    const clf = await loadTfliteModel(r.tflite);
    const x = randomImages(8, 32, 6);
    const d = maxAbsDiff(clf.predictLogits(x, 8), tfjsLogits(model, x, 8, 32));
    assert.ok(d <= 1e-4, `max |diff| ${d}`);
    clf.dispose();
    model.dispose();
  });

  it('int8 export agrees with tfjs on synthetic signs and is ≤ 30 % of the float size', async () => {
    const float = await convertToTflite(trained, { quantize: 'none', verifyImages: 0 });
    const q = await convertToTflite(trained, { quantize: 'int8', calibration: calib, verifyImages: 0 });
    assert.deepStrictEqual(q.calibration, { source: 'given', images: calib.n });
    assert.ok(q.ops.includes('QUANTIZE') && q.ops.includes('DEQUANTIZE'));
    const p = parseModel(q.tflite);
    const conv = p.tensors.find((t) => t.name === 'conv1_2/filter')!;
    assert.strictEqual(conv.typeName, 'int8');
    assert.strictEqual(conv.scale.length, 16, 'per-channel conv weights');
    assert.strictEqual(p.tensors.find((t) => t.name === 'conv1_2/bias')!.typeName, 'int32');
    const ratio = q.tflite.length / float.tflite.length;
    assert.ok(ratio <= 0.3, `int8 is ${(ratio * 100).toFixed(1)}% of float`);
    const clf = await loadTfliteModel(q.tflite);
    const a = clf.predictLogits(check.images, check.n);
    const c = compareLogits(a, tfjsLogits(trained, check.images, check.n, 32), check.n, 43);
    // Measured 0.97 for this briefly trained model (near-ties are common); GTSRB: see below.
    assert.ok(c.agreement >= 0.9, `top-1 agreement ${c.agreement}`);
    clf.dispose();
  });

  it('the fully integer variant (--full-integer) runs too', async () => {
    const q = await convertToTflite(trained, { quantize: 'int8', calibration: calib, head: 'int8', verifyImages: 64 });
    assert.strictEqual(q.ops[q.ops.length - 1], 'DEQUANTIZE');
    assert.ok(q.agreement! >= 0.85, `agreement ${q.agreement}`);
  });

  it('is a black box: no gradients, no leaked tensors, Square and transfer attacks run', async () => {
    const f = await convertToTflite(trained, { quantize: 'none', verifyImages: 0 });
    const q = await convertToTflite(trained, { quantize: 'int8', calibration: calib, verifyImages: 0 });
    const [cf, cq] = [await loadTfliteModel(f.tflite), await loadTfliteModel(q.tflite)];
    const x = tf.tensor4d(check.images.subarray(0, 4 * 32 * 32 * 3), [4, 32, 32, 3]);
    assert.throws(() => tf.grad((t: tf.Tensor) => cf.logits(t as tf.Tensor4D).sum())(x), /no gradients.*black-box/);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        cf.logits(x).sum();
      });
      cf.logits(x).dispose();
    }
    assert.strictEqual(tf.memory().numTensors, before, 'logits() leaks no tensors');
    x.dispose();
    const { LayersClassifier } = await import('../src/inference/model');
    const r = await tfliteRobustness(new LayersClassifier(trained), { float: cf, int8: cq }, check, {
      limit: 16,
      squareLimit: 6,
      squareQueries: 40,
      pgdSteps: 3,
    });
    assert.strictEqual(r.n, 16);
    assert.deepStrictEqual(
      r.clean.map((c) => c.name),
      ['surrogate', 'float', 'int8'],
    );
    assert.deepStrictEqual(
      r.transfer.map((t) => t.attack),
      ['fgsm', 'pgd'],
    );
    for (const row of r.transfer) {
      assert.deepStrictEqual(
        row.targets.map((t) => t.name),
        ['float', 'int8'],
      );
      for (const t of [row.source, ...row.targets]) assert.ok(t.successRate >= 0 && t.successRate <= 1);
    }
    assert.strictEqual(r.square.length, 2);
    for (const s of r.square) {
      assert.ok(s.successRate >= 0 && s.successRate <= 1);
      assert.ok(s.meanQueries <= 40 && s.medianQueries <= 40);
    }
    cf.dispose();
    cq.dispose();
  });

  it('advsign export (handler) writes float and int8 files and reports the check', async () => {
    const dir = tempDir();
    const modelDir = path.join(dir, 'm');
    await saveModel(trained, modelDir);
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => {
      lines.push(a.join(' '));
    };
    try {
      await exportCommand(['--model', modelDir, '--out', path.join(dir, 'f.tflite'), '--verify', '32']);
      await exportCommand([
        '--model',
        modelDir,
        '--out',
        path.join(dir, 'q.tflite'),
        '--int8',
        '--calibration',
        'synthetic',
        '--calibration-images',
        '200',
        '--verify',
        '32',
      ]);
    } finally {
      console.log = log;
    }
    const out = lines.join('\n');
    assert.match(out, /wrote .*f\.tflite: [\d,]+ bytes, float32/);
    assert.match(out, /wrote .*q\.tflite: [\d,]+ bytes, int8/);
    assert.match(out, /calibrated on 200 synthetic images/);
    assert.match(out, /top-1 agreement with tfjs 100\.0%/, 'float agrees fully');
    const [fs1, fs2] = ['f', 'q'].map((n) => fs.statSync(path.join(dir, `${n}.tflite`)).size);
    assert.ok(fs2 / fs1 <= 0.3);
    await assert.rejects(exportCommand(['--model', modelDir, '--out', path.join(dir, 'x.bin')]), /\.tflite/);
    await assert.rejects(exportCommand(['--model', modelDir, '--out', path.join(dir, 'x.tflite'), '--calibration', 'synthetic']), /only applies with --int8/);
  });
});

describe('tflite: load errors', function () {
  this.timeout(60000);
  let dir: string;
  before(async () => {
    await initBackend();
    dir = tempDir();
  });

  it('refuses a file that is not a TFLite model', async () => {
    const f = path.join(dir, 'model.tflite');
    fs.writeFileSync(f, Buffer.from('{"format":"layers-model"}'));
    await assert.rejects(loadTfliteModel(f), /not a TFLite model: bytes 4–8 should be "TFL3", found "rmat"/);
    fs.writeFileSync(f, Buffer.from([1, 2, 3]));
    await assert.rejects(loadTfliteModel(f), /not a TFLite model/);
    await assert.rejects(loadTfliteModel(path.join(dir, 'missing.tflite')), /not found/);
    await assert.rejects(loadTfliteModel(dir), /is a folder/);
    // Truncated: caught by the structure check, or else by the runtime's own verifier.
    const good = serializeModel(tinyModel());
    await assert.rejects(loadTfliteModel(good.subarray(0, 60)), /corrupt TFLite file/);
    await assert.rejects(loadTfliteModel(good.subarray(0, good.length - 20)), /corrupt TFLite file|TFLite runtime refused/);
  });

  it('names unsupported ops before the runtime sees them', async () => {
    await assert.rejects(loadTfliteModel(serializeModel(tinyModel({ op: Op.LSTM }))), /unsupported TFLite op LSTM\b/);
    await assert.rejects(loadTfliteModel(serializeModel(tinyModel({ op: Op.CUSTOM, customCode: 'MyFancyOp' }))), /CUSTOM \(MyFancyOp\)/);
    // Codes past 127 live only in builtin_code (deprecated_builtin_code holds the placeholder 127).
    const p = parseModel(serializeModel(tinyModel({ op: 150 })));
    assert.strictEqual(p.operatorCodes[2].code, 150);
    await assert.rejects(loadTfliteModel(serializeModel(tinyModel({ op: 150 }))), /unknown builtin op code 150/);
  });

  it('reports an input size mismatch with the data', async () => {
    const f = path.join(dir, 'tiny.tflite');
    fs.writeFileSync(f, serializeModel(tinyModel()));
    await assert.rejects(loadTfliteModel(f, { expectedInputSize: 32 }), /input size mismatch: the TFLite model takes 2×2 images, the data has 32×32/);
    const clf = await loadTfliteModel(f);
    assert.throws(() => clf.predictLogits(new Float32Array(32 * 32 * 3), 1), /input size mismatch.*\(32×32 images\?\)/);
    assert.throws(() => assertInputSize(clf, 48, 'the calibration set'), /takes 2×2 images, the calibration set has 48×48/);
    clf.dispose();
  });
});

describe('tflite: shipped model on GTSRB (skipped without models/gtsrb-cnn and the shared data)', function () {
  this.timeout(120000);
  const modelDir = process.env.ADVSIGN_GTSRB_MODEL ?? path.join(ROOT, 'models', 'gtsrb-cnn');

  it('float matches to 1e-4 and int8 agrees on ≥ 99 % of 300 test images', async function () {
    const data = sharedGtsrb();
    if (!data || !fs.existsSync(path.join(modelDir, 'model.json'))) this.skip();
    await initBackend();
    const model = await loadLayersModel(modelDir);
    const size = model.inputs[0].shape[1] as number;
    const train = await loadDataset(data!, { split: 'train', size, limit: 500 });
    const test = await loadDataset(data!, { split: 'test', size, limit: 300 });
    const ref = tfjsLogits(model, test.images, test.n, size);
    const f = await convertToTflite(model, { quantize: 'none', verifyImages: 0 });
    const q = await convertToTflite(model, { quantize: 'int8', calibration: train, verifyImages: 0 });
    const [cf, cq] = [await loadTfliteModel(f.tflite), await loadTfliteModel(q.tflite)];
    const df = compareLogits(cf.predictLogits(test.images, test.n), ref, test.n, 43);
    const dq = compareLogits(cq.predictLogits(test.images, test.n), ref, test.n, 43);
    assert.ok(df.maxAbsDiff <= 1e-4, `float max |diff| ${df.maxAbsDiff}`);
    assert.ok(dq.agreement >= 0.99, `int8 agreement ${dq.agreement}`);
    assert.ok(q.tflite.length <= 0.3 * f.tflite.length);
    cf.dispose();
    cq.dispose();
    model.dispose();
  });
});
