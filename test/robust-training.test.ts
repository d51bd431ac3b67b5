/**
 * The training recipes behind the shipped robust and certified models: IBP training (it must
 * make a model verifiable where plain training does not), TRADES, label smoothing, epoch
 * selection on the worst case of several PGD objectives, and the commands that drive them
 * (`train --ibp`, `train --adversarial trades`, `evaluate --certify`).
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { trainClassifier, TrainOptions } from '../src/inference/train';
import { shardGradients, GradientPool } from '../src/inference/data-parallel';
import { renderDataset } from '../src/data/synthetic';
import { ImageSet } from '../src/data/types';
import { certifiedAccuracy } from '../src/inference/ibp';
import { ibpSchedule } from '../src/defense/ibp-train';
import { tradesExamples, tradesLoss } from '../src/inference/trades';
import { pgdCorrect } from '../src/defense/adversarial';
import { selectionAccuracy } from '../src/cli/train-defense';
import { runCli, tempDir } from './helpers';

const CLASSES = [1, 12, 13, 14, 17, 25];

function firstImages(set: ImageSet, n: number): { x: Tensor4D; y: Tensor1D } {
  const m = Math.min(n, set.n);
  return {
    x: tf.tensor4d(set.images.subarray(0, m * set.size * set.size * 3), [m, set.size, set.size, 3]),
    y: tf.tensor1d(set.labels.slice(0, m), 'int32'),
  };
}

describe('robust and certified training', function () {
  this.timeout(400000);
  let train: ImageSet, test: ImageSet;
  const base: TrainOptions = { arch: 'cnn4-small', epochs: 6, batchSize: 32, learningRate: 2e-3, seed: 3, patience: 10, augment: false };

  before(async () => {
    await initBackend();
    train = renderDataset({ perClass: 40, size: 32, seed: 5, classes: CLASSES });
    test = renderDataset({ perClass: 10, size: 32, seed: 77, classes: CLASSES });
  });

  it('the IBP schedule: a clean warm-up, then eps and κ ramp linearly and stay', () => {
    const o = { eps: 0.1, warmupEpochs: 1, rampEpochs: 2, kappaEnd: 0.5 };
    assert.deepStrictEqual(ibpSchedule(o, 1, 5, 10), { eps: 0, kappa: 1 });
    const mid = ibpSchedule(o, 3, 0, 10);
    assert.ok(Math.abs(mid.eps - 0.05) < 1e-12 && Math.abs(mid.kappa - 0.75) < 1e-12, JSON.stringify(mid));
    assert.deepStrictEqual(ibpSchedule(o, 9, 0, 10), { eps: 0.1, kappa: 0.5 });
  });

  it('IBP training makes the model verifiable; plain training of the same net certifies far fewer images', async () => {
    // 16 px and the small cnn2-ibp net keep this cheap; IBP needs a few hundred steps to work.
    const small = renderDataset({ perClass: 80, size: 16, seed: 5, classes: CLASSES });
    const held = renderDataset({ perClass: 10, size: 16, seed: 77, classes: CLASSES });
    const eps = 2 / 255;
    const o: TrainOptions = { ...base, arch: 'cnn2-ibp', epochs: 9 };
    const plain = await trainClassifier(small, held, o);
    const ibp = await trainClassifier(small, held, {
      ...o,
      lossPlan: (epoch, step, steps) => ({ ibp: ibpSchedule({ eps, warmupEpochs: 1, rampEpochs: 4, kappaEnd: 0.5 }, epoch, step, steps) }),
    });
    const cert = async (r: { classifier: LayersClassifier }) => certifiedAccuracy(r.classifier.model, held.images, held.labels, held.size, eps);
    const [cPlain, cIbp] = [await cert(plain), await cert(ibp)];
    assert.ok(cIbp >= 0.3 && cIbp >= cPlain + 0.2, `certified at 2/255: IBP-trained ${cIbp}, plain ${cPlain}`);
    plain.model.dispose();
    ibp.model.dispose();
  });

  it('TRADES: the neighbour stays in the ball and raises the KL term; β = 0 is plain CE; the pool agrees with one thread', async () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 4 });
    const clf = new LayersClassifier(model);
    const { x, y } = firstImages(train, 24);
    const eps = 8 / 255;
    const adv = tradesExamples(clf, x, eps, 3, 1);
    const [dmax, lo, hi] = tf.tidy(() => [tf.max(tf.abs(tf.sub(adv, x))), tf.min(adv), tf.max(adv)].map((t) => t.dataSync()[0]));
    assert.ok(dmax <= eps + 1e-6 && dmax > eps / 2, `max |delta| ${dmax}`);
    assert.ok(lo >= 0 && hi <= 1);
    const [klAdv, klNear, ce, lossBeta0] = tf.tidy(() => {
      const z = clf.logits(x);
      const near = tf.add(x, tf.mul(tf.randomNormal(x.shape, 0, 1, 'float32', 1), 0.001)).clipByValue(0, 1) as Tensor4D;
      const kl = (xa: Tensor4D) => tf.sub(tradesLoss(z, clf.logits(xa), y, 43, 1), tradesLoss(z, clf.logits(xa), y, 43, 0));
      return [kl(adv), kl(near), tf.losses.softmaxCrossEntropy(tf.oneHot(y, 43), z), tradesLoss(z, clf.logits(adv), y, 43, 0)].map((t) => t.dataSync()[0]);
    });
    assert.ok(klAdv > 10 * klNear && klAdv > 0, `KL at the TRADES neighbour ${klAdv}, at the random start ${klNear}`);
    assert.ok(Math.abs(ce - lossBeta0) < 1e-6);
    const plan = { method: 'trades' as const, eps, ratio: 1, pgdSteps: 2, tradesBeta: 6, seed: 9 };
    const pool = await GradientPool.create(clf, 1);
    try {
      const pooled = await pool.step(clf, x, y, 43, { training: false, plan });
      // The pool gives each shard its own start (seed + shard index): compare with the same split.
      const halves = [
        [0, 12],
        [12, 12],
      ].map(([a, m], i) =>
        tf.tidy(() => shardGradients(clf, x.slice([a, 0, 0, 0], [m, -1, -1, -1]), y.slice([a], [m]), 43, false, { ...plan, seed: plan.seed + i })),
      );
      const whole = clf.trainableWeights.map((_, j) => tf.tidy(() => tf.div(tf.add(halves[0].grads[j], halves[1].grads[j]), 2)));
      clf.trainableWeights.forEach((v, j) => {
        const g = pooled.grads.find((p) => p.name === v.name)!.tensor;
        const [diff, scale] = tf.tidy(() => [tf.max(tf.abs(tf.sub(g, whole[j]))).dataSync()[0], tf.max(tf.abs(whole[j])).dataSync()[0]]);
        assert.ok(diff <= 1e-4 * scale + 1e-9, `${v.name}: max |diff| ${diff} vs scale ${scale}`);
      });
      tf.dispose([...whole, ...halves.flatMap((h) => [h.loss, h.correct, ...h.grads]), ...pooled.grads.map((g) => g.tensor)]);
    } finally {
      await pool.dispose();
      tf.dispose([x, y, adv]);
      model.dispose();
    }
  });

  it('label smoothing: the training loss is CE against (1 − s)·one-hot + s/k', () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 8 });
    const clf = new LayersClassifier(model);
    const { x, y } = firstImages(train, 8);
    const r = tf.tidy(() => shardGradients(clf, x, y, 43, false, undefined, { labelSmoothing: 0.1 }));
    const expected = tf.tidy(() => {
      const target = tf.add(tf.mul(tf.oneHot(y, 43), 0.9), 0.1 / 43);
      return tf.mean(tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(clf.logits(x))), 1))).dataSync()[0];
    });
    assert.ok(Math.abs(r.loss.dataSync()[0] - expected) < 1e-5, `${r.loss.dataSync()[0]} vs ${expected}`);
    tf.dispose([x, y, r.loss, r.correct, ...r.grads]);
    model.dispose();
  });

  it('selection on several PGD objectives counts an image only if it survives each', async () => {
    const r = await trainClassifier(train, test, { ...base, epochs: 3 });
    const { x, y } = firstImages(test, 60);
    const eps = 4 / 255;
    const [ce, dlr, both] = [['ce'], ['dlr'], ['ce', 'dlr']].map((l) => pgdCorrect(r.classifier, x, y, eps, 5, 7, l as ('ce' | 'dlr')[]));
    assert.ok(both <= Math.min(ce, dlr), `ce ${ce}, dlr ${dlr}, both ${both}`);
    // The same with APGD as the selection attack (--select-attack apgd).
    const set = { images: test.images.subarray(0, 60 * 32 * 32 * 3), labels: test.labels.subarray(0, 60) };
    const apgd: number[] = [];
    for (const l of [['ce'], ['dlr'], ['ce', 'dlr']] as ('ce' | 'dlr')[][])
      apgd.push(await selectionAccuracy(r.classifier, set, 32, { attack: 'apgd', eps, steps: 5, losses: l }));
    const [ace, adlr, aboth] = apgd;
    assert.ok(aboth <= Math.min(ace, adlr) && aboth < 1, `apgd ce ${ace}, dlr ${adlr}, both ${aboth}`);
    tf.dispose([x, y]);
    r.model.dispose();
  });

  it('advsign train --ibp writes its schedule and selection in the card; evaluate --certify reports and records certified accuracy', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'cert');
    const t = await runCli([
      'train',
      '--data',
      'synthetic',
      '--per-class',
      '8',
      '--epochs',
      '2',
      '--arch',
      'cnn4-small',
      '--ibp',
      '2/255',
      '--ibp-warmup',
      '0',
      '--ibp-ramp',
      '1',
      '--out',
      out,
    ]);
    assert.strictEqual(t.code, 0, t.stderr);
    assert.match(t.stderr, /ibp-certified@2\/255 \d\.\d{4}/, 'each epoch prints its certified validation accuracy');
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.strictEqual(card.training.engine, 'ort', 'IBP training runs on ort by default');
    assert.strictEqual(card.certifiedTraining.method, 'ibp');
    assert.strictEqual(card.certifiedTraining.kappaEnd, 0.5);
    assert.match(card.training.selectedBy, /^ibp-certified@2\/255 accuracy on all \d+ validation images/);
    const json = path.join(dir, 'e.json');
    const e = await runCli([
      'evaluate',
      '--model',
      out,
      '--data',
      'synthetic',
      '--limit',
      '129',
      '--certify',
      '--eps',
      '0,1/255,4/255',
      '--json',
      json,
      '--update-card',
      '--quiet',
    ]);
    assert.strictEqual(e.code, 0, e.stderr);
    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.deepStrictEqual(
      report.certified.map((c: { eps: number }) => c.eps),
      [1 / 255, 4 / 255],
    );
    const [c1, c4] = report.certified.map((c: { accuracy: number }) => c.accuracy);
    assert.ok(c4 <= c1 && c1 <= report.clean.accuracy, `certified ${c4} ≤ ${c1} ≤ clean ${report.clean.accuracy}`);
    const after = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.strictEqual(after.certifiedAccuracy['ibp@0.0157'].accuracy, c4);
  });

  it('command line: bad --ibp, TRADES and selection flags are one-line errors', async () => {
    for (const [args, msg] of [
      [['--ibp', '2/255', '--arch', 'cnn4-bn'], /--ibp needs an architecture without batch norm/],
      [['--ibp', '0'], /--ibp must be an L∞ radius in \(0, 1\]/],
      [['--ibp', '2/255', '--adversarial', 'pgd', '--eps', '8/255'], /--ibp and --adversarial are two different trainings/],
      [['--ibp-kappa', '0.3'], /--ibp-kappa only applies with --ibp/],
      [['--adversarial', 'pgd', '--eps', '8/255', '--trades-beta', '3'], /--trades-beta only applies with --adversarial trades/],
      [['--adversarial', 'trades', '--eps', '8/255', '--adv-ratio', '0.5'], /--adv-ratio does not apply to TRADES/],
      [['--adversarial', 'pgd', '--eps', '8/255', '--select-loss', 'ce,nope'], /unknown loss 'nope'/],
      [['--adversarial', 'pgd', '--eps', '8/255', '--select-attack', 'fab'], /--select-attack must be pgd or apgd/],
      [['--adversarial', 'pgd', '--eps', '8/255', '--select-attack', 'apgd', '--select-loss', 'margin'], /apgd climbs ce or dlr, not margin/],
    ] as [string[], RegExp][]) {
      const r = await runCli(['train', '--data', 'synthetic', ...args]);
      assert.strictEqual(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
      assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    const r = await runCli(['evaluate', '--model', 'models/gtsrb-cnn', '--data', 'synthetic', '--certify', '--eps', '0']);
    assert.strictEqual(r.code, 2, r.stderr);
    assert.match(r.stderr, /--certify needs an --eps above 0/);
  });
});
