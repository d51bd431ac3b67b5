/**
 * Training on the project's synthetic signs: the loop learns, the CLI writes a loadable model
 * with its card, and an interrupted run leaves whole files behind.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { trainClassifier, accuracy } from '../src/inference/train';
import { loadClassifier } from '../src/inference/model-io';
import { renderDataset } from '../src/data/synthetic';
import { splitByGroup } from '../src/data/gtsrb';
import { runCli, tempDir } from './helpers';

describe('training', function () {
  this.timeout(240000);
  before(async () => {
    await initBackend();
  });

  it('clearly learns the 43 synthetic classes in a few epochs', async () => {
    const all = renderDataset({ perClass: 30, size: 32, seed: 11 });
    const { train, val } = splitByGroup(all, 0.2, 1);
    assert.strictEqual(new Set(train.labels).size, 43);
    const before = tf.memory().numTensors;
    const r = await trainClassifier(train, val, {
      arch: 'cnn4-small',
      epochs: 6,
      batchSize: 32,
      learningRate: 2e-3,
      seed: 3,
      patience: 6,
      augment: false,
    });
    const acc = await accuracy(r.classifier, val);
    // Chance is 1/43 ≈ 2.3 %.
    assert.ok(acc > 0.35, `validation accuracy ${acc}`);
    assert.ok(r.history[r.history.length - 1].trainLoss < r.history[0].trainLoss, 'loss decreases');
    r.model.dispose();
    assert.ok(tf.memory().numTensors <= before + 2, `tensors leaked: ${before} → ${tf.memory().numTensors}`);
  });

  it('a validation score picks the kept epoch, among eligible epochs first', async () => {
    const all = renderDataset({ perClass: 4, size: 32, seed: 12 });
    const { train, val } = splitByGroup(all, 0.3, 1);
    const run = async (eligibleEpochs: number[]) => {
      let calls = 0,
        epoch = 0;
      const r = await trainClassifier(train, val, {
        arch: 'cnn4-small',
        epochs: 3,
        batchSize: 32,
        learningRate: 1e-3,
        seed: 1,
        patience: 5,
        augment: false,
        // Rising score: without a constraint the last epoch wins.
        validationScore: { name: 'score', score: async () => ++calls / 10, eligible: () => eligibleEpochs.includes(++epoch) },
      });
      r.model.dispose();
      return r;
    };
    const free = await run([1, 2, 3]);
    assert.strictEqual(free.bestEpoch, 3);
    assert.ok(Math.abs(free.bestValScore - 0.3) < 1e-9);
    assert.deepStrictEqual(
      free.history.map((h) => h.valScore),
      [0.1, 0.2, 0.3],
    );
    assert.strictEqual((await run([2])).bestEpoch, 2, 'the only eligible epoch beats later, higher-scoring ones');
    assert.strictEqual((await run([])).bestEpoch, 3, 'with none eligible, the best score');
  });

  it('advsign train writes model.json, weights and a card; evaluate reads them back', async () => {
    const out = path.join(tempDir(), 'syn');
    const r = await runCli(['train', '--data', 'synthetic', '--per-class', '12', '--epochs', '2', '--arch', 'cnn4-small', '--out', out]);
    assert.strictEqual(r.code, 0, r.stderr);
    for (const f of ['model.json', 'weights.bin', 'card.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.strictEqual(card.architecture, 'cnn4-small');
    assert.strictEqual(card.inputSize, 32);
    assert.strictEqual(card.training.epochsRun, 2);
    assert.ok(card.cleanAccuracy.validation >= 0 && card.cleanAccuracy.test >= 0);
    assert.match(r.stdout, /saved .*validation .*test/);
    assert.ok(!fs.existsSync(out + '.checkpoints'), 'checkpoints cleaned up');
    const jsonFile = path.join(path.dirname(out), 'eval.json');
    const e = await runCli(['evaluate', '--model', out, '--data', 'synthetic', '--limit', '86', '--json', jsonFile]);
    assert.strictEqual(e.code, 0, e.stderr);
    const report = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
    assert.strictEqual(report.n, 86);
    assert.strictEqual(report.split, 'test');
    assert.ok(report.clean.accuracy >= 0 && report.clean.accuracy <= 1);
    assert.strictEqual(report.clean.confusion.length, 43);
    assert.strictEqual(report.clean.perClass.length, 43);
  });

  it('Ctrl-C / SIGTERM ends training cleanly with the best epoch saved; a killed run leaves whole checkpoints', async () => {
    const out = path.join(tempDir(), 'int');
    let sent = false;
    const r = await runCli(['train', '--data', 'synthetic', '--per-class', '10', '--epochs', '50', '--patience', '50', '--arch', 'cnn4-small', '--out', out], {
      onStderr: (text, kill) => {
        // After the first epoch's checkpoint, interrupt like a user at the terminal.
        if (!sent && /val \d/.test(text) && fs.existsSync(path.join(out + '.checkpoints', 'checkpoint', 'model.json'))) {
          sent = true;
          // SIGTERM: shells start background jobs (CI) with SIGINT ignored, so SIGINT may never arrive.
          kill('SIGTERM');
        }
      },
    });
    assert.ok(sent, 'interrupt was sent');
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /interrupted/);
    const clf = await loadClassifier(out);
    assert.strictEqual(clf.numClasses, 43);

    const out2 = path.join(tempDir(), 'kill');
    let killed = false;
    await runCli(['train', '--data', 'synthetic', '--per-class', '10', '--epochs', '50', '--patience', '50', '--arch', 'cnn4-small', '--out', out2], {
      onStderr: (text, kill) => {
        if (!killed && (text.match(/val \d/g) ?? []).length >= 2) {
          killed = true;
          kill('SIGKILL');
        }
      },
    });
    assert.ok(killed);
    const ckpt = await loadClassifier(path.join(out2 + '.checkpoints', 'checkpoint'));
    assert.strictEqual(ckpt.inputSize, 32);
    const leftovers = fs.readdirSync(path.dirname(out2)).filter((f) => f.includes('.saving-'));
    // A kill can land mid-save: then only a staging folder is left, never a half checkpoint.
    assert.ok(
      leftovers.every((f) => !f.startsWith('checkpoint')),
      leftovers.join(','),
    );
  });

  it('a signal during validation (IBP-certified score) stops promptly: the first keeps the last whole epoch, a second exits 130', async () => {
    // Validation is half the synthetic images, certified by IBP: the slow phase a signal used to wait out.
    const flags = '--data synthetic --per-class 8 --val-fraction 0.5 --epochs 20 --patience 20 --ibp 2/255 --ibp-warmup 0 --ibp-ramp 1';
    const args = (out: string) => ['train', ...flags.split(' '), '--arch', 'cnn2-ibp', '--engine', 'tfjs', '--workers', '0', '--out', out];
    const interrupt = async (out: string, validating: RegExp, signals: NodeJS.Signals[]) => {
      let sentAt = 0;
      const r = await runCli(args(out), {
        onStderr: (text, kill) => {
          if (!sentAt && validating.test(text)) {
            sentAt = Date.now();
            for (const s of signals) kill(s);
          }
        },
      });
      assert.ok(sentAt, `validation was reached: ${r.stderr}`);
      return { ...r, seconds: (Date.now() - sentAt) / 1000 };
    };
    const out = path.join(tempDir(), 'val');
    // Epoch 1 validated and checkpointed; SIGTERM while epoch 2 validates.
    const first = await interrupt(out, /epoch 2: validating/, ['SIGTERM']);
    assert.strictEqual(first.code, 0, first.stderr);
    assert.match(first.stderr, /interrupted/);
    const card = JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    assert.strictEqual(card.training.epochsRun, 1, 'the epoch whose validation was cut short is not counted');
    assert.strictEqual(card.training.bestEpoch, 1);
    assert.strictEqual(card.training.interrupted, true);
    assert.strictEqual((await loadClassifier(out)).numClasses, 43);
    // Before: about a full validation (7 batches) plus the test split after the signal; now one batch and the test split.
    assert.ok(first.seconds < 20, `exited ${first.seconds.toFixed(1)} s after SIGTERM`);

    const out2 = path.join(tempDir(), 'val2');
    const second = await interrupt(out2, /epoch 1: validating/, ['SIGTERM', 'SIGINT']);
    assert.strictEqual(second.code, 130, second.stderr);
    assert.ok(second.seconds < 5, `exited ${second.seconds.toFixed(1)} s after the second signal`);
    assert.ok(!fs.existsSync(path.join(out2, 'model.json')), 'nothing saved');
  });
});
