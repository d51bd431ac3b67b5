/**
 * IBP training on onnxruntime (onnx/ibp-export.ts): the step's loss and every weight gradient
 * are those of the tfjs path (ibp.ts's elided bounds through planLoss, differentiated by tf.grads),
 * on cnn2-ibp's strided convolutions and on the cnn4 family's pooling and dropout; its bounds
 * contain the logits of random points of the box; the strided convolution's gradients are right
 * in the ordinary training and attack graphs too; `advsign train --ibp --engine ort` trains there
 * and says so in the card.
 *
 * Tolerance: float32 sums in a different order on each side, so values agree to a relative L2
 * error (‖ort − tfjs‖ / ‖tfjs‖ per weight) of 1e-4; a wrong term (a dropped sign, a missing
 * radius path, a transposed weight) is off by far more than that.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { signExact, tf, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { Architecture, buildModel, LayersClassifier } from '../src/inference/model';
import { shardGradients } from '../src/inference/data-parallel';
import { elidedMarginBounds } from '../src/inference/ibp';
import { tfObjectiveGradient } from '../src/inference/objective';
import { loadOrt } from '../src/inference/engine';
import { OrtStep, OrtTrainer } from '../src/inference/ort-train';
import type { OrtModule } from '../src/inference/ort-classifier';
import { renderDataset } from '../src/data/synthetic';
import { relativeError, runCli, tempDir } from './helpers';

const CLASSES = [1, 2, 12, 13, 14, 17, 25, 38];

function ortModule(): OrtModule {
  const ort = loadOrt();
  assert.ok(ort, 'onnxruntime-node loads');
  return ort;
}

interface Fixture {
  clf: LayersClassifier;
  trainer: OrtTrainer;
  x: Tensor4D;
  y: Tensor1D;
}

/** A warmed-up model of `arch`, its ort trainer (with IBP's graph when `ibp`) and n synthetic signs, freed after `body`. */
async function withFixture(arch: Architecture, size: number, ibp: boolean, n: number, seed: number, body: (f: Fixture) => Promise<void>): Promise<void> {
  const clf = await warmedUp(arch, size);
  const trainer = await OrtTrainer.create(clf, ortModule(), 2, ibp);
  assert.ok(trainer instanceof OrtTrainer, String(trainer));
  const { x, y } = batch(n, size, seed);
  try {
    await body({ clf, trainer, x, y });
  } finally {
    tf.dispose([x, y]);
    await trainer.dispose();
    clf.model.dispose();
  }
}

/** Frees the gradients of ort steps. */
function disposeSteps(...steps: OrtStep[]): void {
  tf.dispose(steps.flatMap((s) => s.grads.map((g) => g.tensor)));
}

/** Synthetic signs [n, s, s, 3] and their labels. */
function batch(n: number, size: number, seed: number): { x: Tensor4D; y: Tensor1D } {
  const set = renderDataset({ perClass: Math.ceil(n / CLASSES.length), size, seed, classes: CLASSES });
  return { x: tf.tensor4d(set.images.subarray(0, n * size * size * 3), [n, size, size, 3]), y: tf.tensor1d(set.labels.slice(0, n), 'int32') };
}

/** A few Adam steps of plain training on tfjs first (as IBP training's warm-up): the weights leave their initialisation. */
async function warmedUp(arch: Architecture, size: number): Promise<LayersClassifier> {
  const clf = new LayersClassifier(buildModel({ arch, inputSize: size, numClasses: 43, seed: 7 }));
  const optimizer = tf.train.adam(1e-3);
  const { x, y } = batch(24, size, 3);
  for (let i = 0; i < 6; i++) {
    tf.tidy(() => {
      const g = shardGradients(clf, x, y, 43, false);
      optimizer.applyGradients(clf.trainableWeights.map((v, j) => ({ name: v.name, tensor: g.grads[j] })));
    });
  }
  tf.dispose([x, y]);
  optimizer.dispose();
  return clf;
}

/** The ort step's loss and gradients equal the tfjs path's, for one loss plan. */
async function compareStep({ clf, trainer, x, y }: Fixture, loss: { labelSmoothing?: number; ibp?: { eps: number; kappa: number } }): Promise<void> {
  const a = await trainer.step(x, y, 43, { training: false, ...loss });
  const b = shardGradients(clf, x, y, 43, false, undefined, loss);
  const tfLoss = (await b.loss.data())[0];
  assert.ok(Math.abs(a.loss - tfLoss) <= 1e-5 * Math.max(1, Math.abs(tfLoss)), `loss ${a.loss} vs tfjs ${tfLoss}`);
  assert.equal(a.correct, (await b.correct.data())[0]);
  assert.deepEqual(
    a.grads.map((g) => g.name),
    clf.trainableWeights.map((v) => v.name),
  );
  for (let i = 0; i < b.grads.length; i++) {
    const ref = (await b.grads[i].data()) as Float32Array;
    assert.ok(
      ref.some((v) => v !== 0),
      `${a.grads[i].name}: the tfjs gradient is not all zero`,
    );
    const e = relativeError((await a.grads[i].tensor.data()) as Float32Array, ref);
    assert.ok(e <= 1e-4, `${a.grads[i].name}: relative L2 error ${e}`);
  }
  tf.dispose([b.loss, b.correct, ...b.grads]);
  disposeSteps(a);
}

