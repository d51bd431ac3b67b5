/**
 * What a command writes is what it reports: the 8-bit rounding shared by arrays and tensors,
 * eps budgets kept through it, and `advsign attack` measuring the PNG it wrote (DeepFool used to
 * print FOOLED for images whose written PNG did not fool the model).
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import sharp from 'sharp';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { evaluateRobustness } from '../src/attack/evaluate';
import { loadClassifier, saveModel } from '../src/inference/model-io';
import { loadImageFile } from '../src/data/image-io';
import { toByte, quantiseArray } from '../src/data/quantise';
import { quantiseTensor, quantiseWithin } from '../src/attack/written';
import { normsFromArrays } from '../src/attack/norms';
import { renderDataset, renderSign } from '../src/data/synthetic';
import { Pipeline } from '../src/server/pipeline';
import { SyntheticScene } from '../src/capture/synthetic';
import { runCli, tempDir } from './helpers';

describe('8-bit images as written', function () {
  this.timeout(180000);
  before(async () => {
    await initBackend();
  });

  it('rounds arrays and tensors identically, ties included', () => {
    const v = new Float32Array(4096);
    for (let i = 0; i < v.length; i++) v[i] = i < 512 ? ((i % 256) + 0.5) / 255 : i < 1024 ? (i % 256) / 255 : Math.random() * 1.2 - 0.1;
    const t = tf.tensor1d(v);
    const q = quantiseTensor(t);
    const fromTensor = q.dataSync();
    tf.dispose([t, q]);
    const fromArray = quantiseArray(v);
    assert.deepEqual(Array.from(fromTensor), Array.from(fromArray));
    for (let i = 0; i < v.length; i++) assert.equal(fromArray[i], Math.fround(toByte(v[i]) / 255));
  });

  it('keeps L∞ and L2 budgets through rounding (clean on the grid)', () => {
    const n = 4,
      d = 300;
    const clean = quantiseArray(Float32Array.from({ length: n * d }, () => Math.random()));
    for (const eps of [8 / 255, 0.03, 0.5 / 255]) {
      const adv = Float32Array.from(clean, (c) => Math.min(1, Math.max(0, c + (Math.random() * 2 - 1) * eps * 1.0)));
      const w = quantiseWithin(clean, adv, n, { norm: 'linf', eps });
      for (let i = 0; i < w.length; i++) {
        assert.ok(Math.abs(w[i] - clean[i]) <= eps + 1e-6, `L∞ ${Math.abs(w[i] - clean[i])} > ${eps}`);
        assert.equal(w[i], Math.fround(toByte(w[i]) / 255), 'on the grid');
      }
    }
    const eps2 = 0.2;
    const adv = Float32Array.from(clean, (c) => Math.min(1, Math.max(0, c + (Math.random() * 2 - 1) * 0.03)));
    // Scale each image's perturbation to exactly eps2, the worst case for rounding up.
    const norms = normsFromArrays(clean, adv, n);
    for (let i = 0; i < n; i++) for (let p = i * d; p < (i + 1) * d; p++) adv[p] = clean[p] + ((adv[p] - clean[p]) * eps2) / norms.l2[i];
    const w = quantiseWithin(clean, adv, n, { norm: 'l2', eps: eps2 });
    for (const l2 of normsFromArrays(clean, w, n).l2) assert.ok(l2 <= eps2 * (1 + 1e-6), `L2 ${l2} > ${eps2}`);
  });

  it('evaluate keeps its report examples as written: on the grid, predictions measured on them', async () => {
    const clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 4 }));
    const set = renderDataset({ perClass: 2, size: 32, seed: 9, classes: [1, 2, 13, 14], augment: true });
    const r = await evaluateRobustness(clf, set, { attacks: ['deepfool', 'fgsm'], epsList: [0, 4 / 255], batchSize: 8, examplesPerAttack: 3 });
    assert.ok(r.examples.length >= 4);
    for (const ex of r.examples) {
      for (const img of [ex.clean, ex.adversarial]) {
        assert.equal(img.filter((t) => Math.abs(t * 255 - Math.round(t * 255)) > 1e-3).length, 0, 'on the grid');
      }
      const pred = tf.tidy(() => tf.argMax(clf.logits(tf.tensor4d(ex.adversarial, [1, 32, 32, 3])), 1).dataSync()[0]);
      assert.equal(ex.adversarialPrediction, pred);
      assert.equal(ex.success, ex.cleanPrediction === ex.label && pred !== ex.label);
    }
  });

  it('the live pipeline classifies the adversarial PNG it sends, within eps of the crop it shows', async () => {
    const clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 5 }));
    const pipe = new Pipeline(clf);
    const scene = new SyntheticScene({ width: 96, height: 96 });
    for (const [i, eps] of [0.03, 2 / 255, 0.5 / 255].entries()) {
      const { rgb } = scene.render(i * 0.3);
      const r = await pipe.process(
        { rgb, width: 96, height: 96, t: performance.now(), seq: i, decodeMs: 0 },
        { attack: 'fgsm', eps, targeted: false, target: 14, steps: 1, loss: 'ce', roi: null, paused: false },
      );
      const adv = Float32Array.from(await sharp(r.images.adversarial).raw().toBuffer(), (b) => b / 255);
      const crop = Float32Array.from(await sharp(r.images.cleanCrop).raw().toBuffer(), (b) => b / 255);
      const pred = tf.tidy(() => tf.argMax(clf.logits(tf.tensor4d(adv, [1, 32, 32, 3])), 1).dataSync()[0]);
      assert.equal(r.adversarial.classId, pred, 'prediction of the PNG sent');
      assert.equal(r.fooled, pred !== r.clean.classId);
      assert.ok(normsFromArrays(crop, adv, 1).linf[0] <= eps + 1e-6, `L∞ of the PNGs ${normsFromArrays(crop, adv, 1).linf[0]} > ${eps}`);
    }
    clf.model.dispose();
  });

  describe('advsign attack', () => {
    let dir: string;
    let modelDir: string;
    let image: string;
    before(async () => {
      dir = tempDir();
      modelDir = path.join(dir, 'm');
      await saveModel(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 3 }), modelDir);
      const px = renderSign(14, { size: 32, seed: 5 });
      image = path.join(dir, 'stop.png');
      await sharp(Buffer.from(px.map((v) => Math.round(v * 255))), { raw: { width: 32, height: 32, channels: 3 } })
        .png()
        .toFile(image);
    });

    for (const attack of ['deepfool', 'fgsm', 'jsma']) {
      it(`${attack}: success, prediction and L0/L∞ are those of the PNG written`, async () => {
        const out = path.join(dir, `${attack}.png`);
        const r = await runCli(['attack', '--model', modelDir, '--attack', attack, '--eps', '0.03', '--input', image, '--out', out, '--json']);
        assert.equal(r.code, 0, r.stderr);
        const res = JSON.parse(r.stdout);
        const clf = await loadClassifier(modelDir);
        const written = (await loadImageFile(out)).data;
        const clean = (await loadImageFile(image)).data;
        const pred = tf.tidy(() => tf.argMax(clf.logits(tf.tensor4d(written, [1, 32, 32, 3])), 1).dataSync()[0]);
        assert.equal(res.adversarial[0].classId, pred, "reported prediction is the PNG's");
        assert.equal(res.success, pred !== res.label, "reported success is the PNG's");
        const norms = normsFromArrays(clean, written, 1);
        assert.equal(res.l0, norms.l0[0], 'L0 of the file');
        assert.ok(Math.abs(res.linf - norms.linf[0]) < 1e-6, `L∞ ${res.linf} vs file ${norms.linf[0]}`);
        if (attack === 'fgsm') assert.ok(norms.linf[0] <= 0.03 + 1e-6, `budget ${norms.linf[0]}`);
        if (attack === 'deepfool') assert.equal(res.success, true, 'DeepFool searches until the 8-bit image fools');
      });
    }
  });
});
