/**
 * The shipped models keep what their cards claim, checked through the command a user runs:
 * gtsrb-cnn stays above 98.5 % clean, gtsrb-cnn-robust above 96 % clean and far more accurate
 * under PGD-10 at 8/255, gtsrb-cnn-certified proves what its card says and never more than PGD
 * leaves standing. Needs ../shared/data/gtsrb (skipped without it, as in a user's fresh clone).
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, runCli, sharedGtsrb, tempDir } from './helpers';

interface EvalJson {
  n: number;
  clean: { accuracy: number };
  results: { attack: string; eps: number; accuracy: number }[];
  certified?: { eps: number; accuracy: number }[];
}

describe('shipped models on GTSRB (skipped without the shared data)', function () {
  this.timeout(600000);

  it('gtsrb-cnn ≥ 98.5 % clean; gtsrb-cnn-robust ≥ 96 % clean, PGD-10 at 8/255 far above gtsrb-cnn (600 test images)', async function () {
    const data = sharedGtsrb();
    const models = ['gtsrb-cnn', 'gtsrb-cnn-robust'].map((m) => path.join(ROOT, 'models', m));
    if (!data || models.some((m) => !fs.existsSync(path.join(m, 'model.json')))) this.skip();
    const dir = tempDir();
    const figures: EvalJson[] = [];
    for (const [k, m] of models.entries()) {
      const out = path.join(dir, `${k}.json`);
      const r = await runCli(['evaluate', '--model', m, '--data', data!, '--limit', '600', '--attack', 'pgd', '--eps', '8/255', '--json', out, '--quiet']);
      assert.strictEqual(r.code, 0, r.stderr);
      figures.push(JSON.parse(fs.readFileSync(out, 'utf8')) as EvalJson);
    }
    const [plain, robust] = figures.map((f) => ({ clean: f.clean.accuracy, pgd: f.results.find((x) => x.attack === 'pgd' && x.eps > 0)!.accuracy, n: f.n }));
    assert.strictEqual(plain.n, robust.n, 'both models see the same images');
    // The cards (full Test): 99.14 % vs 97.01 % clean (the robust model kept its epoch among those
    // within 2.3 points of gtsrb-cnn on validation).
    assert.ok(plain.clean >= 0.985, `clean: gtsrb-cnn ${plain.clean}`);
    assert.ok(robust.clean >= 0.96, `clean: gtsrb-cnn-robust ${robust.clean}`);
    assert.ok(robust.pgd >= plain.pgd + 0.15, `PGD-10 at 8/255: robust ${robust.pgd}, plain ${plain.pgd}`);
    assert.ok(robust.pgd >= 0.45, `robust PGD-10 at 8/255: ${robust.pgd}`);
  });

  it('gtsrb-cnn-certified: IBP certifies ≥ 55.5 % at 2/255 with ≥ 80 % clean, and no more than survive PGD-10 (600 test images)', async function () {
    const data = sharedGtsrb();
    const model = path.join(ROOT, 'models', 'gtsrb-cnn-certified');
    if (!data || !fs.existsSync(path.join(model, 'model.json'))) this.skip();
    const out = path.join(tempDir(), 'certified.json');
    const r = await runCli([
      'evaluate',
      '--model',
      model,
      '--data',
      data!,
      '--limit',
      '600',
      '--attack',
      'pgd',
      '--eps',
      '2/255',
      '--certify',
      '--json',
      out,
      '--quiet',
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    const f = JSON.parse(fs.readFileSync(out, 'utf8')) as EvalJson;
    const certified = f.certified?.find((c) => Math.abs(c.eps - 2 / 255) < 1e-9)?.accuracy ?? NaN;
    const pgd = f.results.find((x) => x.attack === 'pgd' && x.eps > 0)!.accuracy;
    // Measured on these 600 (2026-12-03, the fine-tuned cnn2-ibp-wide): 56.0 % certified, 81.0 % clean,
    // PGD-10 66.5 %; the cnn2-ibp-wide before its fine-tune: 54.7 %, 80.2 %, 65.8 %; the narrower
    // cnn2-ibp: 50.8 %, 72.5 %, 60.8 %. Each of them fails this.
    assert.ok(certified >= 0.555, `IBP-certified at 2/255: ${certified}`);
    assert.ok(f.clean.accuracy >= 0.8, `clean: ${f.clean.accuracy}`);
    // A proof holds against every attack: more certified than PGD leaves standing is unsound.
    assert.ok(certified <= pgd, `certified ${certified} > PGD-10 ${pgd}`);
  });
});
