/**
 * Training on onnxruntime: the training graph's loss and weight gradients are tfjs's (label
 * smoothing included); `advsign train --engine ort` writes the usual model, as accurate on a
 * short run as `--engine tfjs`, and refuses a model it cannot train in one line; PGD adversarial
 * training's input gradient and examples are tfjs's, its attack graph's sign step (export.ts's
 * linfStep head) is the JavaScript step it replaced, `train --adversarial pgd --engine ort` runs
 * there (TRADES is refused); `evaluate --defense` runs on the engine asked for.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { shardGradients } from '../src/inference/data-parallel';
import { applyAdversarialPlan } from '../src/inference/adversarial-plan';
import { tfObjectiveGradient } from '../src/inference/objective';
import { loadOrt } from '../src/inference/engine';
import { OrtTrainer } from '../src/inference/ort-train';
import { applyNativeAdversarialPlan } from '../src/inference/ort-adversarial';
import type { AdversarialPlan } from '../src/inference/adversarial-plan';
import { ROOT, runCli, tempDir } from './helpers';

/** A cnn4-small 16×16 model (43 classes) and its trainer on onnxruntime. */
async function smallTrainer(seed: number): Promise<{ model: tf.LayersModel; clf: LayersClassifier; trainer: OrtTrainer }> {
  const ort = loadOrt();
  assert.ok(ort, 'onnxruntime-node loads');
  const model = buildModel({ arch: 'cnn4-small', inputSize: 16, numClasses: 43, seed });
  const clf = new LayersClassifier(model);
  const trainer = await OrtTrainer.create(clf, ort, 2);
  assert.ok(trainer instanceof OrtTrainer, String(trainer));
  return { model, clf, trainer };
}

