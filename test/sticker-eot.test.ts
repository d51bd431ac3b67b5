/**
 * Physical-attack building blocks without a trained model: the EOT family (range, determinism,
 * gradients, memory), masks (area, inside the sign, image masks, cut outlines) and palettes.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { applyEot, CLEAN_VIEW, DEFAULT_EOT, sampleEot, splitRgba } from '../src/sticker/eot';
import { alphaOf, components, coverage, defaultMask, loadMaskImage, maskAtArea, parseMaskSpec, rasterizeMask, requireNonEmpty } from '../src/sticker/masks';
import { DEFAULT_PALETTE, loadPalette, npsLoss, npsScore, paletteTensor } from '../src/sticker/palette';
import { signCanvas, tvScore } from '../src/sticker/optimize';
import { renderCleanSign } from '../src/data/synthetic';
import { tempDir } from './helpers';

const R = 64;

async function eotImages(seed: number, n = 6): Promise<Float32Array> {
  const { rgb, alpha } = splitRgba(signCanvas(14, R));
  const x = tf.tensor4d(rgb, [1, R, R, 3]);
  const out = applyEot(x, alpha, alpha, sampleEot(n, seed));
  const v = (await out.data()) as Float32Array;
  tf.dispose([x, out]);
  return v;
}

describe('sticker: EOT transformations', function () {
  this.timeout(60000);
  before(async () => {
    await initBackend();
  });

  it('produce images in [0, 1] of the model input size', async () => {
    const v = await eotImages(3, 8);
    assert.strictEqual(v.length, 8 * 32 * 32 * 3);
    let lo = Infinity,
      hi = -Infinity;
    for (const x of v) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    assert.ok(lo >= 0 && hi <= 1, `range ${lo}..${hi}`);
    assert.ok(hi - lo > 0.3, 'not a flat image');
  });

  it('are deterministic per seed and differ across seeds', async () => {
    const a = await eotImages(7),
      b = await eotImages(7),
      c = await eotImages(8);
    assert.deepStrictEqual(a, b);
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff += Math.abs(a[i] - c[i]);
    assert.ok(diff / a.length > 0.02, `seeds 7 and 8 give nearly the same batch (${diff / a.length})`);
    assert.deepStrictEqual(sampleEot(5, 11), sampleEot(5, 11));
    assert.notDeepStrictEqual(sampleEot(5, 11), sampleEot(5, 12));
  });

  it('sample viewing angles up to ±30° and everything else within the configured ranges', () => {
    const s = sampleEot(400, 1);
    const maxYaw = (Math.max(...s.map((q) => Math.abs(q.yaw))) * 180) / Math.PI;
    assert.ok(maxYaw > 25 && maxYaw <= 30, `max yaw ${maxYaw}`);
    for (const q of s) {
      assert.ok(q.scale >= DEFAULT_EOT.scaleRange[0] && q.scale <= DEFAULT_EOT.scaleRange[1]);
      assert.ok(q.blur >= 0 && q.blur <= DEFAULT_EOT.blurRange[1]);
      for (const c of [0, 1, 2]) assert.ok(q.printerBlack[c] >= 0 && q.printerWhite[c] <= 1);
    }
  });

  it("the clean view matches the renderer's clean sign", async () => {
    const { rgb, alpha } = splitRgba(signCanvas(14, R));
    const x = tf.tensor4d(rgb, [1, R, R, 3]);
    const out = applyEot(x, alpha, null, sampleEot(1, 0, CLEAN_VIEW), CLEAN_VIEW);
    const v = await out.data();
    const ref = renderCleanSign(14, 32);
    let err = 0;
    for (let i = 0; i < ref.length; i++) err += Math.abs(v[i] - ref[i]);
    tf.dispose([x, out]);
    assert.ok(err / ref.length < 0.06, `mean abs difference ${err / ref.length}`);
  });

  it('are differentiable with respect to the sign (gradient matches finite differences)', async () => {
    const { rgb, alpha } = splitRgba(signCanvas(14, R));
    const x = tf.tensor4d(rgb, [1, R, R, 3]);
    const samples = sampleEot(3, 5);
    const w = tf.randomNormal([3, 32, 32, 3], 0, 1, 'float32', 1);
    const f = (t: tf.Tensor) => tf.tidy(() => tf.sum(tf.mul(applyEot(t as tf.Tensor4D, alpha, alpha, samples), w)));
    const g = tf.grad(f)(x);
    const dir = tf.randomNormal([1, R, R, 3], 0, 1, 'float32', 2);
    const analytic = (await tf.sum(tf.mul(g, dir)).data())[0];
    const h = 1e-3;
    const fp = (await f(tf.add(x, tf.mul(dir, h))).data())[0],
      fm = (await f(tf.sub(x, tf.mul(dir, h))).data())[0];
    const numeric = (fp - fm) / (2 * h);
    assert.ok(Math.abs(analytic) > 1, `gradient too small: ${analytic}`);
    assert.ok(Math.abs(analytic - numeric) < 0.05 * Math.abs(analytic) + 0.5, `analytic ${analytic} vs numeric ${numeric}`);
    tf.dispose([x, w, g, dir]);
  });

  it('do not leak tensors across many batches', async () => {
    const { rgb, alpha } = splitRgba(signCanvas(1, R));
    const x = tf.tensor4d(rgb, [1, R, R, 3]);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 15; i++) {
      const g = tf.grad((t) => tf.sum(applyEot(t as tf.Tensor4D, alpha, alpha, sampleEot(2, i))))(x);
      g.dispose();
    }
    assert.strictEqual(tf.memory().numTensors, start);
    x.dispose();
  });
});

describe('sticker: masks', function () {
  this.timeout(30000);
  const alpha = alphaOf(signCanvas(14, R));

  it('rectangles and circles have the right area; everything stays inside the sign', () => {
    const rect = rasterizeMask({ kind: 'rect', rect: { x: 0.25, y: 0.25, w: 0.5, h: 0.25 } }, R);
    assert.ok(Math.abs(coverage(rect) / (R * R) - 0.125) < 1e-6, `rect area ${coverage(rect) / (R * R)}`);
    const circle = rasterizeMask({ kind: 'circle', cx: 0.5, cy: 0.5, r: 0.25 }, 128);
    assert.ok(Math.abs(coverage(circle) / (128 * 128) - Math.PI * 0.0625) < 0.005, `circle area ${coverage(circle) / (128 * 128)}`);
    for (const kind of ['stripes', 'rect', 'circle'] as const) {
      const m = rasterizeMask(defaultMask(kind), R, alpha);
      assert.ok(coverage(m) > 20, kind);
      for (let i = 0; i < m.length; i++) assert.ok(m[i] <= alpha[i] + 1e-6, `${kind} pixel ${i} outside the sign`);
    }
    // A mask hanging off the sign is clipped to it.
    const off = rasterizeMask({ kind: 'rect', rect: { x: 0, y: 0, w: 1, h: 0.2 } }, R, alpha);
    assert.ok(coverage(off) < coverage(rasterizeMask({ kind: 'rect', rect: { x: 0, y: 0, w: 1, h: 0.2 } }, R)));
  });

  it('--area sizes each default mask to the asked share of the sign, inside it', () => {
    const signArea = coverage(alpha);
    for (const kind of ['stripes', 'rect', 'circle'] as const) {
      for (const area of [0.05, 0.1, 0.2, 0.5]) {
        const m = rasterizeMask(maskAtArea(kind, area, alpha, R), R, alpha);
        assert.ok(Math.abs(coverage(m) / signArea - area) < 0.003, `${kind} at ${area}: ${coverage(m) / signArea}`);
      }
    }
    // The default stripes are the 20 %; at 10 % they stay two pieces above and below the word.
    assert.ok(Math.abs(coverage(rasterizeMask(defaultMask('stripes'), R, alpha)) / signArea - 0.2) < 0.01);
    assert.strictEqual(components(rasterizeMask(maskAtArea('stripes', 0.1, alpha, R), R, alpha), R).length, 2);
  });

  it('two stripes are two pieces, each with a closed cut outline of the right length', () => {
    const m = rasterizeMask(defaultMask('stripes'), 256, alphaOf(signCanvas(14, 256)), 2);
    const parts = components(m, 256, 10);
    assert.strictEqual(parts.length, 2);
    const circ = components(rasterizeMask({ kind: 'circle', cx: 0.5, cy: 0.5, r: 0.3 }, 256, null, 2), 256);
    assert.strictEqual(circ.length, 1);
    const line = circ[0].outlines[0];
    let len = 0;
    for (let i = 0; i < line.length; i++) {
      const [a, b] = [line[i], line[(i + 1) % line.length]];
      len += Math.hypot(b[0] - a[0], b[1] - a[1]);
    }
    assert.ok(Math.abs(len - 2 * Math.PI * 0.3) < 0.02, `outline length ${len}`);
  });

  it('reads mask images by alpha or luminance, and rejects bad ones', async () => {
    const dir = tempDir();
    const w = 40,
      h = 40;
    const lum = Buffer.alloc(w * h * 3);
    for (let y = 10; y < 20; y++) for (let x = 10; x < 30; x++) lum.fill(255, 3 * (y * w + x), 3 * (y * w + x) + 3);
    await sharp(lum, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(path.join(dir, 'lum.png'));
    const rgba = Buffer.alloc(w * h * 4);
    for (let y = 0; y < 20; y++) for (let x = 0; x < w; x++) rgba[4 * (y * w + x) + 3] = 255;
    await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .png()
      .toFile(path.join(dir, 'alpha.png'));
    const a = rasterizeMask(await loadMaskImage(path.join(dir, 'lum.png')), 40);
    assert.ok(Math.abs(coverage(a) - 200) < 10, `luminance mask area ${coverage(a)}`);
    const b = rasterizeMask(await parseMaskSpec(path.join(dir, 'alpha.png')), 40);
    assert.ok(Math.abs(coverage(b) - 800) < 20, `alpha mask area ${coverage(b)}`);
    fs.writeFileSync(path.join(dir, 'bad.png'), 'not a png');
    await assert.rejects(parseMaskSpec(path.join(dir, 'bad.png')), /mask image .*bad\.png cannot be read/);
    await assert.rejects(parseMaskSpec(path.join(dir, 'missing.png')), /mask image not found/);
    await assert.rejects(parseMaskSpec('hexagon'), /unknown mask 'hexagon'/);
    const black = Buffer.alloc(w * h * 3);
    await sharp(black, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(path.join(dir, 'empty.png'));
    const spec = await parseMaskSpec(path.join(dir, 'empty.png'));
    assert.throws(() => requireNonEmpty(rasterizeMask(spec, R, alpha), spec), /covers none of the sign/);
  });

  it('parses parameterised masks and rejects ones off the sign', async () => {
    const r = await parseMaskSpec('rect:0.1,0.2,0.3,0.4');
    assert.deepStrictEqual(r, { kind: 'rect', rect: { x: 0.1, y: 0.2, w: 0.3, h: 0.4 } });
    assert.strictEqual((await parseMaskSpec('circle:0.5,0.5,0.2')).kind, 'circle');
    await assert.rejects(parseMaskSpec('rect:0.9,0.9,0.5,0.5'), /inside the sign/);
    await assert.rejects(parseMaskSpec('rect:1,2'), /needs 4/);
  });
});

describe('sticker: palettes, NPS and TV', () => {
  it('loads measured palettes from CSV and JSON (0..255 or 0..1) with clear errors', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'p.csv'), 'name,r,g,b\nred,200,30,40\n# comment\nwhite,240,240,235\n#102030\ngrey 128 128 128\n');
    const p = loadPalette(path.join(dir, 'p.csv'));
    assert.strictEqual(p.colors.length, 4);
    assert.ok(Math.abs(p.colors[0][0] - 200 / 255) < 1e-9);
    assert.ok(Math.abs(p.colors[2][2] - 0x30 / 255) < 1e-9);
    fs.writeFileSync(path.join(dir, 'p.json'), JSON.stringify({ colors: [[0.1, 0.2, 0.3], { r: 0.5, g: 0.5, b: 0.5 }, '#ffffff', '#000000'] }));
    assert.strictEqual(loadPalette(path.join(dir, 'p.json')).colors.length, 4);
    fs.writeFileSync(path.join(dir, 'three.json'), JSON.stringify([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], '#ffffff']));
    assert.throws(() => loadPalette(path.join(dir, 'three.json')), /needs at least 4 colours, found 3/);
    fs.writeFileSync(path.join(dir, 'bad.csv'), 'r,g,b\n1,2\n');
    assert.throws(() => loadPalette(path.join(dir, 'bad.csv')), /line 2 has no r, g, b/);
    assert.throws(() => loadPalette(path.join(dir, 'nope.csv')), /palette file not found/);
    assert.ok(DEFAULT_PALETTE.colors.length >= 28 && DEFAULT_PALETTE.colors.length <= 32);
  });

  it('NPS is 0 on palette colours and matches between tensor and number forms; TV is 0 when flat', async () => {
    const pal = DEFAULT_PALETTE;
    const exact = new Float32Array(pal.colors.flat());
    assert.ok(npsScore(exact, null, pal) < 1e-6);
    const grey = new Float32Array(30).fill(0.61);
    const t = paletteTensor(pal);
    const x = tf.tensor2d(grey, [10, 3]);
    const l = npsLoss(x, t, null);
    assert.ok(Math.abs((await l.data())[0] - npsScore(grey, null, pal)) < 1e-4);
    tf.dispose([t, x, l]);
    const flat = new Float32Array(8 * 8 * 3).fill(0.3);
    assert.strictEqual(tvScore(flat, new Float32Array(64).fill(1), 8), 0);
    flat[0] = 1;
    assert.ok(tvScore(flat, new Float32Array(64).fill(1), 8) > 0);
  });
});
