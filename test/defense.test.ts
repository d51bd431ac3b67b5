/**
 * Defenses on a tiny model trained on synthetic signs: IBP soundness and the certified ≤ PGD ≤
 * clean ordering, adversarial-training examples and the overfitting guard, BPDA against bit
 * squeezing, transforms, detector AUC, distillation, and the command line's one-line errors.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { trainClassifier, accuracy } from '../src/inference/train';
import { renderDataset } from '../src/data/synthetic';
import { ImageSet } from '../src/data/types';
import { ibpBounds, certify, ibpMarginLowerBounds } from '../src/inference/ibp';
import { adversarialExamples, adversarialBatchHook, OverfitGuard, requireLogitsModel } from '../src/defense/adversarial';
import { squeezeBits, medianFilter, jpegRoundTrip } from '../src/defense/transforms';
import { attackDefended, defendedPredict, DefendedModel } from '../src/defense/defended';
import { Detector, trainDetector, rocAuc, buildDetectorModel } from '../src/defense/detector';
import { trainDistilled } from '../src/defense/distill';
import { buildDefense, DEFAULT_DEFENSE_SETTINGS, parseDefenseList } from '../src/defense/registry';
import { saveModel } from '../src/inference/model-io';
import { runCompare } from '../src/defense/compare';
import { getAttack } from '../src/attack/registry';
import { runCli, tempDir } from './helpers';

const CLASSES = [1, 12, 13, 14, 17, 25];

function batch(set: ImageSet, n: number): { x: Tensor4D; y: Int32Array } {
  const m = Math.min(n, set.n);
  return { x: tf.tensor4d(set.images.subarray(0, m * set.size * set.size * 3), [m, set.size, set.size, 3]), y: set.labels.slice(0, m) };
}

function countCorrect(pred: Int32Array, y: Int32Array): number {
  let k = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) k++;
  return k;
}

describe('defenses', function () {
  this.timeout(300000);
  let train: ImageSet, test: ImageSet;
  let clf: LayersClassifier;

  before(async () => {
    await initBackend();
    train = renderDataset({ perClass: 40, size: 32, seed: 5, classes: CLASSES });
    test = renderDataset({ perClass: 10, size: 32, seed: 77, classes: CLASSES });
    const r = await trainClassifier(train, test, {
      arch: 'cnn4-small',
      epochs: 6,
      batchSize: 32,
      learningRate: 2e-3,
      seed: 3,
      patience: 6,
      augment: false,
    });
    clf = r.classifier;
  });

  it('IBP bounds contain the logits of random points of the eps box, and are tight at eps = 0', () => {
    const { x } = batch(test, 8);
    for (const model of [
      clf.model,
      (() => {
        // A batch-norm model with non-trivial statistics exercises the BN path too.
        const m = buildModel({ arch: 'cnn4-bn', inputSize: 32, numClasses: 43, seed: 2 });
        m.setWeights(
          m
            .getWeights()
            .map((w, i) =>
              m.weights[i].name.includes('moving_variance')
                ? tf.randomUniform(w.shape, 0.5, 2)
                : m.weights[i].name.includes('moving_mean')
                  ? tf.randomNormal(w.shape, 0, 0.2)
                  : w,
            ),
        );
        return m;
      })(),
    ]) {
      const eps = 4 / 255;
      const { lower, upper } = ibpBounds(model, x, eps);
      const lo = lower.arraySync(),
        hi = upper.arraySync();
      for (let t = 0; t < 10; t++) {
        const z = tf.tidy(() => {
          const p = tf.clipByValue(tf.add(x, tf.randomUniform(x.shape, -eps, eps, 'float32', t)), 0, 1);
          return (model.predict(p) as tf.Tensor2D).arraySync();
        });
        z.forEach((row, i) =>
          row.forEach((v, j) => {
            assert.ok(v >= lo[i][j] - 1e-3 && v <= hi[i][j] + 1e-3, `logit ${v} outside [${lo[i][j]}, ${hi[i][j]}]`);
          }),
        );
      }
      const b0 = ibpBounds(model, x, 0);
      const z0 = (model.predict(x) as tf.Tensor2D).arraySync();
      const l0 = b0.lower.arraySync(),
        u0 = b0.upper.arraySync();
      z0.forEach((row, i) =>
        row.forEach((v, j) => {
          assert.ok(Math.abs(l0[i][j] - v) < 1e-3 && Math.abs(u0[i][j] - v) < 1e-3, `eps 0: ${l0[i][j]} ${v} ${u0[i][j]}`);
        }),
      );
      tf.dispose([lower, upper, b0.lower, b0.upper]);
      if (model !== clf.model) model.dispose();
    }
    x.dispose();
  });

  it('the elided margin bound is at least as tight as the plain one; certified ≤ PGD ≤ clean', async () => {
    const { x, y } = batch(test, 60);
    const eps = 1 / 255;
    const a = ibpMarginLowerBounds(clf.model, x, y, eps, true).arraySync();
    const b = ibpMarginLowerBounds(clf.model, x, y, eps, false).arraySync();
    a.forEach((row, i) =>
      row.forEach((v, j) => {
        if (Number.isFinite(v)) assert.ok(v >= b[i][j] - 1e-3);
      }),
    );
    const cert = await certify(clf.model, x, y, eps);
    const yt = tf.tensor1d(y, 'int32');
    const r = await getAttack('pgd').run(clf, x, yt, { eps, steps: 10 });
    const pred = tf.tidy(() => tf.argMax(clf.logits(r.adversarial), 1)).dataSync();
    const clean = tf.tidy(() => tf.argMax(clf.logits(x), 1)).dataSync();
    let nc = 0,
      np = 0,
      nk = 0;
    for (let i = 0; i < y.length; i++) {
      if (cert[i]) assert.strictEqual(pred[i], y[i], `image ${i} certified but PGD fooled it`);
      nc += cert[i];
      np += pred[i] === y[i] ? 1 : 0;
      nk += clean[i] === y[i] ? 1 : 0;
    }
    assert.ok(nc <= np && np <= nk, `certified ${nc} ≤ pgd ${np} ≤ clean ${nk}`);
    tf.dispose([x, yt, r.adversarial]);
  });

  it('adversarial training examples stay in the eps ball and [0, 1]; the hook mixes the batch', () => {
    const { x, y } = batch(train, 32);
    const yt = tf.tensor1d(y, 'int32');
    const eps = 8 / 255;
    for (const m of ['fgsm', 'fgsm-rs', 'pgd'] as const) {
      const adv = adversarialExamples(clf, x, yt, m, eps, { pgdSteps: 3, seed: 1 });
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(adv, x)))).dataSync()[0];
      const [mn, mx] = [tf.min(adv).dataSync()[0], tf.max(adv).dataSync()[0]];
      assert.ok(d <= eps + 1e-6 && d > eps / 4, `${m}: max |delta| ${d}`);
      assert.ok(mn >= 0 && mx <= 1);
      adv.dispose();
    }
    const { hook } = adversarialBatchHook({ method: 'fgsm-rs', eps, ratio: 0.5, rampEpochs: 0 });
    const out = tf.tidy(() => {
      const o = hook(clf, x, yt, 1);
      const diff = tf.max(tf.abs(tf.sub(o.x, x)), [1, 2, 3]).dataSync();
      return Array.from(diff);
    });
    assert.ok(
      out.slice(0, 16).every((v) => v > 0 && v <= eps + 1e-6),
      'first half adversarial',
    );
    assert.ok(
      out.slice(16).every((v) => v === 0),
      'second half clean',
    );
    tf.dispose([x, yt]);
  });

  it('the FGSM-RS guard restores the last good weights when PGD accuracy collapses', () => {
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 9 });
    const c = new LayersClassifier(model);
    let simulated = 0.6;
    const guard = new OverfitGuard(model, train.images.subarray(0, 4 * 3072), train.labels.subarray(0, 4), 32, { eps: 8 / 255, measure: () => simulated });
    const good = model.getWeights().map((w) => w.dataSync().slice());
    assert.strictEqual(guard.check(c, 1).collapsed, false);
    // Training "moves" the weights and PGD accuracy collapses (catastrophic overfitting).
    model.setWeights(model.getWeights().map((w) => tf.add(w, 1)));
    simulated = 0.02;
    const chk = guard.check(c, 2);
    assert.ok(chk.collapsed && chk.restored);
    model.getWeights().forEach((w, i) => assert.deepStrictEqual(w.dataSync(), good[i]));
    guard.check(c, 3);
    assert.strictEqual(guard.fallbackMethod, 'pgd', 'two collapses switch to PGD-2');
    guard.dispose();
    model.dispose();
  });

  it('squeezing, median and JPEG keep shape and [0, 1]', async () => {
    const { x } = batch(test, 5);
    for (const out of [squeezeBits(x, 3), medianFilter(x, 2), medianFilter(x, 3), await jpegRoundTrip(x, 50)]) {
      assert.deepStrictEqual(out.shape, x.shape);
      assert.ok(tf.min(out).dataSync()[0] >= 0 && tf.max(out).dataSync()[0] <= 1);
      out.dispose();
    }
    const levels = new Set(Array.from(squeezeBits(x, 1).dataSync()));
    assert.ok([...levels].every((v) => v === 0 || v === 1));
    x.dispose();
  });

  it('BPDA through bit squeezing lowers accuracy at least as much as the plain attack', async () => {
    const { x, y } = batch(test, 60);
    const yt = tf.tensor1d(y, 'int32');
    const d: DefendedModel = { name: 'squeeze-bits', title: '', classifier: clf, plainTarget: clf, transform: async (t) => squeezeBits(t, 3) };
    const accOf = async (adaptive: boolean) => {
      const adv = await attackDefended(d, x, yt, { attack: 'pgd', eps: 8 / 255, steps: 10, adaptive, seed: 1 });
      const k = countCorrect(await defendedPredict(d, adv), y);
      adv.dispose();
      return k;
    };
    const clean = countCorrect(await defendedPredict(d, x), y);
    const plain = await accOf(false),
      bpda = await accOf(true);
    assert.ok(bpda <= plain, `BPDA ${bpda} vs plain ${plain} (clean ${clean})`);
    assert.ok(bpda < clean, 'BPDA fools the squeezed model');
    tf.dispose([x, yt]);
  });

  it('the detector separates FGSM at a large eps (AUC > 0.5), a joint attack evades it better, and it refuses other image sizes', async () => {
    const det = await trainDetector(clf, train, { epsList: [16 / 255], attacks: ['fgsm'], epochs: 3, seed: 2 });
    const { x, y } = batch(test, 60);
    const yt = tf.tensor1d(y, 'int32');
    const adv = adversarialExamples(clf, x, yt, 'fgsm', 16 / 255);
    const auc = rocAuc(await det.scores(adv), await det.scores(x));
    assert.ok(auc > 0.5, `AUC ${auc}`);
    // The adaptive attack aims at the classifier and the detector together: it stays in the eps
    // ball and leaves the detector less suspicious than the plain attack does.
    const d: DefendedModel = { name: 'detector', title: 'detector', classifier: clf, plainTarget: clf, detector: det };
    const opts = { attack: 'pgd' as const, eps: 16 / 255, steps: 5, seed: 3 };
    const plain = await attackDefended(d, x, yt, { ...opts, adaptive: false });
    const joint = await attackDefended(d, x, yt, { ...opts, adaptive: true });
    const linf = tf.tidy(() => tf.max(tf.abs(tf.sub(joint, x))).dataSync()[0]);
    assert.ok(linf <= 16 / 255 + 1e-6, `L∞ ${linf}`);
    const mean = (v: Float32Array) => v.reduce((a, b) => a + b, 0) / v.length;
    const [sPlain, sJoint] = [mean(await det.scores(plain)), mean(await det.scores(joint))];
    assert.ok(sJoint < sPlain, `detector score: joint ${sJoint}, plain ${sPlain}`);
    const small = tf.zeros([1, 16, 16, 3]) as Tensor4D;
    assert.throws(() => det.scoreLogits(small), /judges 32×32 RGB images, got 16×16×3/);
    tf.dispose([x, yt, adv, small, plain, joint]);
    assert.strictEqual(rocAuc([3, 4], [1, 2]), 1);
    assert.strictEqual(rocAuc([1, 2], [1, 2]), 0.5);
    assert.strictEqual(rocAuc([0], [1]), 0);
    assert.ok(new Detector(buildDetectorModel(32)).inputSize === 32);
  });

  it('distillation produces a working student with larger logits', async () => {
    const r = await trainDistilled(train, {
      arch: 'cnn4-small',
      temperature: 10,
      epochs: 4,
      teacherInit: clf.model,
      studentFromTeacher: true,
      seed: 4,
      learningRate: 2e-3,
    });
    const acc = await accuracy(r.student, test);
    assert.ok(acc > 0.5, `student accuracy ${acc}`);
    const { x } = batch(test, 20);
    const spread = (c: LayersClassifier) => tf.tidy(() => tf.mean(tf.sub(tf.max(c.logits(x), 1), tf.min(c.logits(x), 1))).dataSync()[0]);
    assert.ok(spread(r.student) > spread(clf), 'distilled logits are scaled up');
    x.dispose();
  });

  it('the comparison orders certified ≤ PGD ≤ clean and reports every eps', async () => {
    const small: ImageSet = {
      ...test,
      n: 24,
      images: test.images.subarray(0, 24 * 3072),
      labels: test.labels.subarray(0, 24),
      groups: test.groups.slice(0, 24),
    };
    const res = await runCompare(
      [
        {
          label: 'tiny',
          clf,
          defenses: ['none', 'squeeze-bits'],
          context: {
            modelDir: '/nonexistent',
            architecture: 'cnn4-small',
            settings: { bits: 4, medianSize: 2, jpegQuality: 75, temperature: 10, detectorEps: [8 / 255], trainSeconds: 5 },
            cacheDir: null,
          },
        },
      ],
      small,
      { epsList: [2 / 255, 8 / 255], pgdSteps: 5 },
    );
    const none = res.rows[0];
    for (const e of res.epsList) {
      const pgd = none.cells.find((c) => c.attack === 'pgd' && c.eps === e)!.plain;
      const cert = none.certified!.find((c) => c.eps === e)!.accuracy;
      assert.ok(cert <= pgd && pgd <= none.clean, `eps ${e}: ${cert} ≤ ${pgd} ≤ ${none.clean}`);
    }
    assert.ok(res.rows[1].cells.every((c) => c.adaptive != null));
  });

  it('a trained defense is cached, and retrained when its budget or training data change', async () => {
    const dir = tempDir();
    const modelDir = path.join(dir, 'model');
    await saveModel(clf.model, modelDir);
    const logs: string[] = [];
    const build = async (seconds: number, trainDescription: string) => {
      logs.length = 0;
      await buildDefense('autoencoder', clf, {
        modelDir,
        architecture: 'cnn4-small',
        settings: { ...DEFAULT_DEFENSE_SETTINGS, trainSeconds: seconds },
        cacheDir: path.join(dir, 'cache'),
        trainDescription,
        trainSet: async () => train,
        log: (m) => logs.push(m),
      });
      return logs.join('\n');
    };
    assert.match(await build(1, 'synthetic 240'), /training/);
    assert.match(await build(1, 'synthetic 240'), /using cached/);
    assert.match(await build(2, 'synthetic 240'), /training/, 'a longer budget retrains');
    assert.match(await build(1, 'synthetic 120'), /training/, 'other training data retrains');
  });

  it('refuses softmax models for adversarial training and verification', () => {
    const m = tf.sequential();
    m.add(tf.layers.flatten({ inputShape: [8, 8, 3] }));
    m.add(tf.layers.dense({ units: 4, activation: 'softmax' }));
    assert.throws(() => requireLogitsModel(new LayersClassifier(m, true), 'adversarial training'), /outputs logits/);
    assert.throws(() => ibpBounds(m, tf.zeros([1, 8, 8, 3]) as Tensor4D, 0.1), /outputs logits/);
    m.dispose();
  });

  it('advsign train --adversarial fgsm-rs: keeps the epoch with the best validation PGD accuracy and says so in the card', async () => {
    const out = path.join(tempDir(), 'adv');
    const r = await runCli([
      'train',
      '--data',
      'synthetic',
      '--per-class',
      '10',
      '--epochs',
      '2',
      '--arch',
      'cnn4-small',
      '--adversarial',
      'fgsm-rs',
      '--eps',
      '8/255',
      '--out',
      out,
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /pgd10@8\/255 \d\.\d{4}/, 'each epoch prints its validation PGD accuracy');
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.strictEqual(card.adversarialTraining.method, 'fgsm-rs');
    assert.ok(card.adversarialTraining.batchesAdversarial > 0);
    assert.match(card.training.selectedBy, /^pgd10@8\/255 accuracy on \d+ validation images/);
    assert.match(card.training.command, /^advsign train --data synthetic .*--adversarial fgsm-rs/);
    const scores = card.training.history.map((h: { valScore: number }) => h.valScore);
    assert.ok(
      scores.every((v: number) => v >= 0 && v <= 1),
      JSON.stringify(scores),
    );
    assert.strictEqual(scores[card.training.bestEpoch - 1], Math.max(...scores));
  });

  it('advsign train --init: the card keeps the lineage, oldest run first, through two fine-tunings', async () => {
    const dir = tempDir();
    const base = ['--data', 'synthetic', '--per-class', '6', '--epochs', '1', '--arch', 'cnn4-small'];
    const a = path.join(dir, 'a'),
      b = path.join(dir, 'b'),
      c = path.join(dir, 'c');
    for (const [out, extra] of [
      [a, []],
      [b, ['--init', a, '--adversarial', 'fgsm', '--eps', '4/255']],
      [c, ['--init', b]],
    ] as const) {
      const r = await runCli(['train', ...base, ...extra, '--out', out]);
      assert.strictEqual(r.code, 0, r.stderr);
    }
    const card = (d: string) => JSON.parse(fs.readFileSync(path.join(d, 'card.json'), 'utf8'));
    assert.strictEqual(card(a).training.lineage, undefined, 'a model trained from scratch has no ancestors');
    const lineage = card(c).training.lineage as { model: string; command: string; seconds: number }[];
    assert.deepStrictEqual(
      lineage.map((l) => l.model),
      ['a', 'b'],
    );
    assert.match(lineage[0].command, /^advsign train --data synthetic /);
    assert.doesNotMatch(lineage[0].command, /--init/);
    assert.match(lineage[1].command, /--init .* --adversarial fgsm --eps 4\/255/);
    assert.ok(lineage.every((l) => typeof l.seconds === 'number'));
  });

  it('command line: unknown defense and bad robust-training eps are one-line errors', async () => {
    assert.throws(() => parseDefenseList('nope'), /unknown defense 'nope': known defenses are none, squeeze-bits/);
    const r1 = await runCli(['evaluate', '--model', 'x', '--data', 'synthetic', '--defense', 'bogus']);
    assert.notStrictEqual(r1.code, 0);
    assert.match(r1.stderr, /unknown defense 'bogus'/);
    assert.strictEqual(r1.stderr.trim().split('\n').length, 1, r1.stderr);
    for (const [args, msg] of [
      [['--adversarial', 'pgd', '--eps', '8/255', '--max-clean-drop', '3'], /--max-clean-drop needs --init or --clean-reference/],
      [['--adversarial', 'pgd', '--eps', '8/255', '--clean-reference', 'models/gtsrb-cnn'], /--clean-reference only applies with --max-clean-drop/],
      [['--max-clean-drop', '3'], /--max-clean-drop only applies with --adversarial/],
    ] as [string[], RegExp][]) {
      const r = await runCli(['train', '--data', 'synthetic', ...args]);
      assert.notStrictEqual(r.code, 0);
      assert.match(r.stderr, msg);
    }
    for (const eps of ['0', '2']) {
      const r = await runCli(['train', '--data', 'synthetic', '--adversarial', 'fgsm-rs', '--eps', eps]);
      assert.notStrictEqual(r.code, 0);
      assert.match(r.stderr, /eps must be in \(0, 1\]/);
      assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});
