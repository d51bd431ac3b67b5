/**
 * `advsign sticker --mask auto`: the optimiser chooses where the sticker goes (a whole-sign
 * sticker paying for every change, then the pixels it changed most as pieces big enough to cut).
 * The selection itself on a known score map; the command's JSON bitmap, layer PNG and area; and on
 * the shared GTSRB copy (skipped without it) that the chosen mask beats the stripes of the same
 * area on held-out real stop photos.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { selectMask } from '../src/sticker/auto-mask';
import { alphaOf, rasterizeMask } from '../src/sticker/masks';
import { signCanvas } from '../src/sticker/optimize';
import { runCli, sharedGtsrb, tempDir, ROOT } from './helpers';

const MODEL = path.join(ROOT, 'models', 'gtsrb-cnn');
const R = 64;

function block(score: Float32Array, x0: number, y0: number, w: number, h: number, v: number): void {
  for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) score[y * R + x] = v;
}

describe('advsign sticker --mask auto', function () {
  this.timeout(180000);
  const dir = tempDir();

  it('chooses the highest-scoring blobs at the area: no slivers, no holes', () => {
    const alpha = alphaOf(signCanvas(14, R));
    const signArea = alpha.reduce((s, v) => s + v, 0);
    const score = new Float32Array(R * R);
    block(score, 14, 20, 12, 12, 1); // A: the place to choose
    block(score, 19, 25, 2, 2, 0); // a hole in A
    block(score, 38, 30, 12, 12, 0.4); // B: weaker
    block(score, 16, 54, 24, 2, 1.5); // a 2 px sliver, strong but too thin to cut
    const spec = selectMask(score, alpha, R, 144 / signArea);
    assert.strictEqual(spec.kind, 'auto');
    const m = rasterizeMask(spec, R);
    const on = (x: number, y: number) => m[y * R + x] >= 0.5;
    let inA = 0,
      total = 0,
      sliver = 0;
    for (let y = 0; y < R; y++) {
      for (let x = 0; x < R; x++) {
        if (!on(x, y)) continue;
        total++;
        if (x >= 14 && x < 26 && y >= 20 && y < 32) inA++;
        if (y >= 53 && y <= 56) sliver++;
      }
    }
    // A's corners score lowest after the smoothing that turns pixels into blobs; its hole is filled.
    assert.ok(inA >= 140, `A chosen (${inA} of 144)`);
    assert.ok(on(19, 25) && on(20, 26), 'the hole in A is filled (a piece is cut along one outline)');
    assert.strictEqual(total, inA, `nothing but A at that area (${total - inA} pixels elsewhere)`);
    assert.strictEqual(sliver, 0, 'the thin sliver is not a piece');
  });

  it('writes the chosen mask into the JSON, the layer PNG and the PDF, at the area asked for', async () => {
    const out = path.join(dir, 'syn', 'stop.pdf');
    const r = await runCli([
      'sticker',
      '--model',
      MODEL,
      '--sign',
      '14',
      '--target',
      '1',
      '--mask',
      'auto',
      '--area',
      '0.08',
      '--steps',
      '6',
      '--eot-samples',
      '4',
      '--eval',
      '10',
      '--roundtrip',
      '0',
      '--skip-baseline',
      '--out',
      out,
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /choosing the mask/);
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'syn', 'stop.json'), 'utf8'));
    assert.match(s.mask, /^auto: \d+ pieces?/);
    assert.strictEqual(s.options.targetLoss, 'margin');
    assert.ok(s.areaFraction <= 0.08 + 1e-9 && s.areaFraction > 0.04, `area ${s.areaFraction}`);
    const { data, info } = await sharp(path.join(dir, 'syn', 'stop-layer.png'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.strictEqual(info.width, s.maskBitmap.size);
    const bits = (s.maskBitmap.rows as string[]).flatMap((row) => [...row].flatMap((d) => parseInt(d, 16).toString(2).padStart(4, '0').split('').map(Number)));
    let differ = 0;
    for (let i = 0; i < info.width * info.height; i++) if ((data[4 * i + 3] >= 128 ? 1 : 0) !== bits[i]) differ++;
    assert.strictEqual(differ, 0, "the JSON bitmap is the layer PNG's alpha");
    assert.ok(s.pieces.length >= 1 && s.pieces.length <= 6, `${s.pieces.length} pieces in the PDF`);
  });

  it('rejects a bad --loss with one line', async () => {
    for (const [args, msg] of [
      [['--target', '1', '--loss', 'dlr'], /unknown --loss 'dlr': use ce or margin/],
      [['--loss', 'margin'], /--loss applies to targeted stickers/],
    ] as const) {
      const r = await runCli(['sticker', '--sign', '14', '--out', path.join(dir, 'bad', 'x.pdf'), '--steps', '1', ...args]);
      assert.strictEqual(r.code, 2, r.stderr);
      assert.match(r.stderr, msg);
      assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  // Targeted (Stop → 30, issue 16's task) at 100 steps: on the cnn4-wide gtsrb-cnn a short untargeted run
  // no longer separates them (30 steps: auto 0 %, stripes 37.5 %), and the README's 600-step run takes minutes.
  it('beats the stripes of the same area on held-out real stop photos (GTSRB, targeted, 100 steps)', async function () {
    const gtsrb = sharedGtsrb();
    if (!gtsrb) this.skip();
    const run = async (mask: string) => {
      const out = path.join(dir, `gt-${mask}`, 'stop.pdf');
      const r = await runCli([
        'sticker',
        '--model',
        MODEL,
        '--sign',
        '14',
        '--target',
        '1',
        '--loss',
        'margin',
        '--photos',
        gtsrb as string,
        '--mask',
        mask,
        '--area',
        '0.1',
        '--steps',
        '100',
        '--eot-samples',
        '8',
        '--photo-share',
        '0.75',
        '--lr',
        '0.1',
        '--nps',
        '0.1',
        '--tv',
        '0.1',
        '--photo-views',
        '1',
        '--eval',
        '10',
        '--roundtrip',
        '0',
        '--skip-baseline',
        '--out',
        out,
      ]);
      assert.strictEqual(r.code, 0, r.stderr);
      return JSON.parse(fs.readFileSync(path.join(dir, `gt-${mask}`, 'stop.json'), 'utf8')).realPhotos;
    };
    const auto = await run('auto'),
      stripes = await run('stripes');
    assert.ok(
      auto.sticker.successRate > stripes.sticker.successRate + 0.08,
      `auto ${auto.sticker.successRate} vs stripes ${stripes.sticker.successRate} (targeted, held out)`,
    );
    assert.ok(auto.noise.successRate <= 0.05, `noise in the auto mask ${auto.noise.successRate}`);
  });
});
