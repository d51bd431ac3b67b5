/**
 * `advsign attack` and `advsign evaluate --attack` as users call them: JSON and HTML outputs
 * with the documented shape, and clear one-line errors for bad attack arguments.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { renderSign } from '../src/data/synthetic';
import { runCli, tempDir } from './helpers';

describe('advsign attack and evaluate --attack', function () {
  this.timeout(180000);
  let dir: string;
  let modelDir: string;
  let softmaxDir: string;
  let image: string;

  before(async () => {
    await initBackend();
    dir = tempDir();
    modelDir = path.join(dir, 'm');
    await saveModel(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 2 }), modelDir);
    // The same network ending in softmax: the loader must notice and recover logits.
    const soft = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 2 });
    const withSoftmax = tf.sequential({ layers: [...soft.layers, tf.layers.softmax({ name: 'probs' })] });
    softmaxDir = path.join(dir, 'soft');
    await saveModel(withSoftmax, softmaxDir);
    // A 48×48 sign photo: the command resizes it and says so.
    const px = renderSign(14, { size: 48, seed: 5 });
    image = path.join(dir, 'stop.png');
    await sharp(Buffer.from(px.map((v) => Math.round(v * 255))), { raw: { width: 48, height: 48, channels: 3 } })
      .png()
      .toFile(image);
  });

  it('attacks one image, writes a PNG and reports predictions and norms', async () => {
    const out = path.join(dir, 'adv.png');
    const r = await runCli(['attack', '--model', modelDir, '--attack', 'fgsm', '--eps', '8/255', '--input', image, '--out', out, '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.strictEqual(res.attack, 'fgsm');
    assert.ok(Math.abs(res.eps - 8 / 255) < 1e-9);
    assert.ok(res.linf <= 8 / 255 + 1e-6, `Linf ${res.linf}`);
    assert.ok(res.l2 > 0 && res.l0 > 0);
    assert.match(res.notes.join(' '), /48×48: resized/);
    const meta = await sharp(out).metadata();
    assert.strictEqual(meta.width, 32);
    assert.strictEqual(res.clean.length, 3);
  });

  it('handles a model whose output is softmax', async () => {
    const out = path.join(dir, 'adv2.png');
    const r = await runCli(['attack', '--model', softmaxDir, '--attack', 'pgd', '--eps', '4/255', '--steps', '3', '--input', image, '--out', out, '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.ok(res.linf <= 4 / 255 + 1e-6);
    const probs = res.clean.map((p: { probability: number }) => p.probability);
    assert.ok(probs[0] <= 1 && probs[0] >= probs[1], 'probabilities are a softmax of recovered logits');
  });

  for (const [args, pattern] of [
    [['--attack', 'fgsmm'], /unknown attack 'fgsmm'.*fgsm, fgv, bim, pgd/],
    [['--eps', 'abc'], /eps 'abc' is not a number/],
    [['--eps=-0.1'], /negative/],
    [['--eps', '1.5'], /above 1/],
    [['--attack', 'pgd', '--target', '43'], /target class 43 is out of range/],
  ] as [string[], RegExp][]) {
    it(`rejects ${args.join(' ')}`, async () => {
      const r = await runCli(['attack', '--model', modelDir, '--input', image, '--out', path.join(dir, 'x.png'), ...args]);
      assert.strictEqual(r.code, 2, r.stderr);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
  }

  it('evaluate --attack writes the documented JSON and an HTML report with a plot', async () => {
    const json = path.join(dir, 'eval.json');
    const html = path.join(dir, 'report.html');
    const r = await runCli([
      'evaluate',
      '--model',
      modelDir,
      '--data',
      'synthetic',
      '--limit',
      '43',
      '--attack',
      'fgsm,pgd',
      '--eps',
      '0,4/255,8/255',
      '--steps',
      '3',
      '--json',
      json,
      '--report',
      html,
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    const rep = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.strictEqual(rep.n, 43);
    assert.ok(typeof rep.clean.accuracy === 'number');
    assert.strictEqual(rep.results.length, 6);
    for (const row of rep.results) {
      for (const k of ['attack', 'eps', 'accuracy', 'successRate', 'meanL0', 'meanL2', 'meanLinf', 'imagesPerSecond']) assert.ok(k in row, k);
      assert.ok(row.meanLinf === null || row.meanLinf <= row.eps + 1e-6);
    }
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /<svg/);
    assert.match(page, /data:image\/png;base64,/);
    assert.doesNotMatch(page, /<script src=|https?:\/\/cdn/);
  });

  it('evaluate --update-card records figures with their image count; a --limit run keeps the full-split clean figure', async () => {
    const m = path.join(dir, 'carded');
    await saveModel(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 3 }), m, {
      name: 'carded',
      architecture: 'cnn4-small',
      inputSize: 32,
      numClasses: 43,
      cleanAccuracy: { 'synthetic/test': 0.5 },
    });
    const r = await runCli([
      'evaluate',
      '--model',
      m,
      '--data',
      'synthetic',
      '--limit',
      '43',
      '--attack',
      'fgsm,pgd',
      '--steps',
      '3',
      '--restarts',
      '2',
      '--eps',
      '0,8/255',
      '--update-card',
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    const card = JSON.parse(fs.readFileSync(path.join(m, 'card.json'), 'utf8'));
    assert.strictEqual(card.name, 'carded', 'other card fields are kept');
    assert.strictEqual(card.cleanAccuracy['synthetic/test'], 0.5, 'the full-split figure is not overwritten by a 43-image run');
    assert.ok(typeof card.cleanAccuracy['synthetic/test (first 43 images)'] === 'number');
    const row = card.robustAccuracy[`fgsm@${(8 / 255).toFixed(4)}`];
    assert.strictEqual(row.n, 43);
    assert.ok(row.accuracy >= 0 && row.accuracy <= 1);
    assert.deepStrictEqual(row.settings, { loss: 'ce', steps: 1 });
    // Each figure names what produced it, defaults filled in.
    const pgd = card.robustAccuracy[`pgd@${(8 / 255).toFixed(4)}`];
    assert.match(pgd.attack, /^PGD/);
    assert.deepStrictEqual(pgd.settings, { loss: 'ce', steps: 3, restarts: 2, randomStart: true, stepSize: (2.5 * (8 / 255)) / 3 });
  });

  it('evaluate rejects an unknown attack before loading any data', async () => {
    const r = await runCli(['evaluate', '--model', modelDir, '--data', '/nonexistent', '--attack', 'nope']);
    assert.strictEqual(r.code, 2);
    assert.match(r.stderr, /unknown attack 'nope'/);
  });
});
