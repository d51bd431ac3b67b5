/**
 * Weight averaging (`advsign train --ema D`): what validation judges and what training returns is
 * the moving average of the weights the optimizer produced, step by step, while the optimizer
 * itself keeps stepping from the live weights.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { trainClassifier } from '../src/inference/train';
import { loadClassifier } from '../src/inference/model-io';
import { WeightAverage } from '../src/inference/weight-average';
import { renderDataset } from '../src/data/synthetic';
import { splitByGroup } from '../src/data/gtsrb';
import { runCli, tempDir } from './helpers';

const maxAbsDiff = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((w, i) => Math.max(...w.map((v, j) => Math.abs(v - b[i][j])))));

describe('weight averaging (--ema)', function () {
  this.timeout(240000);
  before(async () => {
    await initBackend();
  });

  it('WeightAverage: warmed-up decay, and the live weights come back after withAverage, also on a throw', async () => {
    const w = tf.variable(tf.tensor1d([0, 0]));
    const avg = new WeightAverage([w], 0.9);
    const steps = [
      [1, 2],
      [3, 4],
      [5, 6],
    ];
    let expect = [0, 0];
    steps.forEach((v, t) => {
      w.assign(tf.tensor1d(v));
      avg.update();
      const d = Math.min(0.9, (1 + t) / (10 + t));
      expect = expect.map((e, i) => d * e + (1 - d) * v[i]);
    });
    const seen = await avg.withAverage(async () => Array.from(await w.data()));
    seen.forEach((v, i) => assert.ok(Math.abs(v - expect[i]) < 1e-5, `average ${seen} vs ${expect}`));
    assert.deepStrictEqual(Array.from(await w.data()), [5, 6]);
    await assert.rejects(
      avg.withAverage(() => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.deepStrictEqual(Array.from(await w.data()), [5, 6]);
    assert.throws(() => new WeightAverage([w], 1), /decay/);
    avg.dispose();
    w.dispose();
  });

  for (const engine of ['tfjs', 'ort'] as const)
    it(`trainClassifier (${engine} steps) validates and returns the average of the stepped weights; the live run is unchanged`, async () => {
      const all = renderDataset({ perClass: 3, size: 16, seed: 21 });
      const { train, val } = splitByGroup(all, 0.3, 1);
      const dir = tempDir();
      const decay = 0.6;
      const base = { arch: 'cnn4-small' as const, epochs: 1, batchSize: 16, learningRate: 3e-3, seed: 4, patience: 3, augment: false, engine };
      // The weights before each step (batchHook runs first in every step), then after the last one (the checkpoint).
      const before: Float32Array[][] = [];
      let validated: Float32Array[] = [];
      const r = await trainClassifier(train, val, {
        ...base,
        emaDecay: decay,
        checkpointDir: dir,
        batchHook: (clf, x, y) => {
          before.push(clf.trainableWeights.map((v) => v.dataSync() as Float32Array));
          return { x: x.clone(), y: y.clone() };
        },
        validationScore: { name: 'snapshot', score: async (clf) => ((validated = clf.trainableWeights.map((v) => v.dataSync() as Float32Array)), 0) },
      });
      assert.strictEqual(r.engine.engine, engine);
      const live = (await loadClassifier(path.join(dir, 'checkpoint'))).trainableWeights.map((v) => v.dataSync() as Float32Array);
      const stepped = [...before.slice(1), live];
      let expect = before[0].map((w) => Float64Array.from(w));
      stepped.forEach((ws, t) => {
        const d = Math.min(decay, (1 + t) / (10 + t));
        expect = expect.map((e, i) => e.map((v, j) => d * v + (1 - d) * ws[i][j]));
      });
      const expected = expect.map((e) => Float32Array.from(e));
      const returned = r.classifier.trainableWeights.map((v) => v.dataSync() as Float32Array);
      assert.ok(stepped.length >= 3, `${stepped.length} steps`);
      assert.ok(maxAbsDiff(validated, expected) < 1e-5, `validated weights are not the average: ${maxAbsDiff(validated, expected)}`);
      assert.ok(maxAbsDiff(returned, expected) < 1e-5, `returned weights are not the average: ${maxAbsDiff(returned, expected)}`);
      assert.ok(maxAbsDiff(returned, live) > 1e-4, 'the average equals the live weights: nothing was averaged');
      // The optimizer stepped from the live weights: the same run without --ema ends at the same live weights.
      const plain = await trainClassifier(train, val, base);
      const plainW = plain.classifier.trainableWeights.map((v) => v.dataSync() as Float32Array);
      assert.ok(maxAbsDiff(plainW, live) < 1e-5, `averaging changed the optimizer's path: ${maxAbsDiff(plainW, live)}`);
      r.model.dispose();
      plain.model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    });

  it('advsign train --ema records the averaging in the card; a decay out of range is one clear line', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'm');
    const bad = await runCli(['train', '--data', 'synthetic', '--ema', '1.5', '--out', out]);
    assert.notStrictEqual(bad.code, 0);
    assert.match(bad.stderr, /--ema must be a number from 0\.5 to 0\.999999, got '1\.5'/);
    const ok = await runCli([...'train --data synthetic --per-class 12 --size 16 --arch cnn4-small --epochs 1 --ema 0.99 --quiet --out'.split(' '), out]);
    assert.strictEqual(ok.code, 0, ok.stderr);
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8')) as { training: { weightAverage?: string; command: string } };
    assert.match(card.training.weightAverage ?? '', /decay 0\.99 per step/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
