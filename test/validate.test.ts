/**
 * `advsign validate` (npm run validate) as a user runs it: skipped with a clear message without
 * torch; with Debian's python3-torch, a model agrees with its PyTorch twin within float tolerance,
 * and a mismatch (other weights on the PyTorch side) fails with exit 1.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { initBackend } from '../src/inference/backend';
import { buildModel } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { ROOT, runCli, tempDir } from './helpers';

const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

describe('advsign validate (PyTorch reference check)', function () {
  this.timeout(300000);
  let dir: string;
  let a: string;
  let b: string;

  before(async () => {
    await initBackend();
    dir = tempDir();
    a = path.join(dir, 'a');
    b = path.join(dir, 'b');
    await saveModel(buildModel({ arch: 'cnn4-bn', inputSize: 32, numClasses: 43, seed: 5 }), a);
    await saveModel(buildModel({ arch: 'cnn4-bn', inputSize: 32, numClasses: 43, seed: 6 }), b);
  });

  it('is skipped, saying why, when the interpreter has no torch', async () => {
    const r = await runCli(['validate', '--model', a, '--data', 'synthetic', '--n', '4'], { env: { ...process.env, ADVSIGN_PYTHON: path.join(dir, 'no-python') } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /validate: skipped: .*no-python not found.*python3-torch/);
  });

  it('npm run validate is wired to the command', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.equal(pkg.scripts.validate, 'node bin/advsign.js validate');
  });

  (hasTorch ? it : it.skip)('agrees with the same weights in PyTorch (logits, gradients, FGSM signs, PGD)', async () => {
    const json = path.join(dir, 'v.json');
    const r = await runCli(['validate', '--model', a, '--data', 'synthetic', '--n', '12', '--json', json]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /every check within float tolerance/);
    const v = JSON.parse(fs.readFileSync(json, 'utf8')).models[0];
    assert.ok(v.fgsmSigns.agreement >= 0.999, `sign agreement ${v.fgsmSigns.agreement}`);
    assert.ok(v.logits.maxRelativeError < 1e-4);
    assert.equal(v.failures.length, 0);
  });

  (hasTorch ? it : it.skip)('fails (exit 1) when the PyTorch side has other weights', async () => {
    const r = await runCli(['validate', '--model', a, '--torch-model', b, '--data', 'synthetic', '--n', '8']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAILED: logits differ/);
    assert.match(r.stdout, /validate: FAILED/);
  });
});
