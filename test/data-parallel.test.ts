/**
 * Data-parallel training: the pooled gradient is the whole batch's gradient, training through
 * the pool learns and leaks nothing, and dropout draws a fresh mask at every step.
 */
import * as assert from 'node:assert';
import { tf, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier, setDropoutSeeds, unseedDropout } from '../src/inference/model';
import { GradientPool, shardGradients } from '../src/inference/data-parallel';
import { trainClassifier, accuracy } from '../src/inference/train';
import { renderDataset } from '../src/data/synthetic';
import { splitByGroup } from '../src/data/gtsrb';
import { AdversarialPlan, applyAdversarialPlan } from '../src/inference/adversarial-plan';
import { evaluateRobustness } from '../src/attack/evaluate';

describe('data-parallel training', function () {
  this.timeout(240000);
  before(async () => {
    await initBackend();
  });

  it('the gradient from main + 2 workers equals the single-thread gradient of the whole batch', async () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 5 });
    const clf = new LayersClassifier(model);
    const pool = await GradientPool.create(clf, 2);
    try {
      assert.strictEqual(pool.size, 2);
      // 37 images: shards of unequal size must be weighted by their size.
      const x = tf.randomUniform([37, 32, 32, 3], 0, 1, 'float32', 1) as Tensor4D;
      const y = tf.randomUniform([37], 0, 43, 'int32', 2) as Tensor1D;
      const pooled = await pool.step(clf, x, y, 43, { training: false });
      const whole = tf.tidy(() => shardGradients(clf, x, y, 43, false));
      assert.strictEqual(pooled.grads.length, clf.trainableWeights.length);
      clf.trainableWeights.forEach((v, j) => {
        const g = pooled.grads.find((p) => p.name === v.name);
        assert.ok(g, v.name);
        const [diff, scale] = tf.tidy(() => [tf.max(tf.abs(tf.sub(g.tensor, whole.grads[j]))).dataSync()[0], tf.max(tf.abs(whole.grads[j])).dataSync()[0]]);
        assert.ok(scale > 0, `${v.name} has a gradient`);
        assert.ok(diff <= 1e-4 * scale, `${v.name}: max |diff| ${diff} vs scale ${scale}`);
      });
      assert.ok(Math.abs(pooled.loss - whole.loss.dataSync()[0]) < 1e-4, 'mean loss');
      tf.dispose([x, y, whole.loss, whole.correct, ...whole.grads, ...pooled.grads.map((g) => g.tensor)]);
    } finally {
      await pool.dispose();
      model.dispose();
    }
  });

  it('workers make their shard adversarial from the plan: FGSM through the pool equals FGSM on the whole batch', async () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 6 });
    const clf = new LayersClassifier(model);
    const pool = await GradientPool.create(clf, 1);
    try {
      const x = tf.randomUniform([20, 32, 32, 3], 0, 1, 'float32', 3) as Tensor4D;
      const y = tf.randomUniform([20], 0, 43, 'int32', 4) as Tensor1D;
      // FGSM has no random start, so the shards' different seeds do not matter.
      const plan: AdversarialPlan = { method: 'fgsm', eps: 8 / 255, ratio: 1, seed: 1 };
      const pooled = await pool.step(clf, x, y, 43, { training: false, plan });
      const whole = tf.tidy(() => shardGradients(clf, applyAdversarialPlan(clf, x, y, plan), y, 43, false));
      const clean = tf.tidy(() => shardGradients(clf, x, y, 43, false));
      assert.ok(Math.abs(pooled.loss - whole.loss.dataSync()[0]) < 1e-4, `adversarial loss ${pooled.loss} vs ${whole.loss.dataSync()[0]}`);
      assert.ok(pooled.loss > clean.loss.dataSync()[0], 'the plan was applied (loss rose)');
      clf.trainableWeights.forEach((v, j) => {
        const g = pooled.grads.find((p) => p.name === v.name)!;
        const [diff, scale] = tf.tidy(() => [tf.max(tf.abs(tf.sub(g.tensor, whole.grads[j]))).dataSync()[0], tf.max(tf.abs(whole.grads[j])).dataSync()[0]]);
        assert.ok(diff <= 1e-3 * scale, `${v.name}: max |diff| ${diff} vs scale ${scale}`);
      });
      tf.dispose([x, y, whole.loss, whole.correct, ...whole.grads, clean.loss, clean.correct, ...clean.grads, ...pooled.grads.map((g) => g.tensor)]);
    } finally {
      await pool.dispose();
      model.dispose();
    }
  });

  it('a worker that dies fails the step with a clear error instead of hanging', async () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 });
    const clf = new LayersClassifier(model);
    const pool = await GradientPool.create(clf, 1);
    await pool.dispose();
    const x = tf.zeros([4, 32, 32, 3]) as Tensor4D;
    const y = tf.zeros([4], 'int32') as Tensor1D;
    await assert.rejects(pool.step(clf, x, y, 43), /training worker exited/);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('trains through a worker: learns the synthetic classes and leaks no tensors', async () => {
    const all = renderDataset({ perClass: 30, size: 32, seed: 11 });
    const { train, val } = splitByGroup(all, 0.2, 1);
    const before = tf.memory().numTensors;
    const r = await trainClassifier(train, val, {
      arch: 'cnn4-small',
      epochs: 6,
      batchSize: 32,
      learningRate: 2e-3,
      seed: 3,
      patience: 6,
      augment: false,
      workers: 1,
    });
    const acc = await accuracy(r.classifier, val);
    assert.ok(acc > 0.35, `validation accuracy ${acc}`);
    r.model.dispose();
    assert.ok(tf.memory().numTensors <= before + 2, `tensors leaked: ${before} → ${tf.memory().numTensors}`);
  });

  it('evaluation with a worker attacking every other batch gives the same figures as one thread', async () => {
    const set = renderDataset({ perClass: 4, size: 32, seed: 21 });
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 2 });
    const clf = new LayersClassifier(model);
    const run = (workers: number) =>
      evaluateRobustness(clf, set, {
        attacks: ['fgsm', 'pgd', 'deepfool'],
        epsList: [0, 4 / 255],
        batchSize: 32,
        workers,
        attackOptions: { pgd: { steps: 3 }, deepfool: { steps: 5 } },
      });
    const one = await run(0);
    const two = await run(1);
    assert.deepStrictEqual([one.threads, two.threads], [1, 2], 'the second run really used a worker');
    const strip = (r: typeof one) => r.results.map(({ imagesPerSecond: _ips, ...row }) => row);
    assert.deepStrictEqual(strip(two), strip(one));
    assert.deepStrictEqual(
      two.examples.map((e) => [e.attack, e.index, e.adversarialPrediction]),
      one.examples.map((e) => [e.attack, e.index, e.adversarialPrediction]),
    );
    assert.ok(one.results.some((r) => r.eps > 0 && r.accuracy < one.clean.accuracy) || one.clean.accuracy === 0, 'attacks did something');
    model.dispose();
  });

  it('dropout masks change from step to step (a seeded tfjs Dropout repeats one mask)', () => {
    const seeded = tf.sequential({ layers: [tf.layers.dropout({ inputShape: [64], rate: 0.5, seed: 7 })] });
    const x = tf.ones([1, 64]);
    const masks = (m: tf.LayersModel) => [0, 1].map(() => tf.tidy(() => Array.from((m.apply(x, { training: true }) as tf.Tensor).dataSync())));
    const [a, b] = masks(seeded);
    assert.deepStrictEqual(a, b, 'tfjs behaviour this guards against: same mask twice');
    assert.strictEqual(unseedDropout(seeded), 1);
    const [c, d] = masks(seeded);
    assert.notDeepStrictEqual(c, d);
    const fresh = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 });
    assert.strictEqual(unseedDropout(fresh), 0, 'buildModel makes unseeded dropout');
    // Training sets a new seed per step: reproducible, yet different from step to step.
    setDropoutSeeds(seeded, 100);
    const [e] = masks(seeded);
    setDropoutSeeds(seeded, 101);
    const [f] = masks(seeded);
    setDropoutSeeds(seeded, 100);
    const [g] = masks(seeded);
    assert.deepStrictEqual(e, g);
    assert.notDeepStrictEqual(e, f);
    tf.dispose(x);
    seeded.dispose();
    fresh.dispose();
  });
});
