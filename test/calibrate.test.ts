/**
 * `advsign calibrate` on synthetic photos of the calibration strip: rendered from the very layout
 * the PDF prints, with a known printer colour shift, then photographed (perspective, uneven light,
 * a white-balance cast, blur, noise, JPEG). Every patch must come back within ΔE 5 of the shifted
 * colour, and the palette it writes must load with --palette. A photo without the strip fails
 * with one line and writes nothing.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { renderStrip, deltaE } from '../src/sticker/calibration-strip';
import { homography4 } from '../src/sticker/calibrate';
import { DEFAULT_PALETTE, loadPalette, Rgb } from '../src/sticker/palette';
import { createRng } from '../src/data/random';
import { runCli, tempDir } from './helpers';

/** A printer that darkens, tints and compresses: per channel c' = black + (white − black)·c^γ. */
function printerShift(c: Rgb): Rgb {
  const black = [0.08, 0.06, 0.1],
    white = [0.92, 0.95, 0.85],
    gamma = [1.1, 1.0, 0.9];
  return c.map((v, i) => black[i] + (white[i] - black[i]) * v ** gamma[i]) as Rgb;
}

/** Photographs the strip: perspective onto a W×H frame over a dark-grey table, light falling off, cast, blur, noise. */
async function photograph(
  strip: { data: Float32Array; width: number; height: number },
  file: string,
  corners: [number, number][],
  W: number,
  H: number,
): Promise<void> {
  const h = homography4(corners, [
    [0, 0],
    [strip.width, 0],
    [strip.width, strip.height],
    [0, strip.height],
  ]);
  assert.ok(h);
  const rng = createRng(7);
  const out = Buffer.alloc(W * H * 3);
  const cast = [1.0, 0.93, 0.8];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const z = h![6] * x + h![7] * y + 1;
      const u = (h![0] * x + h![1] * y + h![2]) / z,
        v = (h![3] * x + h![4] * y + h![5]) / z;
      const ui = Math.floor(u),
        vi = Math.floor(v);
      const inside = ui >= 0 && vi >= 0 && ui < strip.width && vi < strip.height;
      const light = 0.45 + 0.5 * (x / W) * (0.6 + 0.4 * (1 - y / H)); // uneven: 0.45 … 0.95
      for (let c = 0; c < 3; c++) {
        const base = inside ? strip.data[3 * (vi * strip.width + ui) + c] : 0.25;
        const v8 = 255 * (base * light * cast[c] + 0.01 * (rng() * 2 - 1));
        out[3 * (y * W + x) + c] = Math.max(0, Math.min(255, Math.round(v8)));
      }
    }
  }
  await sharp(out, { raw: { width: W, height: H, channels: 3 } })
    .blur(1.2)
    .jpeg({ quality: 85 })
    .toFile(file);
}

describe('advsign calibrate', function () {
  this.timeout(120000);
  const dir = tempDir();
  const printed = DEFAULT_PALETTE.colors.map(printerShift);

  it('recovers every patch of a shifted, photographed strip within ΔE 5, and the palette loads', async () => {
    const strip = renderStrip(printed, 6);
    const photo = path.join(dir, 'strip.jpg');
    // A tilted phone shot: the strip's corners (with its quiet zone) as a trapezoid.
    await photograph(
      strip,
      photo,
      [
        [170, 260],
        [1420, 190],
        [1460, 720],
        [130, 610],
      ],
      1600,
      900,
    );
    const out = path.join(dir, 'palette.csv');
    const r = await runCli(['calibrate', '--photo', photo, '--out', out, '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { patches: { index: number; printed: Rgb; deltaE: number }[] };
    assert.strictEqual(report.patches.length, printed.length);
    for (const p of report.patches) {
      const e = deltaE(p.printed, printed[p.index - 1]);
      assert.ok(
        e <= 5,
        `patch ${p.index}: ΔE ${e.toFixed(2)} from the printed colour (${p.printed.map((v) => v.toFixed(3))} vs ${printed[p.index - 1].map((v) => v.toFixed(3))})`,
      );
    }
    // The shift is really there: printed vs intended differ well beyond ΔE 5 on average.
    const shift = printed.reduce((s, c, i) => s + deltaE(c, DEFAULT_PALETTE.colors[i]), 0) / printed.length;
    assert.ok(shift > 8, `the test's printer shift is only ΔE ${shift.toFixed(1)}`);
    assert.strictEqual(loadPalette(out).colors.length, printed.length);
    const table = fs.readFileSync(path.join(dir, 'palette-patches.csv'), 'utf8').trim().split('\n');
    assert.match(table[0], /^patch,intended_r,.*delta_e$/);
    assert.strictEqual(table.length, printed.length + 1);
  });

  it('reads the strip upside down too', async () => {
    const strip = renderStrip(printed, 5);
    const photo = path.join(dir, 'flipped.jpg');
    await photograph(
      strip,
      photo,
      [
        [1400, 700],
        [200, 720],
        [240, 230],
        [1380, 260],
      ],
      1600,
      900,
    );
    const r = await runCli(['calibrate', '--photo', photo, '--out', path.join(dir, 'flipped.csv'), '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { patches: { index: number; printed: Rgb }[] };
    const worst = Math.max(...report.patches.map((p) => deltaE(p.printed, printed[p.index - 1])));
    assert.ok(worst <= 5, `worst ΔE ${worst.toFixed(2)}`);
  });

  it('says so and writes nothing when the strip is not in the photo; bad input fails in one line', async () => {
    const photo = path.join(dir, 'nostrip.jpg');
    await sharp({ create: { width: 400, height: 300, channels: 3, background: '#8899aa' } })
      .jpeg()
      .toFile(photo);
    const out = path.join(dir, 'none.csv');
    const r = await runCli(['calibrate', '--photo', photo, '--out', out]);
    assert.strictEqual(r.code, 2);
    assert.match(r.stderr, /no calibration strip found in .*nostrip\.jpg: 0 of its 4 corner marks seen/);
    assert.ok(!fs.existsSync(out) && !fs.existsSync(path.join(dir, 'none-patches.csv')), 'nothing written');
    const few = path.join(dir, 'few.csv');
    fs.writeFileSync(few, '10,10,10\n200,200,200\n90,20,20\n');
    const bad = await runCli(['calibrate', '--photo', photo, '--out', out, '--palette', few]);
    assert.strictEqual(bad.code, 2);
    assert.match(bad.stderr, /palette .*few\.csv: needs at least 4 colours, found 3/);
    const noPhoto = await runCli(['calibrate', '--photo', path.join(dir, 'missing.jpg'), '--out', out]);
    assert.strictEqual(noPhoto.code, 2);
    assert.match(noPhoto.stderr, /image not found/);
    for (const res of [r, bad, noPhoto]) assert.strictEqual(res.stderr.trim().split('\n').length, 1, res.stderr);
  });
});
