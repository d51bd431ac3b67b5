/**
 * Training on onnxruntime: the training graph's loss and weight gradients are tfjs's (label
 * smoothing included); `advsign train --engine ort` writes the usual model, as accurate on a
 * short run as `--engine tfjs`, and refuses a model it cannot train in one line; `evaluate
 * --defense` runs on the engine asked for.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { shardGradients } from '../src/inference/data-parallel';
import { loadOrt } from '../src/inference/engine';
import { OrtTrainer } from '../src/inference/ort-train';
import { ROOT, runCli, tempDir } from './helpers';

describe('ort training', function () {
  this.timeout(300000);
  before(async () => {
    await initBackend();
  });

  it('the training step gives the loss and every weight gradient tfjs gives', async () => {
    const ort = loadOrt();
    assert.ok(ort, 'onnxruntime-node loads');
    const model = buildModel({ arch: 'cnn4-small', inputSize: 16, numClasses: 43, seed: 2 });
    const clf = new LayersClassifier(model);
    const trainer = await OrtTrainer.create(clf, ort, 2);
    assert.ok(trainer instanceof OrtTrainer, String(trainer));
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
