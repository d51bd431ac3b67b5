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

  it('a signal during validation stops it within a batch; one during training still validates and saves; a second exits 130', async function () {
    // Three CLI runs of IBP training on tfjs; a loaded 2-core machine takes minutes.
    this.timeout(600000);
    // Validation is half the synthetic images (5 IBP-certified batches of 128): the slow phase a signal used to wait out.
    const flags = '--data synthetic --per-class 24 --val-fraction 0.5 --epochs 20 --patience 20 --ibp 2/255 --ibp-warmup 0 --ibp-ramp 1';
    const args = (out: string) => ['train', ...flags.split(' '), '--arch', 'cnn2-ibp', '--engine', 'tfjs', '--workers', '0', '--out', out];
    const marks = {
      training1: /epoch 1\/20 \[/,
      validating1: /epoch 1: validating/,
      validated1: /epoch 1\/20 .* val \d/,
      validating2: /epoch 2: validating/,
      validated2: /epoch 2\/20 .* val \d/,
      interrupted: /interrupted:/,
    };
    type Mark = keyof typeof marks;
    // Runs the CLI, noting when each mark first shows on stderr (ms) and sending the given signal then.
    const run = async (out: string, send: Partial<Record<Mark, NodeJS.Signals>>) => {
      const at: Partial<Record<Mark, number>> = {};
      const r = await runCli(args(out), {
        onStderr: (text, kill) => {
          for (const k of Object.keys(marks) as Mark[]) {
            if (at[k] !== undefined || !marks[k].test(text)) continue;
            at[k] = Date.now();
            const s = send[k];
            if (s) kill(s);
          }
        },
      });
      return { ...r, at, end: Date.now() };
    };
    const readCard = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'card.json'), 'utf8'));
    const since = (t0: number | undefined, t1: number | undefined) => ((t1 as number) - (t0 as number)) / 1000;

    // Epoch 1 validated (its duration is the yardstick) and checkpointed; SIGTERM as epoch 2 starts validating.
    const out = path.join(tempDir(), 'val');
    const a = await run(out, { validating2: 'SIGTERM' });
    assert.strictEqual(a.code, 0, a.stderr);
    assert.ok(a.at.validating2 && a.at.interrupted, a.stderr);
    const validation = since(a.at.validating1, a.at.validated1);
    const heard = since(a.at.validating2, a.at.interrupted);
    // Before, the handler ran only once the whole validation was done; now at the next batch (of 8).
    assert.ok(heard < validation / 2, `signal handled ${heard.toFixed(2)} s into a validation that takes ${validation.toFixed(2)} s`);
    assert.strictEqual(a.at.validated2, undefined, `epoch 2's validation was abandoned: ${a.stderr}`);
    const card = readCard(out);
    assert.strictEqual(card.training.epochsRun, 1, 'the epoch whose validation was cut short is not counted');
    assert.strictEqual(card.training.bestEpoch, 1);
    assert.strictEqual(card.training.interrupted, true);
    assert.strictEqual((await loadClassifier(out)).numClasses, 43);

    // SIGTERM during epoch 1's training batches: that partial epoch is still validated and saved.
    const out2 = path.join(tempDir(), 'train');
    const b = await run(out2, { training1: 'SIGTERM' });
    assert.strictEqual(b.code, 0, b.stderr);
    const order = [marks.interrupted, marks.validating1, marks.validated1].map((re) => b.stderr.search(re));
    assert.ok(order[0] >= 0 && order[0] < order[1] && order[1] < order[2], `interrupted, then validated: ${b.stderr}`);
    assert.strictEqual(readCard(out2).training.epochsRun, 1);
    assert.strictEqual((await loadClassifier(out2)).numClasses, 43);

    // The same, and a second signal while that partial epoch validates: exit 130 at the next batch.
    const out3 = path.join(tempDir(), 'twice');
    const c = await run(out3, { training1: 'SIGTERM', validating1: 'SIGINT' });
    assert.strictEqual(c.code, 130, c.stderr);
    const exited = since(c.at.validating1, c.end);
    assert.ok(exited < validation / 2, `exited ${exited.toFixed(2)} s after the second signal (validation takes ${validation.toFixed(2)} s)`);
    assert.ok(!fs.existsSync(path.join(out3, 'model.json')), 'nothing saved');
  });
});
