/**
 * `advsign sticker --photos DIR --area F [--areas LIST]` from the command line: real photos in the
 * EOT loop, split by track, measured on held-out tracks next to random noise and a uniform patch,
 * an HTML report with the area curve. Runs on a folder of "own photos" the test writes (rendered
 * signs on backgrounds, boxes.csv with tracks), and on the shared GTSRB copy when it is there.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { renderSignRGBA } from '../src/data/synthetic';
import { createRng } from '../src/data/random';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { photoScenes, renderPhotoViews, everyPhotoViews, PHOTO_EOT } from '../src/sticker/photos';
import { CLEAN_VIEW, splitRgba } from '../src/sticker/eot';
import { signCanvas } from '../src/sticker/optimize';
import { decodeImage } from '../src/data/image-io';
import { runCli, sharedGtsrb, tempDir, ROOT } from './helpers';

const MODEL = path.join(ROOT, 'models', 'gtsrb-cnn');

/** `n` photos of a stop sign (40 px in a 64 px photo, varied light and background), 3 per track, and boxes.csv. */
async function ownPhotos(dir: string, n: number): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const sign = renderSignRGBA(14, 40, { margin: 0 }).rgba;
  const rng = createRng(5);
  const rows = ['file,x1,y1,x2,y2,track'];
  for (let i = 0; i < n; i++) {
    const bg = [rng(), rng(), rng()],
      light = 0.6 + 0.4 * rng(),
      ox = 8 + Math.floor(rng() * 12),
      oy = 8 + Math.floor(rng() * 12);
    const px = Buffer.alloc(64 * 64 * 3);
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const sx = x - ox,
          sy = y - oy;
        const a = sx >= 0 && sy >= 0 && sx < 40 && sy < 40 ? sign[4 * (sy * 40 + sx) + 3] : 0;
        for (let c = 0; c < 3; c++) {
          const s = a > 0 ? sign[4 * (sy * 40 + sx) + c] : 0;
          px[3 * (y * 64 + x) + c] = Math.round(255 * light * (a * s + (1 - a) * bg[c]));
        }
      }
    }
    const name = `p${i}.png`;
    await sharp(px, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(path.join(dir, name));
    rows.push(`${name},${ox},${oy},${ox + 39},${oy + 39},t${Math.floor(i / 3)}`);
  }
  fs.writeFileSync(path.join(dir, 'boxes.csv'), rows.join('\n') + '\n');
}

