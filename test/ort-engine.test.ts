/**
 * The onnxruntime engine: the ONNX export of every architecture (and of generic layers: depthwise
 * and strided 'same' convolutions, batch norm, average pooling, a softmax output) gives the tfjs
 * logits, objective gradients and vector-Jacobian products; attacks reach the same results on
 * both engines; the CLI chooses, reports and refuses engines in one line.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor1D, Tensor2D, Tensor4D } from '../src/inference/tf';
import { initBackend, switchBackend } from '../src/inference/backend';
import { ARCHITECTURES, buildModel, Classifier, inferLogits, LayersClassifier } from '../src/inference/model';
import { loadClassifier } from '../src/inference/model-io';
import { ATTACK_LOSSES, logitsAndVjp, tfObjectiveGradient } from '../src/inference/objective';
import { useEngine } from '../src/inference/engine';
import { OrtClassifier } from '../src/inference/ort-classifier';
import { getAttack } from '../src/attack/registry';
import { renderCleanSign, renderDataset } from '../src/data/synthetic';
import { encodePng } from '../src/data/image-io';
import { ROOT, runCli, tempDir, tensorRelativeError } from './helpers';

/** Layers the cnn4 family does not use: depthwise and strided 'same' convolutions, batch norm, average pooling, softmax. */
function genericModel(): tf.LayersModel {
  const init = (k: number) => tf.initializers.glorotNormal({ seed: 40 + k });
  const m = tf.sequential();
  m.add(tf.layers.rescaling({ inputShape: [31, 31, 3], scale: 1 / 0.5, offset: -1 }));
  m.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(0) }));
  m.add(tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', useBias: false, depthwiseInitializer: init(1) }));
  m.add(tf.layers.batchNormalization());
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }));
  m.add(tf.layers.averagePooling2d({ poolSize: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 12, activation: 'softmax', kernelInitializer: init(2) }));
  return m;
}

/** Non-trivial batch-norm statistics, so folding them into the convolution is really tested. */
function randomiseBatchNorm(model: tf.LayersModel): void {
  let seed = 7;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(
      layer.getWeights().map((w, i) => {
        const r = tf.randomUniform(w.shape, 0.5, 1.5, 'float32', seed++);
        return i === 2 ? tf.sub(r, 1) : r; // gamma, beta, mean in (−0.5, 0.5), variance
      }),
    );
  }
}

function ort(clf: Classifier): OrtClassifier {
  const c = useEngine(clf, 'ort').classifier;
  assert.ok(c instanceof OrtClassifier);
  return c;
}

