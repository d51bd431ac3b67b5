/**
 * AutoAttack and its members (APGD-CE/-DLR/-T, FAB-T, Square, L∞ and L2) on a small CNN trained
 * here on synthetic signs: APGD beats PGD at equal iterations, the cascade is never weaker than a
 * member, budgets and [0, 1] hold, FAB's projections are the exact minimisers, and bad input
 * (--worst-case with one attack, eps = 0, < 10 classes, softmax models) gets clear messages.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { tf, signExact, Tensor1D, Tensor4D } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, Classifier, LayersClassifier } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { accuracy, gatherBatch, trainClassifier } from '../src/inference/train';
import { renderDataset } from '../src/data/synthetic';
import { ImageSet } from '../src/data/types';
import { getAttack } from '../src/attack/registry';
import { AttackOptions } from '../src/attack/types';
import { perturbationNorms } from '../src/attack/norms';
import { l2PerImage, predictBatch, projectL2, projectLinf } from '../src/attack/common';
import { apgdCheckpoints } from '../src/attack/apgd';
import { apgdStep } from '../src/attack/apgd-step';
import { tfObjectiveGradient, vjp } from '../src/inference/objective';
import { argsort, projectionL2, projectionLinf, projectionLinfSorted } from '../src/attack/fab-projection';
import { evaluateRobustness } from '../src/attack/evaluate';
import { runCli, tempDir } from './helpers';
import { encodePng } from '../src/data/image-io';
import * as fs from 'node:fs';

async function encodePngFile(file: string, batch: Tensor4D): Promise<void> {
  const first = batch.slice(0, 1);
  fs.writeFileSync(file, await encodePng({ data: first.dataSync() as Float32Array, width: 32, height: 32 }));
  first.dispose();
}

const CLASSES = [1, 2, 12, 13, 14, 17, 25, 33, 38, 40];
/** Cheap AutoAttack settings: the checks are about bookkeeping and ordering, not strength. */
const CHEAP: AttackOptions = { steps: 10, targetClasses: 3, maxQueries: 60 };

let model: Classifier;
let x: Tensor4D;
let y: Tensor1D;
let labels: Int32Array;

function rate(s: Uint8Array): number {
  return s.reduce((a, b) => a + b, 0) / s.length;
}

/** A random instance of FAB's projection problem with a reachable hyperplane. */
function instance(d: number, seed: number): { t: Float32Array; w: Float32Array; b: number } {
  let s = seed;
  const r = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const t = Float32Array.from({ length: d }, () => r());
  const w = Float32Array.from({ length: d }, () => (r() < 0.1 ? 0 : r() * 2 - 1));
  let wt = 0;
  for (let i = 0; i < d; i++) wt += w[i] * t[i];
  return { t, w, b: wt + (r() - 0.5) * 0.5 };
}

/** Largest change of w·z reachable from t inside the box with |d_i| ≤ δ (L∞) or ‖d‖₂ ≤ … (via λ). */
function reachLinf(t: Float32Array, w: Float32Array, delta: number, up: boolean): number {
  let s = 0;
  for (let i = 0; i < t.length; i++) {
    const dir = w[i] > 0 === up ? 1 : -1;
    const step = dir > 0 ? Math.min(delta, 1 - t[i]) : -Math.min(delta, t[i]);
    s += w[i] * step;
  }
  return s;
}

