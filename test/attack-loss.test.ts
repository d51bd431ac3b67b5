/**
 * Attacks never stall on confident inputs: the exact sign, the three objectives (CE, margin,
 * DLR) and CE on saturated logits, on hand-built linear models whose logit gap is chosen, and
 * `advsign attack` on a confidently classified sign through the shipped model.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { tf, signExact, Tensor1D, Tensor2D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { Classifier, LayersClassifier } from '../src/inference/model';
import { getAttack, ATTACKS } from '../src/attack/registry';
import { ascentGradient, ATTACK_LOSSES, AttackLoss, objectiveCotangent, objectiveValue } from '../src/attack/loss';
import { renderCleanSign } from '../src/data/synthetic';
import { ROOT, runCli, tempDir } from './helpers';

const S = 8;
const K = 43;

/**
 * logits = W·x + b with small random W and b putting class 0 `gap` above all others: the CE
 * input gradient is then ~e^−gap, and exactly zero in float32 once the gap passes ~100.
 */
function linearModel(gap: number, seed = 3): Classifier {
  const m = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [S, S, 3] }),
      tf.layers.dense({ units: K, kernelInitializer: tf.initializers.randomNormal({ stddev: 0.01, seed }) }),
    ],
  });
  const [w] = m.layers[1].getWeights();
  const b = new Float32Array(K);
  b[0] = gap;
  m.layers[1].setWeights([w, tf.tensor1d(b)]);
  return new LayersClassifier(m);
}

/** Pixels in [0.25, 0.75]: an eps step never reaches the [0, 1] box, so nothing is clipped. */
function midImage(n = 2): Tensor4D {
  return tf.randomUniform([n, S, S, 3], 0.25, 0.75, 'float32', 11) as Tensor4D;
}

async function maxAbsDiff(a: Tensor4D, b: Tensor4D): Promise<{ max: number; min: number }> {
  const d = tf.tidy(() => tf.abs(tf.sub(a, b)));
  const v = await d.data();
  d.dispose();
  let max = 0,
    min = Infinity;
  for (const x of v) {
    max = Math.max(max, x);
    min = Math.min(min, x);
  }
  return { max, min };
}