describe('ort training', function () {
  this.timeout(300000);
  before(async () => {
    await initBackend();
  });

  it('the training step gives the loss and every weight gradient tfjs gives', async () => {
    const { model, clf, trainer } = await smallTrainer(2);
    const x = tf.randomUniform([6, 16, 16, 3], 0, 1, 'float32', 8) as Tensor4D;
    const y = tf.tensor1d([0, 5, 42, 7, 7, 19], 'int32') as Tensor1D;
    const a = await trainer.step(x, y, 43, { training: false, labelSmoothing: 0.1 });
    const b = shardGradients(clf, x, y, 43, false, undefined, { labelSmoothing: 0.1 });
    assert.ok(Math.abs(a.loss - (await b.loss.data())[0]) < 1e-5, `loss ${a.loss} vs ${(await b.loss.data())[0]}`);
    assert.equal(a.correct, (await b.correct.data())[0]);
    assert.deepEqual(
      a.grads.map((g) => g.name),
      clf.trainableWeights.map((v) => v.name),
    );
    for (let i = 0; i < b.grads.length; i++) {
      const [d, m] = tf.tidy(() => [tf.max(tf.abs(tf.sub(a.grads[i].tensor, b.grads[i]))).dataSync()[0], tf.max(tf.abs(b.grads[i])).dataSync()[0]]);
      assert.ok(d / m < 1e-4, `${a.grads[i].name}: relative error ${d / m}`);
    }
    // Dropout on: a different gradient, the same loss scale.
    const c = await trainer.step(x, y, 43, { dropoutSeed: 3 });
    assert.ok(Math.abs(c.loss - a.loss) < 1 && c.loss !== a.loss);
    tf.dispose([x, y, b.loss, b.correct, ...b.grads, ...a.grads.map((g) => g.tensor), ...c.grads.map((g) => g.tensor)]);
    await trainer.dispose();
    model.dispose();
  });

  it("the attack graph's input gradient and PGD examples are tfjs's for the same (trained) weights", async () => {
    const { model, clf, trainer } = await smallTrainer(4);
    const x = tf.randomUniform([6, 16, 16, 3], 0, 1, 'float32', 9) as Tensor4D;
    const y = tf.tensor1d([3, 5, 42, 7, 1, 19], 'int32') as Tensor1D;
    // One Adam step first: the attack must read the weights as they are now, not as built.
    const optimizer = tf.train.adam(0.01);
    const s0 = await trainer.step(x, y, 43);
    optimizer.applyGradients(s0.grads);
    tf.dispose(s0.grads.map((g) => g.tensor));
    const native = await trainer.inputGradient((await x.data()) as Float32Array, (await y.data()) as Int32Array);
    const ref = tfObjectiveGradient(clf, x, y, null, 'ce');
    const r = (await ref.grad.data()) as Float32Array;
    let d = 0,
      m = 0;
    for (let i = 0; i < r.length; i++) [d, m] = [Math.max(d, Math.abs(native[i] - r[i])), Math.max(m, Math.abs(r[i]))];
    assert.ok(m > 0 && d / m < 1e-4, `input gradient: relative error ${d / m}`);
    // PGD-3 on half the batch: the same random start, steps and projection (a sign may flip where the gradient is ~0).
    const plan = { method: 'pgd' as const, eps: 8 / 255, ratio: 0.5, pgdSteps: 3, seed: 11 };
    const a = (await (await trainer.adversarialBatch(x, y, plan)).data()) as Float32Array;
    const b = (await applyAdversarialPlan(clf, x, y, plan).data()) as Float32Array;
    const half = a.length / 2;
    let same = 0;
    for (let i = 0; i < half; i++) if (Math.abs(a[i] - b[i]) < 1e-6) same++;
    assert.ok(same / half > 0.98, `PGD pixels equal to tfjs's: ${same / half}`);
    assert.deepEqual(a.subarray(half), b.subarray(half), 'the clean half stays clean');
    assert.ok(
      a.subarray(0, half).some((v, i) => v !== (x.dataSync() as Float32Array)[i]),
      'the attacked half moved',
    );
    tf.dispose([x, y, ref.grad, ref.logits]);
    optimizer.dispose();
    await trainer.dispose();
    model.dispose();
  });

  it("the attack graph's sign step is the former JavaScript step exactly: a tiny gradient moves its pixel, a zero one does not, the eps ball and [0, 1] hold", async () => {
    const { model, trainer } = await smallTrainer(4);
    // The first conv blind to blue: that channel's input gradient is exactly 0. Class 5's logit
    // +30: image 0 (label 5) is so confident that its other gradients are tiny but not 0.
    const convs = model.layers.filter((l) => l.getClassName() === 'Conv2D');
    const dense = model.layers.filter((l) => l.getClassName() === 'Dense').pop();
    assert.ok(convs.length > 0 && dense);
    const [kernel, ...convRest] = convs[0].getWeights();
    const noBlue = tf.tidy(() => tf.mul(kernel, tf.tensor([1, 1, 0]).reshape([1, 1, 3, 1])));
    convs[0].setWeights([noBlue, ...convRest]);
    const [dk, db] = dense.getWeights();
    const boosted = tf.tidy(() => tf.add(db, tf.mul(tf.oneHot(5, 43).asType('float32'), 30)));
    dense.setWeights([dk, boosted]);
    const x = tf.randomUniform([6, 16, 16, 3], 0, 1, 'float32', 9) as Tensor4D;
    const y = tf.tensor1d([5, 3, 42, 7, 1, 19], 'int32') as Tensor1D;
    const clean = (await x.data()) as Float32Array;
    const labels = (await y.data()) as Int32Array;
    const g = await trainer.inputGradient(clean, labels);
    const px = clean.length / 6;
    const blue = (i: number) => i % 3 === 2;
    assert.ok(
      g.every((v, i) => !blue(i) || v === 0),
      'the blue gradient is exactly 0',
    );
    const tiny = Array.from(g.subarray(0, px).keys()).filter((i) => !blue(i) && g[i] !== 0);
    assert.ok(tiny.length > px / 2, `image 0 has ${tiny.length} nonzero gradient entries`);
    assert.ok(
      tiny.every((i) => Math.abs(g[i]) < 1e-7),
      "image 0's gradient is below 1e-7",
    );
    assert.ok(Math.max(...Array.from(g.subarray(px), Math.abs)) > 1e-4, 'the other images have ordinary gradients');

    // The removed ort-adversarial.ts step on the attack graph's gradient: exact sign, float32 projection.
    const jsStep = async (adv: Float32Array, c: Float32Array, l: Int32Array, eps: number, step: number): Promise<Float32Array> => {
      const grad = await trainer.inputGradient(adv, l);
      const [s, e] = [Math.fround(step), Math.fround(eps)];
      return adv.map((a, i) => {
        const moved = Math.fround(a + (grad[i] > 0 ? s : grad[i] < 0 ? -s : 0));
        const d = Math.min(e, Math.max(-e, Math.fround(moved - c[i])));
        return Math.min(1, Math.max(0, Math.fround(c[i] + d)));
      });
    };
    const eps = 8 / 255;
    const plans: AdversarialPlan[] = [
      { method: 'fgsm', eps, ratio: 1, seed: 11 },
      { method: 'fgsm-rs', eps, ratio: 1, seed: 11 },
      { method: 'pgd', eps, ratio: 1, pgdSteps: 3, seed: 11 },
    ];
    for (const plan of plans) {
      const graph = (await (await trainer.adversarialBatch(x, y, plan)).data()) as Float32Array;
      const js = (await (await applyNativeAdversarialPlan(jsStep, x, y, plan)).data()) as Float32Array;
      const differ = graph.filter((v, i) => v !== js[i]).length;
      assert.equal(differ, 0, `${plan.method}: ${differ} pixels differ from the JavaScript step`);
      // Ball to the rounding of clean + d (half an ulp below 1), box exactly.
      assert.ok(
        graph.every((v, i) => v >= 0 && v <= 1 && Math.abs(v - clean[i]) <= eps + 3e-8),
        `${plan.method}: outside the eps ball or [0, 1]`,
      );
      if (plan.method !== 'fgsm') continue;
      assert.ok(
        graph.every((v, i) => !blue(i) || v === clean[i]),
        'FGSM: a zero gradient leaves its pixel',
      );
      assert.ok(
        tiny.every((i) => graph[i] === Math.min(1, Math.max(0, Math.fround(clean[i] + Math.sign(g[i]) * Math.fround(eps))))),
        'FGSM: a gradient below 1e-7 moves its pixel by eps',
      );
    }
    tf.dispose([x, y, noBlue, boosted]);
    await trainer.dispose();
    model.dispose();
  });

  it('advsign train --adversarial pgd runs on ort by default and with --engine ort; TRADES on ort is refused in one line', async () => {
    const dir = tempDir('ort-adv-train');
    const common = [
      'train',
      '--data',
      'synthetic',
      '--per-class',
      '10',
      '--val-fraction',
      '0.3',
      '--size',
      '16',
      '--arch',
      'cnn4-small',
      '--epochs',
      '1',
      '--no-augment',
    ];
    const adv = ['--adversarial', 'pgd', '--eps', '8/255', '--pgd-steps', '2', '--select-steps', '2'];
    const out = path.join(dir, 'pgd');
    const r = await runCli([...common, ...adv, '--engine', 'ort', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /training engine: ort/);
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.equal(card.training.engine, 'ort');
    assert.equal(card.adversarialTraining.method, 'pgd');
    assert.ok(card.adversarialTraining.batchesAdversarial > 0);
    const byDefault = await runCli([...common, ...adv, '--out', path.join(dir, 'default')]);
    assert.equal(byDefault.code, 0, byDefault.stderr);
    assert.match(byDefault.stderr, /training engine: ort/);
    const trades = await runCli([...common, '--adversarial', 'trades', '--eps', '8/255', '--engine', 'ort', '--out', path.join(dir, 'trades')]);
    assert.equal(trades.code, 2);
    assert.match(trades.stderr, /--engine ort cannot run TRADES training/);
    assert.doesNotMatch(trades.stderr, /\n\s+at /);
  });

  it('advsign train --engine ort reaches the accuracy of --engine tfjs and writes the same model format; a model it cannot train is refused', async () => {
    const dir = tempDir('ort-train');
    const common = [
      'train',
      '--data',
      'synthetic',
      '--per-class',
      '30',
      '--size',
      '16',
      '--arch',
      'cnn4-small',
      '--epochs',
      '5',
      '--lr',
      '0.003',
      '--no-augment',
      '--seed',
      '3',
    ];
    const results: Record<string, { val: number; engine: string; files: string[] }> = {};
    for (const engine of ['ort', 'tfjs']) {
      const out = path.join(dir, engine);
      const r = await runCli([...common, '--engine', engine, '--out', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`training engine: ${engine}`));
      const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
      results[engine] = { val: card.cleanAccuracy.validation, engine: card.training.engine, files: fs.readdirSync(out).sort() };
    }
    assert.equal(results.ort.engine, 'ort');
    assert.equal(results.tfjs.engine, 'tfjs');
    assert.deepEqual(results.ort.files, results.tfjs.files);
    // 43 classes: chance is 2.3 %; both runs learn, and about as much.
    assert.ok(results.ort.val > 0.08, `ort: validation ${results.ort.val}`);
    assert.ok(Math.abs(results.ort.val - results.tfjs.val) < 0.12, `ort ${results.ort.val} vs tfjs ${results.tfjs.val}`);
    const bn = await runCli([
      'train',
      '--data',
      'synthetic',
      '--per-class',
      '6',
      '--size',
      '16',
      '--arch',
      'cnn4-bn',
      '--epochs',
      '1',
      '--engine',
      'ort',
      '--out',
      path.join(dir, 'bn'),
    ]);
    assert.equal(bn.code, 2);
    assert.match(bn.stderr, /engine 'ort' cannot train this model: its training graph does not support batch normalisation/);
    assert.doesNotMatch(bn.stderr, /\n\s+at /);
  });

  it('evaluate --defense runs on the engine asked for', async () => {
    const dir = tempDir('ort-defense');
    const figures: Record<string, unknown> = {};
    for (const engine of ['ort', 'tfjs']) {
      const json = path.join(dir, `${engine}.json`);
      const r = await runCli([
        'evaluate',
        '--model',
        path.join(ROOT, 'models', 'gtsrb-cnn'),
        '--data',
        'synthetic',
        '--limit',
        '8',
        '--defense',
        'none',
        '--eps',
        '4/255',
        '--pgd-steps',
        '2',
        '--engine',
        engine,
        '--json',
        json,
        '--quiet',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(fs.readFileSync(json, 'utf8'));
      assert.equal(out.engine, engine);
      figures[engine] = out.rows.map((row: { seconds?: number }) => ({ ...row, seconds: 0 }));
    }
    assert.deepEqual(figures.ort, figures.tfjs);
  });
});