describe('ort engine: ONNX export with its gradient graph', function () {
  this.timeout(300000);
  before(async () => {
    await initBackend();
  });

  // tfjs-wasm has no depthwise input gradient of its own: the generic case's reference runs on cpu.
  const cases: { name: string; make: () => LayersClassifier; backend?: 'cpu' }[] = [
    ...ARCHITECTURES.map((arch) => ({
      name: arch,
      make: () => {
        const m = buildModel({ arch, inputSize: 32, numClasses: 43, seed: 3 });
        randomiseBatchNorm(m);
        return new LayersClassifier(m);
      },
    })),
    { name: 'generic layers, softmax output', make: () => new LayersClassifier(genericModel(), true), backend: 'cpu' },
  ];

  for (const c of cases) {
    it(`${c.name}: logits, every objective's gradient and a vjp match tfjs`, async () => {
      const backend = tf.getBackend();
      if (c.backend) await switchBackend(c.backend);
      const tfClf = c.make();
      const clf = ort(tfClf);
      const n = 3,
        s = clf.inputSize,
        k = clf.numClasses;
      const x = tf.randomUniform([n, s, s, 3], 0, 1, 'float32', 11) as Tensor4D;
      const y = tf.tensor1d([0, 1, k - 1], 'int32') as Tensor1D;
      const t = tf.tensor1d([2, 0, 1], 'int32') as Tensor1D;
      const ref = tfClf.logits(x);
      const z = await inferLogits(clf, x);
      // L∞ relative error (max |a − b| / max |b|): the error relative to the tensor's own scale.
      const ez = await tensorRelativeError(z, ref, 'linf');
      assert.ok(ez < 1e-4, `logits: relative error ${ez}`);
      for (const loss of ATTACK_LOSSES) {
        for (const targets of [null, t]) {
          const a = await clf.objectiveGradient(x, y, targets, loss);
          const b = tfObjectiveGradient(tfClf, x, y, targets, loss);
          const e = await tensorRelativeError(a.grad, b.grad, 'linf');
          assert.ok(e < 1e-3, `${loss}${targets ? ' targeted' : ''}: gradient relative error ${e}`);
          tf.dispose([a.grad, a.logits, b.grad, b.logits]);
        }
      }
      const cot = tf.randomNormal([n, k], 0, 1, 'float32', 5) as Tensor2D;
      const a = await clf.vjp(x, (zz) => tf.mul(cot, tf.sign(zz)) as Tensor2D);
      const b = logitsAndVjp(tfClf, x, (zz) => tf.mul(cot, tf.sign(zz)) as Tensor2D);
      const ev = await tensorRelativeError(a.grad, b.grad, 'linf');
      assert.ok(ev < 1e-3, `vjp: relative error ${ev}`);
      tf.dispose([x, y, t, ref, z, cot, a.grad, a.logits, b.grad, b.logits]);
      clf.dispose();
      tfClf.model.dispose();
      await switchBackend(backend as 'wasm');
    });
  }

  it('attacks on the shipped model reach the same results on both engines', async () => {
    const tfClf = await loadClassifier(path.join(ROOT, 'models', 'gtsrb-cnn'));
    const clf = ort(tfClf);
    const set = renderDataset({ perClass: 1, size: 32, seed: 9, classes: [1, 2, 12, 13, 14, 17, 25, 38] });
    const x = tf.tensor4d(set.images, [set.n, 32, 32, 3]);
    const y = tf.tensor1d(set.labels, 'int32');
    for (const [name, o] of [
      ['fgsm', { eps: 4 / 255 }],
      ['pgd', { eps: 4 / 255, steps: 5, seed: 2 }],
      ['pgd', { eps: 4 / 255, steps: 5, seed: 2, loss: 'dlr' }],
      ['deepfool', { steps: 10 }],
      ['cw', { steps: 10, binarySteps: 2 }],
    ] as const) {
      const a = await getAttack(name).run(clf, x, y, o);
      const b = await getAttack(name).run(tfClf, x, y, o);
      // One step is exact; over several, float rounding (different kernels) can tip one image
      // that ends on the decision boundary: at most one of the eight may differ.
      const differ = Array.from(a.success).filter((v, i) => v !== b.success[i]).length;
      assert.ok(differ <= (name === 'fgsm' ? 0 : 1), `${name} ${JSON.stringify(o)}: success differs on ${differ} images`);
      const [da, db] = [await a.adversarial.data(), await b.adversarial.data()];
      let same = 0;
      for (let i = 0; i < da.length; i++) if (Math.abs(da[i] - db[i]) < 1e-4) same++;
      if (name === 'fgsm') assert.ok(same / da.length > 0.999, `fgsm: only ${same} of ${da.length} values agree`);
      tf.dispose([a.adversarial, b.adversarial]);
    }
    tf.dispose([x, y]);
    clf.dispose();
    tfClf.model.dispose();
  });

  it('FGSM, PGD and BIM take their L∞ steps in the graph, with the result tfjs computes from the same gradient', async () => {
    const tfClf = new LayersClassifier(buildModel({ arch: 'cnn4', inputSize: 32, numClasses: 43, seed: 5 }));
    const clf = ort(tfClf);
    let steps = 0;
    const native = clf.linfStep.bind(clf);
    clf.linfStep = (x, r) => (steps++, native(x, r));
    // The same engine without the fused step: objectiveGradient, then the step in tfjs.
    const stepless: Classifier = {
      inputSize: clf.inputSize,
      numClasses: clf.numClasses,
      trainableWeights: clf.trainableWeights,
      logits: (x) => clf.logits(x),
      inferLogits: (x) => clf.inferLogits(x),
      objectiveGradient: (x, l, t, loss) => clf.objectiveGradient(x, l, t, loss),
      vjp: (x, c) => clf.vjp(x, c),
    };
    const x = tf.randomUniform([6, 32, 32, 3], 0, 1, 'float32', 21) as Tensor4D;
    // Labelled with the model's own predictions, so no image starts out misclassified.
    const z = await inferLogits(clf, x);
    const y = tf.tidy(() => tf.argMax(z, 1)) as Tensor1D;
    z.dispose();
    for (const [name, o, calls] of [
      ['fgsm', { eps: 8 / 255 }, 1],
      ['fgsm', { eps: 4 / 255, targeted: true, target: 3, loss: 'dlr' }, 1],
      // A budget too small to fool every image, so both restarts run and their results are merged.
      ['pgd', { eps: 0.5 / 255, steps: 2, restarts: 2, seed: 4, loss: 'margin' }, 4],
      ['bim', { eps: 4 / 255, steps: 2, targeted: true, target: 7 }, 2],
    ] as const) {
      steps = 0;
      const a = await getAttack(name).run(clf, x, y, o);
      assert.equal(steps, calls, `${name}: ${steps} native steps`);
      const b = await getAttack(name).run(stepless, x, y, o);
      const [da, db] = [await a.adversarial.data(), await b.adversarial.data()];
      assert.ok(
        da.every((v, i) => v === db[i]),
        `${name} ${JSON.stringify(o)}: the adversarials differ`,
      );
      assert.deepEqual(Array.from(a.logits ?? []), Array.from(b.logits ?? []), `${name}: logits of the result differ`);
      assert.deepEqual(Array.from(a.success), Array.from(b.success));
      tf.dispose([a.adversarial, b.adversarial]);
    }
    tf.dispose([x, y]);
    clf.dispose();
    tfClf.model.dispose();
  });

  it('a classifier the export cannot read stays on tfjs, or is refused in one line when ort is asked for', () => {
    const m = tf.sequential();
    m.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 2, kernelSize: 3, activation: 'elu' }));
    m.add(tf.layers.flatten());
    m.add(tf.layers.dense({ units: 4 }));
    const clf = new LayersClassifier(m);
    const auto = useEngine(clf);
    assert.equal(auto.engine.engine, 'tfjs');
    assert.match(auto.engine.reason, /activation elu/);
    assert.throws(() => useEngine(clf, 'ort'), /engine 'ort' cannot run this model: .*activation elu/);
    assert.throws(() => useEngine(clf, 'cuda'), /unknown engine 'cuda': use one of ort, tfjs/);
    m.dispose();
  });
});