describe('advsign sticker --photos', function () {
  this.timeout(180000);
  const dir = tempDir();
  const own = path.join(dir, 'own');

  before(async () => {
    await initBackend();
    await ownPhotos(own, 18);
  });

  async function fails(args: string[], message: RegExp): Promise<void> {
    const out = path.join(dir, 'bad', 'x.pdf');
    const r = await runCli(['sticker', '--sign', '14', '--target', '1', '--out', out, '--steps', '1', ...args]);
    assert.strictEqual(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
    assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(!fs.existsSync(out), 'nothing written');
  }

  it('rejects bad photo folders and areas with one line', async () => {
    await fails(['--photos', path.join(dir, 'nope')], /--photos folder not found/);
    const one = path.join(dir, 'one');
    fs.mkdirSync(one);
    fs.copyFileSync(path.join(own, 'p0.png'), path.join(one, 'a.png'));
    await fails(['--photos', one], /the photos form 1 track: at least 2 are needed to hold some out/);
    fs.writeFileSync(path.join(one, 'b.png'), 'not a png');
    await fails(['--photos', one], /b\.png/);
    const gt = path.join(dir, 'gtsrb');
    fs.mkdirSync(path.join(gt, 'Train', '1'), { recursive: true });
    fs.copyFileSync(path.join(own, 'p0.png'), path.join(gt, 'Train', '1', '00001_00000_00000.png'));
    fs.writeFileSync(path.join(gt, 'Train.csv'), 'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n64,64,8,8,47,47,1,Train/1/00001_00000_00000.png\n');
    await fails(['--photos', gt], /no photos of class 14 \(Stop\) in its train split/);
    await fails(['--area', '0.6'], /--area must be a share of the sign's area in \(0, 0\.5\]/);
    await fails(['--area', '0'], /--area must be a share/);
    await fails(['--areas', '0.05,0.1'], /--areas measures on held-out real photos: add --photos DIR/);
    await fails(['--area', '0.1', '--mask', 'rect:0.1,0.1,0.3,0.3'], /--area\/--areas size the default masks/);
    await fails(['--photos', own, '--mode', 'sign'], /--photos applies to --mode sticker only/);
  });

  it('pastes the sticker where the photo shows the sign', async () => {
    // The whole sign pasted as the "sticker" over a photo of that sign, with no jitter, gives the photo back.
    const file = path.join(own, 'p4.png');
    const image = await decodeImage(fs.readFileSync(file));
    const line = fs
      .readFileSync(path.join(own, 'boxes.csv'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('p4.png')) as string;
    const [x1, y1, x2, y2] = line.split(',').slice(1, 5).map(Number);
    const art = signCanvas(14, 64);
    const scenes = photoScenes(
      [{ file, image, roi: { x1, y1, x2, y2 }, classId: 14, group: 't1' }],
      { outputSize: 32, supersample: 2, margin: 0.1, signInBox: 1 },
      art,
    );
    const still = { ...PHOTO_EOT, ...CLEAN_VIEW, scaleRange: [1, 1] as [number, number], background: 'random' as const, outputSize: 32 };
    const views = everyPhotoViews(1, 3, 1, still);
    const { rgb, alpha } = splitRgba(art);
    const pasted = await renderPhotoViews(rgb, alpha, scenes, views, still);
    const clean = await renderPhotoViews(rgb, new Float32Array(alpha.length), scenes, views, still);
    const shifted = await renderPhotoViews(rgb, alpha, [{ ...scenes[0], cx: scenes[0].cx + 8 }], views, still);
    const mad = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
    assert.ok(mad(pasted, clean) < 0.03, `pasted sign differs from the photo by ${mad(pasted, clean).toFixed(3)}`);
    assert.ok(mad(shifted, clean) > 2 * mad(pasted, clean) + 0.02, 'a misplaced paste is visibly different');
    tf.disposeVariables();
  });

  it('optimises on training tracks, measures held-out tracks against noise and a uniform patch, writes the report', async () => {
    const out = path.join(dir, 'run', 'stop.pdf');
    const r = await runCli([
      'sticker',
      '--model',
      MODEL,
      '--sign',
      '14',
      '--photos',
      own,
      '--area',
      '0.15',
      '--areas',
      '0.05,0.15',
      '--steps',
      '25',
      '--eot-samples',
      '8',
      '--photo-share',
      '1',
      '--lr',
      '0.1',
      '--eval',
      '10',
      '--roundtrip',
      '0',
      '--skip-baseline',
      '--out',
      out,
    ]);
    assert.strictEqual(r.code, 0, r.stderr);
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'run', 'stop.json'), 'utf8'));
    assert.ok(Math.abs(s.areaFraction - 0.15) < 0.005, `area ${s.areaFraction}`);
    const p = s.realPhotos;
    assert.strictEqual(p.kind, 'own');
    assert.strictEqual(p.heldOutTracks.length + p.trainTracks.length, 6);
    assert.ok(
      p.heldOutTracks.every((t: string) => !p.trainTracks.includes(t)),
      'held-out tracks are never optimised on',
    );
    assert.strictEqual(p.photos, 3 * p.heldOutTracks.length);
    assert.strictEqual(p.sticker.views, p.photos * 4);
    for (const k of ['sticker', 'noise', 'uniform']) assert.ok(p[k].successRate >= 0 && p[k].successRate <= 1, k);
    // Untargeted: the optimised sticker beats random noise of the same area on photos it never saw.
    assert.ok(p.sticker.successRate > p.noise.successRate + 0.2, `sticker ${p.sticker.successRate} vs noise ${p.noise.successRate}`);
    assert.deepStrictEqual(
      p.areaCurve.map((q: { area: number }) => q.area),
      [0.05, s.areaFraction],
    );
    assert.strictEqual(p.byCondition.sizePx.length, 3);
    assert.match(r.stdout, /held-out real-photo success \(untargeted\), area 15\.0 %: sticker [\d.]+ %, random noise [\d.]+ %, uniform patch [\d.]+ %/);
    assert.match(r.stdout, /success against area/);
    const html = fs.readFileSync(path.join(dir, 'run', 'stop-report.html'), 'utf8');
    assert.match(html, /<svg[^>]*success against sticker area/);
    assert.strictEqual((html.match(/<img src="data:image\/png;base64,/g) ?? []).length, 3 * Math.min(6, p.photos), 'clean | sticker | noise per example');
  });

  it('takes the class and tracks from a GTSRB folder', async function () {
    const gtsrb = sharedGtsrb();
    if (!gtsrb) this.skip();
    const out = path.join(dir, 'gt', 'stop.pdf');
    const r = await runCli([
      'sticker',
      '--model',
      MODEL,
      '--sign',
      '14',
      '--target',
      '1',
      '--photos',
      gtsrb as string,
      '--area',
      '0.1',
      '--steps',
      '3',
      '--eot-samples',
      '4',
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
    const p = JSON.parse(fs.readFileSync(path.join(dir, 'gt', 'stop.json'), 'utf8')).realPhotos;
    assert.strictEqual(p.kind, 'gtsrb');
    assert.ok(p.heldOutTracks.length >= 1 && p.trainTracks.length >= 1);
    assert.ok(p.heldOutTracks.every((t: string) => t.startsWith('00014_') && !p.trainTracks.includes(t)));
    assert.ok(p.clean.accuracy > 0.8, `the model knows the held-out stop photos (${p.clean.accuracy})`);
    assert.match(r.stdout, /held-out real-photo success \(targeted\).*untargeted: sticker/);
  });
});
