/**
 * `npm run validate` (advsign validate): the shipped weights in PyTorch, compared image by image.
 * Small sets of synthetic signs keep it lean; skipped without Debian's python3-torch.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT, runCli, tempDir } from './helpers';

const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

describe('advsign validate (PyTorch reference check)', function () {
  this.timeout(240000);

  it('is what npm run validate runs', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.strictEqual(pkg.scripts.validate, 'node bin/advsign.js validate');
  });

  it('the shipped model agrees with float64 PyTorch: gradients, FGSM signs (≥ 99.9 %), PGD-10', async function () {
    if (!hasTorch) this.skip();
    const json = path.join(tempDir(), 'v.json');
    const r = await runCli(['validate', '--model', 'models/gtsrb-cnn', '--data', 'synthetic', '--n', '24', '--json', json]);
    assert.strictEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /validate: every check within float tolerance/);
    const {
      tolerances,
      models: [m],
    } = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.strictEqual(m.n, 24);
    assert.ok(m.gradient.images === 24 && m.gradient.p99RelativeError <= tolerances.gradientP99, JSON.stringify(m.gradient));
    assert.ok(m.fgsmSigns.agreement >= 0.999 && m.fgsmSigns.counted > 24 * 1000, JSON.stringify(m.fgsmSigns));
    assert.deepStrictEqual(m.failures, []);
  });

  it('fails (exit 1) when PyTorch holds other weights', async function () {
    if (!hasTorch) this.skip();
    const r = await runCli(['validate', '--model', 'models/gtsrb-cnn', '--torch-model', 'models/gtsrb-cnn-robust', '--data', 'synthetic', '--n', '8']);
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAILED: logits differ/);
    assert.match(r.stdout, /FAILED: FGSM signs agree with the float64 gradient's on/);
    assert.match(r.stdout, /validate: FAILED \(\d+ checks beyond float tolerance\)/);
  });

  it('is skipped, exit 0, without a PyTorch interpreter', async () => {
    const r = await runCli(['validate', '--model', 'models/gtsrb-cnn', '--n', '4'], { env: { ADVSIGN_PYTHON: '/nonexistent/python3' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /validate: skipped: \/nonexistent\/python3 not found/);
  });
});
