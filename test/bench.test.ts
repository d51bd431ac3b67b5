/**
 * `advsign bench --json`: the figures a user compares across machines are all there, positive,
 * and consistent with each other. Speed targets themselves are checked by `npm run bench`, not here.
 */
import * as assert from 'node:assert';
import { runCli } from './helpers';

describe('advsign bench', function () {
  this.timeout(300000);

  it('--json --quick --no-cpu --no-peer reports inference, training (one thread and data-parallel) and attack throughput', async () => {
    const r = await runCli(['bench', '--json', '--quick', '--no-cpu', '--no-peer']);
    assert.strictEqual(r.code, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.ok(['tensorflow', 'wasm', 'cpu'].includes(b.backend), b.backend);
    for (const k of ['inferImagesPerSecond', 'trainImagesPerSecond', 'fgsmImagesPerSecond', 'pgd10ImagesPerSecond']) {
      assert.ok(b[k].batch1 > 0 && b[k].batch64 > 0, `${k}: ${JSON.stringify(b[k])}`);
    }
    assert.ok(Math.abs(b.inferMsPerImageBatch1 - 1000 / b.inferImagesPerSecond.batch1) < 1e-6);
    // PGD-10 does ten gradient steps per image where FGSM does one.
    assert.ok(b.pgd10ImagesPerSecond.batch64 < b.fgsmImagesPerSecond.batch64);
    if (b.backend !== 'tensorflow' && b.machine.cpus > 1) {
      assert.ok(b.parallelTraining.threads >= 2 && b.parallelTraining.batch64 > 0, JSON.stringify(b.parallelTraining));
    }
    assert.ok(b.adversarialTraining, 'FGSM-RS cost figure');
    assert.strictEqual(b.autoattack, null, '--quick skips the AutoAttack run');
    // The deployed-model figures (targets: ≤ 3 ms/image, ≥ 500 queries/s, FGSM cost ≤ 1.5×; checked by npm run bench).
    const t = b.tflite;
    assert.ok(t.floatMsPerImage > 0 && t.int8MsPerImage > 0, JSON.stringify(t));
    assert.ok(t.squareQueriesPerSecondBatch64.float > 0 && t.squareQueriesPerSecondBatch64.int8 > 0, JSON.stringify(t));
    assert.ok(Math.abs(t.fgsmBatch64.costRatioFloat - t.fgsmBatch64.tfjs / t.fgsmBatch64.rebuiltFloat) < 1e-6, JSON.stringify(t.fgsmBatch64));
    assert.strictEqual(b.cpu, null);
  });
});