describe('IBP training on ort', function () {
  this.timeout(300000);
  before(async () => {
    await initBackend();
  });

  it("cnn2-ibp: the IBP step's loss and every weight gradient are the tfjs path's (eps > 0, κ in (0, 1), label smoothing)", async () => {
    await withFixture('cnn2-ibp', 32, true, 16, 11, async (f) => {
      const eps = 4 / 255;
      await compareStep(f, { ibp: { eps, kappa: 0.3 } });
      await compareStep(f, { labelSmoothing: 0.1, ibp: { eps: 1 / 255, kappa: 0.8 } });
      // The robust half matters: at the same eps, κ = 0.3 and κ = 0.8 give different gradients.
      const g3 = await f.trainer.step(f.x, f.y, 43, { training: false, ibp: { eps, kappa: 0.3 } });
      const g8 = await f.trainer.step(f.x, f.y, 43, { training: false, ibp: { eps, kappa: 0.8 } });
      const fc = g3.grads.findIndex((g) => /fc1/.test(g.name));
      assert.ok(relativeError(await g3.grads[fc].tensor.data(), await g8.grads[fc].tensor.data()) > 1e-2);
      disposeSteps(g3, g8);
    });
  });

  it('cnn4-small: the same through max pooling, and dropout (off in the bounds) in the clean half', async () => {
    await withFixture('cnn4-small', 16, true, 12, 12, async (f) => {
      const ibp = { eps: 2 / 255, kappa: 0.4 };
      await compareStep(f, { ibp });
      // Dropout on: the clean half changes, the bounds do not.
      const off = await f.trainer.step(f.x, f.y, 43, { training: false, ibp });
      const on = await f.trainer.step(f.x, f.y, 43, { dropoutSeed: 5, ibp });
      assert.notEqual(on.loss, off.loss);
      assert.deepEqual(on.margins, off.margins);
      disposeSteps(off, on);
    });
  });

  it("the graph's margin bounds are tfjs's, hold for random points of the box, and are exact at eps = 0", async () => {
    await withFixture('cnn2-ibp', 32, true, 10, 13, async ({ clf, trainer, x, y }) => {
      const eps = 4 / 255;
      const labels = (await y.data()) as Int32Array;
      const step = await trainer.step(x, y, 43, { training: false, ibp: { eps, kappa: 0.5 } });
      const m = step.margins as Float32Array;
      const ref = tf.tidy(() => elidedMarginBounds(clf.model, x, y, eps) as tf.Tensor2D);
      assert.ok(relativeError(m, (await ref.data()) as Float32Array) <= 1e-4);
      assert.ok(
        m.some((v) => v < 0),
        'some bounds are loose enough to be negative (the test has teeth)',
      );
      /** Largest |z_y − z_j − bound| and smallest z_y − z_j − bound at the logits z. */
      const against = (z: Float32Array, bound: Float32Array) => {
        let low = Infinity,
          far = 0;
        for (let i = 0; i < labels.length; i++)
          for (let j = 0; j < 43; j++) {
            const slack = z[i * 43 + labels[i]] - z[i * 43 + j] - bound[i * 43 + j];
            [low, far] = [Math.min(low, slack), Math.max(far, Math.abs(slack))];
          }
        return { low, far };
      };
      for (let trial = 0; trial < 20; trial++) {
        const z = tf.tidy(() => {
          // Corners of the box (every pixel moved by ±eps) are where the bounds are tightest.
          const corner = tf.mul(signExact(tf.randomUniform(x.shape, -1, 1, 'float32', 100 + trial)), eps);
          const xr = tf.clipByValue(tf.add(x, trial % 2 ? corner : tf.randomUniform(x.shape, -eps, eps, 'float32', 200 + trial)), 0, 1);
          return clf.model.predict(xr) as tf.Tensor2D;
        });
        const { low } = against((await z.data()) as Float32Array, m);
        z.dispose();
        assert.ok(low >= -1e-4, `trial ${trial}: a margin ${-low} below its bound`);
      }
      const tight = await trainer.step(x, y, 43, { training: false, ibp: { eps: 0, kappa: 0.5 } });
      const z0 = clf.model.predict(x) as tf.Tensor2D;
      const { far } = against((await z0.data()) as Float32Array, tight.margins as Float32Array);
      assert.ok(far < 1e-4, `at eps = 0 the bounds are the margins (off by ${far})`);
      tf.dispose([ref, z0]);
      disposeSteps(step, tight);
    });
  });

  it("strided convolutions: cnn2-ibp's plain training step and attack gradient are tfjs's", async () => {
    await withFixture('cnn2-ibp', 32, false, 16, 14, async (f) => {
      assert.equal(f.trainer.certifies, false);
      await compareStep(f, { labelSmoothing: 0.1 });
      const native = await f.trainer.inputGradient((await f.x.data()) as Float32Array, (await f.y.data()) as Int32Array);
      const ref = tfObjectiveGradient(f.clf, f.x, f.y, null, 'ce');
      assert.ok(relativeError(native, (await ref.grad.data()) as Float32Array) <= 1e-4);
      tf.dispose([ref.grad, ref.logits]);
    });
  });

  it('advsign train --ibp --arch cnn2-ibp --engine ort trains on ort and says so in the card', async () => {
    const out = path.join(tempDir('ibp-ort'), 'm');
    // No warm-up, so the single epoch runs IBP steps (a warm-up epoch is plain CE).
    const r = await runCli([
      ...'train --data synthetic --limit 600 --epochs 1 --ibp 2/255 --ibp-warmup 0 --ibp-ramp 1 --arch cnn2-ibp --engine ort --quiet --out'.split(' '),
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.equal(card.training.engine, 'ort');
    assert.equal(card.certifiedTraining.method, 'ibp');
    assert.match(card.training.selectedBy, /^ibp-certified@2\/255 accuracy/);
    assert.ok(Number.isFinite(card.training.history[0].trainLoss) && Number.isFinite(card.training.history[0].valScore));
  });
});