describe('attack objectives and the exact sign', function () {
  this.timeout(120000);
  before(async () => {
    await initBackend();
  });

  it('signExact keeps the sign of values far below FLT_EPSILON (tf.sign on wasm does not)', async () => {
    const v = tf.tensor1d([1e-20, -1e-9, 0, 2, -3e-38, 1e-7, -0]);
    assert.deepEqual(Array.from(await signExact(v).data()), [1, -1, 0, 1, -1, 1, 0]);
    v.dispose();
  });

  it('each cotangent is the gradient of its objective (central differences)', async () => {
    const n = 6,
      k = 10,
      h = 1e-2;
    const z = tf.randomNormal([n, k], 0, 3, 'float32', 5) as Tensor2D;
    const y = tf.tensor1d([0, 1, 2, 3, 4, 5], 'int32');
    const t = tf.tensor1d([9, 8, 7, 6, 5, 4], 'int32');
    for (const loss of ATTACK_LOSSES) {
      for (const targets of [null, t]) {
        const c = await objectiveCotangent(z, y, targets, loss).data();
        for (let j = 0; j < k; j++) {
          const step = tf.tidy(() => tf.mul(tf.oneHot(tf.fill([n], j, 'int32') as Tensor1D, k), h));
          const [up, down] = [tf.add(z, step), tf.sub(z, step)] as Tensor2D[];
          const [fu, fd] = [await objectiveValue(up, y, targets, loss).data(), await objectiveValue(down, y, targets, loss).data()];
          for (let i = 0; i < n; i++) {
            const fdGrad = (fu[i] - fd[i]) / (2 * h);
            assert.ok(
              Math.abs(fdGrad - c[i * k + j]) < 2e-2 * Math.max(1, Math.abs(fdGrad)),
              `${loss}${targets ? ' targeted' : ''} [${i}, ${j}]: cotangent ${c[i * k + j]}, finite difference ${fdGrad}`,
            );
          }
          tf.dispose([step, up, down]);
        }
      }
    }
    tf.dispose([z, y, t]);
  });

  it('FGSM moves every unclipped pixel by eps when the input gradient is ~1e-8', async () => {
    const model = linearModel(18);
    const x = midImage();
    const y = tf.tensor1d([0, 0], 'int32');
    const g = ascentGradient(model, x, y, null);
    const gm = await maxAbsDiff(g, tf.zerosLike(g));
    assert.ok(gm.max < 1.2e-7 && gm.max > 0, `the test needs a tiny gradient, got max |g| ${gm.max}`);
    const eps = 8 / 255;
    const r = await getAttack('fgsm').run(model, x, y, { eps });
    const d = await maxAbsDiff(r.adversarial, x);
    assert.ok(Math.abs(d.min - eps) < 1e-6 && Math.abs(d.max - eps) < 1e-6, `|δ| ranges ${d.min}…${d.max}, want exactly eps everywhere`);
    tf.dispose([x, y, g, r.adversarial]);
  });

  it('a logit gap above 100 still gets L∞ = eps from FGSM and BIM/PGD, with every loss', async () => {
    const model = linearModel(150);
    const x = midImage();
    const y = tf.tensor1d([0, 0], 'int32');
    const eps = 8 / 255;
    // The plain float32 CE gradient is exactly zero here: the reason this test exists.
    const plain = tf.grad((xx) => tf.losses.softmaxCrossEntropy(tf.oneHot(y, K), model.logits(xx as Tensor4D)))(x) as Tensor4D;
    assert.equal((await maxAbsDiff(plain, tf.zerosLike(plain))).max, 0);
    for (const loss of ATTACK_LOSSES) {
      for (const [name, extra] of [
        ['fgsm', {}],
        ['bim', { steps: 3 }],
        ['pgd', { steps: 3, randomStart: false }],
        ['mifgsm', { steps: 3 }],
        ['fgv', {}],
      ] as const) {
        const r = await getAttack(name).run(model, x, y, { eps, loss, ...extra });
        const d = await maxAbsDiff(r.adversarial, x);
        assert.ok(Math.abs(d.max - eps) < 1e-6, `${name} with ${loss}: L∞ ${d.max}, want eps`);
        if (name === 'fgsm') assert.ok(Math.abs(d.min - eps) < 1e-6, `fgsm with ${loss}: some pixels did not move (min |δ| ${d.min})`);
        r.adversarial.dispose();
      }
      const targeted = await getAttack('fgsm').run(model, x, y, { eps, loss, targeted: true, target: 5 });
      assert.ok(Math.abs((await maxAbsDiff(targeted.adversarial, x)).min - eps) < 1e-6, `targeted fgsm with ${loss} did not move every pixel`);
      targeted.adversarial.dispose();
    }
    const l2 = await getAttack('pgd-l2').run(model, x, y, { eps: 0.5, randomStart: false, steps: 3 });
    assert.ok((await maxAbsDiff(l2.adversarial, x)).max > 0, 'pgd-l2 did not move');
    tf.dispose([x, y, plain, l2.adversarial]);
  });

  it('attacks with an objective of their own refuse a loss; unknown losses are refused', async () => {
    const model = linearModel(5);
    const x = midImage(1);
    const y = tf.tensor1d([0], 'int32');
    for (const a of Object.values(ATTACKS)) {
      if (a.takesLoss) continue;
      await assert.rejects(a.run(model, x, y, { eps: 0.03, loss: 'dlr' }), /has its own objective/, a.name);
    }
    await assert.rejects(getAttack('pgd').run(model, x, y, { eps: 0.03, loss: 'hinge' as AttackLoss }), /unknown loss 'hinge'/);
    tf.dispose([x, y]);
  });

  /**
   * gtsrb-cnn with its logits scaled 20×: the same classes, far more confident. The shipped model is
   * trained with label smoothing, so its own top probability stays near 0.9 and its input gradients
   * are too large to show the sign underflow this test is about.
   */
  function confidentModel(dir: string): string {
    const src = path.join(ROOT, 'models', 'gtsrb-cnn');
    const out = path.join(dir, 'confident');
    fs.mkdirSync(out);
    const json = JSON.parse(fs.readFileSync(path.join(src, 'model.json'), 'utf8')) as { weightsManifest: { weights: { name: string; shape: number[] }[] }[] };
    const weights = json.weightsManifest[0].weights;
    const buf = fs.readFileSync(path.join(src, 'weights.bin'));
    const w = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    let at = 0;
    for (const { name, shape } of weights) {
      const n = shape.reduce((a, b) => a * b, 1);
      if (name.startsWith('logits/')) for (let i = at; i < at + n; i++) w[i] *= 20;
      at += n;
    }
    fs.copyFileSync(path.join(src, 'model.json'), path.join(out, 'model.json'));
    fs.writeFileSync(path.join(out, 'weights.bin'), Buffer.from(w.buffer));
    return out;
  }

  it('`advsign attack` moves every pixel of a confidently classified stop sign', async () => {
    const dir = tempDir();
    const model = confidentModel(dir);
    const input = path.join(dir, 'stop.png');
    const px = renderCleanSign(14, 32);
    const bytes = Buffer.from(px.map((v) => Math.round(v * 255)));
    await sharp(bytes, { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(input);
    for (const loss of ['ce', 'dlr'] as const) {
      const out = path.join(dir, `adv-${loss}.png`);
      const r = await runCli(['attack', '--model', model, '--attack', 'fgsm', '--eps', '8/255', '--loss', loss, '--input', input, '--out', out, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const res = JSON.parse(r.stdout) as { clean: { classId: number; probability: number }[]; loss: string };
      assert.equal(res.loss, loss);
      if (loss === 'ce') assert.ok(res.clean[0].classId === 14 && res.clean[0].probability > 0.9999, 'the test needs a confident stop sign');
      const adv = await sharp(out).raw().toBuffer();
      // 8-bit in, eps = 8/255: a channel moves by exactly 8 unless the [0, 255] box stops it.
      let stalled = 0;
      for (let i = 0; i < bytes.length; i++) {
        const d = Math.abs(adv[i] - bytes[i]);
        if (d !== 8 && !(adv[i] === 0 || adv[i] === 255)) stalled++;
      }
      assert.equal(stalled, 0, `${loss}: ${stalled} of ${bytes.length} channel values did not move by eps`);
    }
  });

  it('rejects --loss for attacks that have their own objective, and unknown losses', async () => {
    const dir = tempDir();
    const input = path.join(dir, 'stop.png');
    await sharp(Buffer.from(renderCleanSign(14, 32).map((v) => Math.round(v * 255))), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(input);
    const base = ['attack', '--input', input, '--out', path.join(dir, 'a.png')];
    const a = await runCli([...base, '--attack', 'deepfool', '--loss', 'dlr']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /deepfool.*own objective/);
    const b = await runCli([...base, '--loss', 'hinge']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /unknown loss 'hinge': use one of ce, margin, dlr/);
  });
});