describe('AutoAttack', function () {
  this.timeout(600000);

  before(async () => {
    await initBackend();
    const train = renderDataset({ perClass: 50, size: 32, seed: 31, classes: CLASSES, augment: true });
    const test = renderDataset({ perClass: 6, size: 32, seed: 32, classes: CLASSES, augment: true });
    const r = await trainClassifier(train, test, { arch: 'cnn4-small', epochs: 5, batchSize: 32, learningRate: 2e-3, seed: 3, patience: 10, augment: false });
    model = r.classifier;
    assert.ok((await accuracy(model, test)) >= 0.4);
    const all = tf.tensor4d(test.images, [test.n, 32, 32, 3]);
    const pred = await predictBatch(model, all);
    all.dispose();
    const idx = Array.from({ length: test.n }, (_, i) => i)
      .filter((i) => pred[i] === test.labels[i])
      .slice(0, 16);
    const b = gatherBatch(test as ImageSet, idx);
    x = tf.tensor4d(b.x, [idx.length, 32, 32, 3]);
    y = tf.tensor1d(b.y, 'int32');
    labels = b.y;
  });

  after(() => tf.dispose([x, y]));

  it('APGD checkpoints follow the paper: after 22 % of the iterations, intervals shrinking by 3 % to at least 6 %', () => {
    assert.deepEqual(apgdCheckpoints(100), [22, 41, 57, 70, 80, 87, 93, 99]);
    assert.deepEqual(apgdCheckpoints(10), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('APGD step on flat rows: the same float32 values as the tfjs ops (sign or L2 direction, η, momentum, projection)', () => {
    const [n, d] = [3, 32 * 32 * 3];
    const r = (seed: number, lo: number, hi: number) => tf.tidy(() => tf.randomUniform([n, 32, 32, 3], lo, hi, 'float32', seed) as Tensor4D);
    const [xc, adv, prev] = [r(1, 0, 1), r(2, 0, 1), r(3, 0, 1)];
    // Some exact zeros in the gradient: their sign is 0, not dropped to or taken as ±1.
    const grad = tf.tidy(() => tf.mul(r(4, -1e-6, 1e-6), tf.cast(tf.greater(r(5, 0, 1), 0.1), 'float32')) as Tensor4D);
    const eta = Float32Array.of(0.03, 0.015, 0.0075);
    const rows = {
      x: xc.dataSync() as Float32Array,
      adv: adv.dataSync() as Float32Array,
      prev: prev.dataSync() as Float32Array,
      grad: grad.dataSync() as Float32Array,
      eta,
      rows: n,
    };
    for (const norm of ['linf', 'l2'] as const) {
      const eps = norm === 'linf' ? 8 / 255 : 0.5;
      for (const first of [true, false]) {
        const want = tf.tidy(() => {
          const project = (v: Tensor4D) => (norm === 'linf' ? projectLinf(v, xc, eps) : projectL2(v, xc, eps));
          const e = tf.tensor4d(eta, [n, 1, 1, 1]);
          const dir = norm === 'linf' ? signExact(grad) : tf.div(grad, tf.add(l2PerImage(grad), 1e-12));
          const z = project(tf.add(adv, tf.mul(e, dir)) as Tensor4D);
          return (first ? z : project(tf.add(tf.add(adv, tf.mul(tf.sub(z, adv), 0.75)), tf.mul(tf.sub(adv, prev), 0.25)) as Tensor4D)).dataSync();
        });
        const got = apgdStep(rows, norm, eps, 0.75, first);
        let worst = 0;
        for (let i = 0; i < n * d; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
        // L∞ exactly; L2 within float32 rounding of the norm's sum (its order may differ from the kernel's).
        assert.ok(norm === 'linf' ? worst === 0 : worst < 1e-6, `${norm}, first ${first}: largest difference ${worst}`);
      }
    }
    tf.dispose([xc, adv, prev, grad]);
  });

  it("argsort and FAB's projections: feasible, on the hyperplane, and minimal (L∞, L2)", () => {
    const v = Float64Array.from({ length: 500 }, (_, i) => Math.sin(i * 7.3));
    const order = argsort(v);
    for (let i = 1; i < v.length; i++) assert.ok(Math.fround(v[order[i - 1]]) <= Math.fround(v[order[i]]));
    for (let seed = 1; seed <= 20; seed++) {
      const { t, w, b } = instance(200, seed);
      let wt = 0;
      for (let i = 0; i < t.length; i++) wt += w[i] * t[i];
      const up = b > wt;
      const dl = projectionLinf(t, w, b);
      const d2 = projectionL2(t, w, b);
      for (const d of [dl, d2]) {
        let wz = 0;
        for (let i = 0; i < t.length; i++) {
          assert.ok(t[i] + d[i] >= -1e-6 && t[i] + d[i] <= 1 + 1e-6, 'in the box');
          wz += w[i] * (t[i] + d[i]);
        }
        if (Math.abs(reachLinf(t, w, 1, up)) >= Math.abs(b - wt)) assert.ok(Math.abs(wz - b) < 1e-4 * (1 + Math.abs(b)), `on the plane: ${wz} vs ${b}`);
      }
      // L∞: the smallest δ whose box-limited reach gets to the plane, by bisection.
      let lo = 0,
        hi = 1;
      for (let k = 0; k < 60; k++) {
        const mid = (lo + hi) / 2;
        if (Math.abs(reachLinf(t, w, mid, up)) >= Math.abs(b - wt)) hi = mid;
        else lo = mid;
      }
      const linf = Math.max(...Array.from(dl, Math.abs));
      assert.ok(Math.abs(linf - hi) < 1e-4, `L∞ ${linf} vs minimum ${hi}`);
      // L2: d_i = clip(λ w_i, −t_i, 1 − t_i) with the λ that reaches the plane is the minimiser.
      const at = (lam: number) => Array.from(t, (ti, i) => Math.min(1 - ti, Math.max(-ti, lam * w[i])));
      let l = 0,
        h = 1e6 * (up ? 1 : -1);
      for (let k = 0; k < 200; k++) {
        const mid = (l + h) / 2;
        const reach = at(mid).reduce((s, di, i) => s + w[i] * di, 0);
        if (Math.abs(reach) >= Math.abs(b - wt)) h = mid;
        else l = mid;
      }
      const best = Math.hypot(...at(h));
      assert.ok(Math.hypot(...Array.from(d2)) <= best * (1 + 1e-3) + 1e-6, `L2 ${Math.hypot(...Array.from(d2))} vs minimum ${best}`);
    }
  });

  it("FAB's L∞ projection by selection equals the reference's sort-and-bisect step (8-bit ties, planes out of reach)", () => {
    let cases = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const { t, w, b } = instance(seed % 3 === 0 ? 3072 : 300, seed);
      // 8-bit pixels make long runs of equal p, where the threshold lies inside a tie.
      if (seed % 2 === 0) for (let i = 0; i < t.length; i++) t[i] = Math.round(t[i] * 255) / 255;
      let wt = 0;
      for (let i = 0; i < t.length; i++) wt += w[i] * t[i];
      // Every fifth plane lies beyond the box's reach: both take the clipped corner step.
      for (const bb of seed % 5 === 0 ? [b, wt + 1e4] : [b]) {
        const fast = projectionLinf(t, w, bb),
          ref = projectionLinfSorted(t, w, bb);
        for (let i = 0; i < t.length; i++) assert.ok(Math.abs(fast[i] - ref[i]) <= 1e-12, `seed ${seed}, coordinate ${i}: ${fast[i]} vs ${ref[i]}`);
        cases++;
      }
    }
    assert.equal(cases, 72);
  });

  // At 25 iterations and eps where neither saturates (APGD's schedule is meant for ~100: at 5–10
  // iterations its exploratory first steps of 2·eps do not pay off yet).
  it('APGD-CE beats PGD at equal iterations (25 steps, over a range of eps)', async () => {
    let apgd = 0,
      pgd = 0;
    const log: string[] = [];
    for (const e of [9, 10, 11]) {
      const p = await getAttack('pgd').run(model, x, y, { eps: e / 255, steps: 25 });
      const a = await getAttack('apgd-ce').run(model, x, y, { eps: e / 255, steps: 25 });
      tf.dispose([p.adversarial, a.adversarial]);
      apgd += rate(a.success);
      pgd += rate(p.success);
      log.push(`${e}/255: apgd ${rate(a.success)} pgd ${rate(p.success)}`);
    }
    assert.ok(apgd > pgd, log.join('; '));
  });

  it('the cascade is never weaker than any member, and breaks every image the first member breaks', async () => {
    const eps = 2 / 255;
    const aa = await getAttack('autoattack').run(model, x, y, { ...CHEAP, eps });
    aa.adversarial.dispose();
    assert.deepEqual(
      aa.stages?.map((s) => s.attack),
      ['apgd-ce', 'apgd-t', 'fab-t', 'square'],
    );
    for (const name of ['apgd-ce', 'apgd-t', 'fab-t', 'square']) {
      const r = await getAttack(name).run(model, x, y, {
        ...CHEAP,
        eps,
        ...(name === 'square' ? { maxQueries: (CHEAP.maxQueries as number) + 2, pInit: 0.8, rescaleSchedule: false } : {}),
      });
      r.adversarial.dispose();
      assert.ok(rate(aa.success) >= rate(r.success), `autoattack ${rate(aa.success)} vs ${name} ${rate(r.success)}`);
      if (name === 'apgd-ce') r.success.forEach((s, i) => assert.ok(!s || aa.success[i], `image ${i}`));
    }
    const fooledByStages = aa.stages?.reduce((acc, s) => acc + rate(s.fooled), 0) ?? 0;
    assert.ok(Math.abs(fooledByStages - rate(aa.success)) < 1e-9, 'each broken image is credited to one member');
  });

  it('APGD-T and FAB-T attack all targets in one batch: one engine call per step, not one per target', async () => {
    const calls = { grad: 0, vjp: 0 };
    const counting: Classifier = {
      inputSize: model.inputSize,
      numClasses: model.numClasses,
      trainableWeights: model.trainableWeights,
      logits: (images, training) => model.logits(images, training),
      async objectiveGradient(images, l, t, loss) {
        calls.grad++;
        return tfObjectiveGradient(model, images, l, t, loss);
      },
      async vjp(images, c) {
        calls.vjp++;
        return vjp(model, images, c);
      },
    };
    const steps = 6,
      targetClasses = 3;
    for (const name of ['apgd-t', 'fab-t']) {
      const r = await getAttack(name).run(counting, x, y, { steps, targetClasses, eps: 1 / 255 });
      r.adversarial.dispose();
    }
    // One call for the start and one per step; targets run one after another took 3× as many.
    assert.ok(calls.grad > 0 && calls.grad <= steps + 1, `APGD-T: ${calls.grad} gradient calls for ${steps} steps`);
    assert.ok(calls.vjp > 0 && calls.vjp <= steps, `FAB-T: ${calls.vjp} gradient calls for ${steps} steps`);
  });

  for (const [name, eps] of [
    ['autoattack', 4 / 255],
    ['autoattack-l2', 0.25],
    ['apgd-dlr', 4 / 255],
    ['apgd-dlr-l2', 0.25],
    ['fab-t-l2', 0.25],
    ['square-l2', 0.25],
  ] as const) {
    it(`${name} stays within eps and [0, 1], and its success flags are honest`, async () => {
      const r = await getAttack(name).run(model, x, y, { ...CHEAP, eps });
      try {
        const norms = await perturbationNorms(x, r.adversarial);
        const limit = name.endsWith('l2') ? norms.l2 : norms.linf;
        for (const v of limit) assert.ok(v <= eps + 1e-6, `${name}: norm ${v} > ${eps}`);
        const v = await r.adversarial.data();
        for (const t of v) assert.ok(t >= 0 && t <= 1);
        const pred = await predictBatch(model, r.adversarial);
        pred.forEach((p, i) => assert.equal(r.success[i], p !== labels[i] ? 1 : 0, `image ${i}`));
        assert.ok(rate(r.success) > 0, `${name} fooled nothing`);
      } finally {
        r.adversarial.dispose();
      }
    });
  }

  it('uses the classes there are as targets when there are fewer than 10, and says so', async () => {
    const small = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 5, seed: 2 }));
    const xs = x.slice(0, 3);
    const ys = tf.tensor1d(Array.from(await predictBatch(small, xs)), 'int32');
    try {
      assert.match(getAttack('apgd-t').notes?.(small, {}).join(' ') ?? '', /5 classes, so 4 target classes instead of 9/);
      const r = await getAttack('autoattack').run(small, xs, ys, { ...CHEAP, targetClasses: 9, eps: 8 / 255 });
      r.adversarial.dispose();
      assert.equal(r.stages?.length, 4);
    } finally {
      tf.dispose([xs, ys]);
      small.model.dispose();
    }
  });

  it('refuses FAB on a softmax model, and AutoAttack runs without it, saying so', async () => {
    const base = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 2 });
    const soft = new LayersClassifier(tf.sequential({ layers: [...base.layers, tf.layers.softmax()] }), true);
    const xs = x.slice(0, 2),
      ys = y.slice(0, 2);
    try {
      await assert.rejects(getAttack('fab-t').run(soft, xs, ys, { ...CHEAP, eps: 8 / 255 }), /needs the model's logits, but this model ends in softmax/);
      assert.match(getAttack('autoattack').notes?.(soft, {}).join(' ') ?? '', /FAB-T left out/);
      const r = await getAttack('autoattack').run(soft, xs, ys, { ...CHEAP, eps: 8 / 255 });
      r.adversarial.dispose();
      assert.deepEqual(
        r.stages?.map((s) => s.attack),
        ['apgd-ce', 'apgd-t', 'square'],
      );
    } finally {
      tf.dispose([xs, ys]);
    }
  });

  it('--worst-case counts an image robust only if it survives every attack', async () => {
    const set: ImageSet = renderDataset({ perClass: 3, size: 32, seed: 33, classes: CLASSES, augment: true });
    const r = await evaluateRobustness(model, set, {
      attacks: ['fgsm', 'pgd'],
      epsList: [0, 4 / 255],
      batchSize: 16,
      worstCase: true,
      attackOptions: { pgd: { steps: 5 } },
    });
    const row = (a: string, eps: number) => r.results.find((q) => q.attack === a && q.eps === eps);
    const w = row('worst-case', 4 / 255);
    assert.ok(w);
    assert.ok(w.accuracy <= Math.min(row('fgsm', 4 / 255)?.accuracy ?? 1, row('pgd', 4 / 255)?.accuracy ?? 1));
    assert.equal(row('worst-case', 0)?.accuracy, r.clean.accuracy);
  });

  describe('from the command line', () => {
    let dir: string;
    let m: string;
    let image: string;
    before(async () => {
      dir = tempDir();
      m = path.join(dir, 'm');
      await saveModel((model as LayersClassifier).model, m);
      image = path.join(dir, 'sign.png');
      await encodePngFile(image, x);
    });

    for (const [args, pattern] of [
      [['evaluate', '--attack', 'pgd', '--worst-case'], /--worst-case needs at least two attacks \(got pgd\)/],
      [['evaluate', '--attack', 'autoattack', '--worst-case'], /autoattack already reports the worst case of its members/],
      [['evaluate', '--attack', 'fgsm,pgd-l2', '--worst-case'], /same norm/],
      [['evaluate', '--attack', 'autoattack', '--eps', '0'], /autoattack needs an eps > 0/],
      [['attack', '--attack', 'autoattack', '--eps', '0', '--out', 'y.png'], /autoattack' needs eps > 0/],
    ] as [string[], RegExp][]) {
      it(`rejects ${args.slice(0, 5).join(' ')} clearly`, async () => {
        const r = await runCli([...args, '--model', m, ...(args[0] === 'evaluate' ? ['--data', 'synthetic', '--limit', '10'] : ['--input', image])]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, pattern);
        assert.doesNotMatch(r.stderr, /\n\s+at /);
      });
    }

    it('evaluate --attack fgsm,autoattack --worst-case reports each member in cascade and the worst case', async () => {
      const r = await runCli([
        'evaluate',
        '--model',
        m,
        '--data',
        'synthetic',
        '--limit',
        '43',
        '--attack',
        'fgsm,autoattack',
        '--eps',
        '0,4/255',
        '--steps',
        '5',
        '--queries',
        '30',
        '--worst-case',
        '--json',
        '-',
        '--workers',
        '1',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      const aa = j.results.find((q: { attack: string; eps: number }) => q.attack === 'autoattack' && q.eps > 0);
      assert.deepEqual(
        aa.stages.map((s: { attack: string }) => s.attack),
        ['apgd-ce', 'apgd-t', 'fab-t', 'square'],
      );
      for (let s = 1; s < aa.stages.length; s++) assert.ok(aa.stages[s].accuracy <= aa.stages[s - 1].accuracy);
      assert.ok(Math.abs(aa.stages[3].accuracy - aa.accuracy) < 1e-9, 'the last member leaves the final accuracy');
      const wc = j.results.find((q: { attack: string; eps: number }) => q.attack === 'worst-case' && q.eps > 0);
      const fg = j.results.find((q: { attack: string; eps: number }) => q.attack === 'fgsm' && q.eps > 0);
      assert.ok(wc.accuracy <= Math.min(aa.accuracy, fg.accuracy));
    });
  });
});