describe('ort engine: the commands', function () {
  this.timeout(300000);

  it('info says which engine runs and why; attack and evaluate give the same figures on ort and tfjs', async () => {
    const info = await runCli(['info', '--json']);
    assert.equal(info.code, 0, info.stderr);
    const engine = JSON.parse(info.stdout).engine;
    assert.equal(engine.engine, 'ort', JSON.stringify(engine));
    assert.match(engine.reason, /onnxruntime-node \d/);

    const dir = tempDir();
    const img = path.join(dir, 'stop.png');
    fs.writeFileSync(img, await encodePng({ data: renderCleanSign(14, 32), width: 32, height: 32 }));
    const results = [];
    for (const e of ['ort', 'tfjs']) {
      const r = await runCli(['attack', '--engine', e, '--attack', 'pgd', '--eps', '4/255', '--input', img, '--out', path.join(dir, `adv-${e}.png`), '--json']);
      assert.equal(r.code, 0, r.stderr);
      results.push(JSON.parse(r.stdout));
    }
    assert.equal(results[0].engine, 'ort');
    assert.equal(results[1].engine, 'tfjs');
    assert.deepEqual([results[0].success, results[0].adversarial[0].classId], [results[1].success, results[1].adversarial[0].classId]);

    const figures = [];
    for (const e of ['ort', 'tfjs']) {
      const r = await runCli([
        'evaluate',
        '--engine',
        e,
        '--model',
        'models/gtsrb-cnn',
        '--data',
        'synthetic',
        '--limit',
        '86',
        '--attack',
        'fgsm,pgd',
        '--eps',
        '2/255',
        '--steps',
        '5',
        '--workers',
        '0',
        '--quiet',
        '--json',
        '-',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.engine, e);
      figures.push([j.clean.accuracy, ...j.results.map((x: { accuracy: number }) => x.accuracy)]);
    }
    assert.deepEqual(figures[0], figures[1]);

    const bad = await runCli(['evaluate', '--engine', 'gpu', '--model', 'models/gtsrb-cnn', '--data', 'synthetic']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown engine 'gpu': use one of ort, tfjs/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
  });
  it('evaluate on ort attacks batches side by side on worker threads, with the figures of one thread', async function () {
    this.timeout(600000);
    // 3 batches of 29 over 2 lanes; AutoAttack's members cost differently per batch, so the lanes
    // take batches as they free up. The one-thread run uses one-thread sessions too, as the lanes do.
    const args = (workers: string) =>
      ['evaluate', '--engine', 'ort', '--model', 'models/gtsrb-cnn-robust', '--data', 'synthetic', '--limit', '86', '--batch', '29'].concat([
        '--attack',
        'pgd,autoattack',
        '--eps',
        '8/255',
        '--steps',
        '4',
        '--queries',
        '20',
        '--workers',
        workers,
        '--quiet',
        '--json',
        '-',
      ]);
    const one = await runCli(args('0'), { env: { ADVSIGN_ORT_THREADS: '1' } });
    const two = await runCli(args('1'));
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    const [a, b] = [JSON.parse(one.stdout), JSON.parse(two.stdout)];
    assert.deepEqual([a.threads, b.threads], [1, 2], 'the second run really used a worker');
    type Row = { attack: string; accuracy: number; meanL2: number; perClassAccuracy: unknown; stages?: { attack: string; accuracy: number }[] };
    const figures = (j: { results: Row[] }) =>
      j.results.map((r) => [r.attack, r.accuracy, r.meanL2, r.perClassAccuracy, r.stages?.map((st) => [st.attack, st.accuracy])]);
    assert.deepEqual(figures(b), figures(a));
    const aa = (b.results as Row[]).find((r) => r.attack === 'autoattack') as Row;
    assert.ok(aa.accuracy < b.clean.accuracy, `AutoAttack broke images: ${aa.accuracy} against clean ${b.clean.accuracy}`);
    const shown = await runCli(args('1').slice(0, -2));
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /attacks: 2 batches at a time, each on onnxruntime sessions of 1 thread/);
  });
});
