import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { concatSets, detectLayout, readGtsrb, readGtsrbCached, splitByGroup, subset } from '../src/data/gtsrb';
import { cropResize, decodeImage, encodePng, RgbImage, resizeRgb } from '../src/data/image-io';
import { ImageSet, UserError } from '../src/data/types';

type Rgb = [number, number, number];

/** w×h image filled with `bg`, with the inclusive rectangle (x1,y1)-(x2,y2) filled with `fg`. */
function rgbBytes(w: number, h: number, bg: Rgb, fg?: Rgb, rect?: [number, number, number, number]): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inside = rect && x >= rect[0] && x <= rect[2] && y >= rect[1] && y <= rect[3];
      const c = inside && fg ? fg : bg;
      b.set(c, (y * w + x) * 3);
    }
  }
  return b;
}

function png(bytes: Buffer, w: number, h: number, channels: 1 | 2 | 3 | 4 = 3): Promise<Buffer> {
  const s = sharp(bytes, { raw: { width: w, height: h, channels } });
  return (channels === 1 ? s.toColourspace('b-w') : s).png().toBuffer();
}

function ppm(bytes: Buffer, w: number, h: number, kind: 'P6' | 'P5' = 'P6', maxval = 255): Buffer {
  return Buffer.concat([Buffer.from(`${kind}\n# written by a test\n${w} ${h}\n${maxval}\n`, 'latin1'), bytes]);
}

const RED: Rgb = [255, 0, 0];
const BLUE: Rgb = [0, 0, 255];
const SOLID: Rgb = [200, 100, 50];

function assertAllPixels(set: ImageSet, index: number, rgb: readonly number[], tol = 1 / 255 + 1e-6): void {
  const stride = set.size * set.size * 3;
  for (let k = 0; k < stride; k++) {
    const v = set.images[index * stride + k];
    const want = rgb[k % 3] / 255;
    if (Math.abs(v - want) > tol) assert.fail(`image ${index} value ${k}: ${v} != ${want}`);
  }
}

async function rejectsUser(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'message must be one line');
    return true;
  });
}

let tmpRoot = '';
function tmp(name: string): string {
  const d = path.join(tmpRoot, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

interface KaggleRow {
  cls: number;
  track: number;
  frame: number;
  bytes: Buffer; // already-encoded PNG
  w: number;
  h: number;
  roi: [number, number, number, number];
}

function writeKaggle(dir: string, train: KaggleRow[], test: KaggleRow[]): void {
  const p5 = (n: number): string => String(n).padStart(5, '0');
  const lines = ['Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path'];
  for (const r of train) {
    const rel = `Train/${r.cls}/${p5(r.cls)}_${p5(r.track)}_${p5(r.frame)}.png`;
    fs.mkdirSync(path.join(dir, 'Train', String(r.cls)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), r.bytes);
    lines.push([r.w, r.h, ...r.roi, r.cls, rel].join(','));
  }
  fs.writeFileSync(path.join(dir, 'Train.csv'), lines.join('\n') + '\n');
  const tl = ['Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path'];
  test.forEach((r, i) => {
    const rel = `Test/${p5(i)}.png`;
    fs.mkdirSync(path.join(dir, 'Test'), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), r.bytes);
    tl.push([r.w, r.h, ...r.roi, r.cls, rel].join(','));
  });
  fs.writeFileSync(path.join(dir, 'Test.csv'), tl.join('\r\n') + '\r\n');
}

/** Repo root: the nearest folder above this file holding package.json (works from src or dist). */
function repoRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json')) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

describe('gtsrb readers', function () {
  this.timeout(20000);
  let kaggle = '';
  let official = '';

  before(async () => {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-gtsrb-'));
    // Kaggle: 3 classes × 2 tracks × 2 frames; image (cls 1, track 0, frame 0) has a red ROI on blue.
    kaggle = tmp('kaggle');
    const train: KaggleRow[] = [];
    for (const cls of [0, 1, 2]) {
      for (const track of [0, 1]) {
        for (const frame of [0, 2]) {
          if (cls === 1 && track === 0 && frame === 0) {
            const roi: [number, number, number, number] = [4, 6, 15, 17];
            train.push({ cls, track, frame, w: 30, h: 24, roi, bytes: await png(rgbBytes(30, 24, BLUE, RED, roi), 30, 24) });
          } else {
            train.push({ cls, track, frame, w: 20, h: 22, roi: [2, 2, 17, 19], bytes: await png(rgbBytes(20, 22, SOLID), 20, 22) });
          }
        }
      }
    }
    const test: KaggleRow[] = [
      { cls: 5, track: 0, frame: 0, w: 16, h: 16, roi: [1, 1, 14, 14], bytes: await png(rgbBytes(16, 16, SOLID), 16, 16) },
      { cls: 42, track: 0, frame: 0, w: 16, h: 16, roi: [1, 1, 14, 14], bytes: await png(rgbBytes(16, 16, RED), 16, 16) },
    ];
    writeKaggle(kaggle, train, test);

    // Official: Final_Training/Images/000NN/GT-000NN.csv + PPMs; Final_Test/Images + GT-final_test.csv.
    official = tmp('official');
    for (const cls of [3, 7]) {
      const cdir = path.join(official, 'GTSRB', 'Final_Training', 'Images', String(cls).padStart(5, '0'));
      fs.mkdirSync(cdir, { recursive: true });
      const lines = ['Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId'];
      for (const track of [0, 1, 2]) {
        for (const frame of [0, 1]) {
          const name = `${String(track).padStart(5, '0')}_${String(frame).padStart(5, '0')}.ppm`;
          const roi = [3, 2, 12, 11];
          const img = cls === 7 && track === 2 && frame === 1 ? rgbBytes(18, 16, BLUE, RED, [3, 2, 12, 11]) : rgbBytes(18, 16, SOLID);
          fs.writeFileSync(path.join(cdir, name), ppm(img, 18, 16));
          lines.push([name, 18, 16, ...roi, cls].join(';'));
        }
      }
      fs.writeFileSync(path.join(cdir, `GT-${String(cls).padStart(5, '0')}.csv`), lines.join('\n') + '\n');
    }
    const tdir = path.join(official, 'GTSRB', 'Final_Test', 'Images');
    fs.mkdirSync(tdir, { recursive: true });
    const tl = ['Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId'];
    fs.writeFileSync(path.join(tdir, '00000.ppm'), ppm(rgbBytes(12, 12, SOLID), 12, 12));
    tl.push('00000.ppm;12;12;1;1;10;10;9');
    // 16-bit PGM: gray 0x8000/0xffff.
    const g16 = Buffer.alloc(12 * 12 * 2);
    for (let i = 0; i < 144; i++) g16.writeUInt16BE(0x8000, 2 * i);
    fs.writeFileSync(path.join(tdir, '00001.ppm'), ppm(g16, 12, 12, 'P5', 65535));
    tl.push('00001.ppm;12;12;1;1;10;10;11');
    // Unlabelled list shipped with the images (no ClassId): must not be mistaken for labels.
    fs.writeFileSync(path.join(tdir, 'GT-final_test.test.csv'), 'Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n00000.ppm;12;12;1;1;10;10\n');
    fs.writeFileSync(path.join(tdir, 'GT-final_test.csv'), tl.join('\n') + '\n');
  });

  after(() => {
    if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
  });

  it('detects both layouts', () => {
    assert.equal(detectLayout(kaggle), 'kaggle');
    assert.equal(detectLayout(official), 'official');
  });

  it('reads the Kaggle layout: labels, groups, pixel values', async () => {
    const set = await readGtsrb(kaggle, { split: 'train', size: 8 });
    assert.equal(set.n, 12);
    assert.equal(set.size, 8);
    assert.equal(set.images.length, 12 * 8 * 8 * 3);
    assert.deepEqual([...set.labels], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert.deepEqual(set.groups.slice(0, 4), ['00000_00000', '00000_00000', '00000_00001', '00000_00001']);
    assert.equal(new Set(set.groups).size, 6);
    assertAllPixels(set, 0, SOLID);
    // Every value is a multiple of 1/255 (documented rounding).
    for (let i = 0; i < set.images.length; i += 97) assert.equal(Math.fround(Math.round(set.images[i] * 255) / 255), set.images[i]);

    const test = await readGtsrb(kaggle, { split: 'test', size: 5 });
    assert.deepEqual([...test.labels], [5, 42]);
    assert.deepEqual(test.groups, ['test:Test/00000.png', 'test:Test/00001.png']);
    assertAllPixels(test, 0, SOLID);
    assertAllPixels(test, 1, RED);
  });

  it('crops the ROI: red inside, blue outside', async () => {
    const exact = await readGtsrb(kaggle, { split: 'train', size: 16, margin: 0 });
    assertAllPixels(exact, 4, RED, 0);
    // With a margin the border shows some blue but the centre stays red.
    const wide = await readGtsrb(kaggle, { split: 'train', size: 16, margin: 0.25 });
    const s = 16;
    const px = (x: number, y: number): number[] => [...wide.images.subarray((4 * s * s + y * s + x) * 3, (4 * s * s + y * s + x) * 3 + 3)];
    assert.deepEqual(px(8, 8), [1, 0, 0]);
    assert.deepEqual(px(0, 0), [0, 0, 1]);
    assert.deepEqual(px(15, 15), [0, 0, 1]);
  });

  it('reads the official layout (PPM, semicolon CSVs, groups from tracks)', async () => {
    const set = await readGtsrb(official, { split: 'train', size: 6, margin: 0 });
    assert.equal(set.n, 12);
    assert.deepEqual([...set.labels], [3, 3, 3, 3, 3, 3, 7, 7, 7, 7, 7, 7]);
    assert.deepEqual(set.groups.slice(0, 3), ['00003_00000', '00003_00000', '00003_00001']);
    assert.equal(new Set(set.groups).size, 6);
    assertAllPixels(set, 0, SOLID);
    assertAllPixels(set, 11, RED, 0);

    const test = await readGtsrb(official, { split: 'test', size: 4 });
    assert.deepEqual([...test.labels], [9, 11]);
    assert.deepEqual(test.groups, ['test:00000.ppm', 'test:00001.ppm']);
    assertAllPixels(test, 0, SOLID);
    assertAllPixels(test, 1, [128, 128, 128]);
  });

  it('finds official test images when the labelled CSV is stored apart from them', async () => {
    const dir = tmp('official-apart');
    fs.cpSync(official, dir, { recursive: true });
    const imgs = path.join(dir, 'GTSRB', 'Final_Test', 'Images');
    fs.renameSync(path.join(imgs, 'GT-final_test.csv'), path.join(dir, 'GT-final_test.csv'));
    const test = await readGtsrb(dir, { split: 'test', size: 4 });
    assert.deepEqual([...test.labels], [9, 11]);
  });

  it('limit takes a deterministic subset covering every class', async () => {
    const a = await readGtsrb(kaggle, { split: 'train', size: 4, limit: 5 });
    const b = await readGtsrb(kaggle, { split: 'train', size: 4, limit: 5 });
    assert.equal(a.n, 5);
    assert.deepEqual(a.groups, b.groups);
    assert.deepEqual(new Set(a.labels), new Set([0, 1, 2]));
    const two = await readGtsrb(kaggle, { split: 'train', size: 4, limit: 2 });
    assert.equal(two.n, 2);
  });

  it('reports progress and keeps order with any concurrency', async () => {
    const seen: number[] = [];
    const a = await readGtsrb(kaggle, {
      split: 'train',
      size: 4,
      concurrency: 1,
      onProgress: (d, t) => {
        assert.equal(t, 12);
        seen.push(d);
      },
    });
    const b = await readGtsrb(kaggle, { split: 'train', size: 4, concurrency: 5 });
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(a, b);
  });

  describe('decoding', () => {
    it('replicates grayscale PNG and PGM into 3 channels', async () => {
      const gray = await png(Buffer.alloc(6 * 4, 77), 6, 4, 1);
      assert.equal((await sharp(gray).metadata()).channels, 1);
      const img = await decodeImage(gray, 'gray.png');
      assert.equal(img.data.length, 6 * 4 * 3);
      for (const v of img.data) assert.ok(Math.abs(v - 77 / 255) < 1e-6);
      const pgm = await decodeImage(ppm(Buffer.alloc(6, 51), 3, 2, 'P5'), 'g.pgm');
      assert.deepEqual(
        [...pgm.data.subarray(0, 3)].map((v) => Math.round(v * 255)),
        [51, 51, 51],
      );
    });

    it('flattens RGBA onto black', async () => {
      const rgba = Buffer.alloc(4 * 2 * 4);
      for (let i = 0; i < 8; i++) rgba.set(i < 4 ? [10, 20, 30, 255] : [255, 255, 255, 0], i * 4);
      const img = await decodeImage(await png(rgba, 4, 2, 4), 'rgba.png');
      assert.deepEqual(
        [...img.data.subarray(0, 3)].map((v) => Math.round(v * 255)),
        [10, 20, 30],
      );
      assert.deepEqual([...img.data.subarray(4 * 3, 4 * 3 + 3)], [0, 0, 0]);
    });

    it('reads 8-bit PPM with maxval < 255 and 16-bit PPM', async () => {
      const a = await decodeImage(ppm(Buffer.from([15, 0, 5]), 1, 1, 'P6', 15));
      assert.deepEqual([...a.data], [1, 0, 1 / 3].map(Math.fround));
      const b16 = Buffer.alloc(6);
      b16.writeUInt16BE(65535, 0);
      b16.writeUInt16BE(0, 2);
      b16.writeUInt16BE(257, 4);
      const b = await decodeImage(ppm(b16, 1, 1, 'P6', 65535));
      assert.deepEqual([...b.data], [1, 0, 257 / 65535].map(Math.fround));
    });

    it('round-trips through encodePng', async () => {
      const img: RgbImage = { width: 3, height: 2, data: new Float32Array(18).map((_, i) => (i * 13) / 255) };
      const back = await decodeImage(await encodePng(img), 'rt.png');
      assert.deepEqual(back, img);
    });

    it('gives clear one-line errors for bad image bytes', async () => {
      const good = await png(rgbBytes(40, 30, RED), 40, 30);
      await rejectsUser(decodeImage(Buffer.from('not an image at all'), 'x.png'), /^x\.png: not an image/);
      await rejectsUser(decodeImage(good.subarray(0, good.length - 30), 'cut.png'), /^cut\.png: .*(truncated|corrupt)/);
      await rejectsUser(decodeImage(Buffer.alloc(0), 'empty.png'), /empty\.png: empty file/);
      await rejectsUser(decodeImage(ppm(Buffer.alloc(10), 4, 4), 'cut.ppm'), /cut\.ppm: truncated PPM \(expected 48 bytes/);
      await rejectsUser(decodeImage(Buffer.from('P6\n4 '), 'head.ppm'), /head\.ppm: truncated PPM header/);
      await rejectsUser(decodeImage(ppm(Buffer.alloc(0), 0, 4), 'zero.ppm'), /zero\.ppm: image has zero size/);
      await rejectsUser(decodeImage(Buffer.from('P3\n1 1\n255\n0 0 0\n'), 'ascii.ppm'), /only binary PPM\/PGM/);
    });
  });

  describe('resampling', () => {
    it('area-averages when shrinking and keeps constants when enlarging', () => {
      const data = new Float32Array(4 * 4 * 3);
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) data.fill((y * 4 + x) / 16, (y * 4 + x) * 3, (y * 4 + x) * 3 + 3);
      const small = resizeRgb({ data, width: 4, height: 4 }, 2, 2);
      const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length / 16;
      assert.ok(Math.abs(small.data[0] - mean([0, 1, 4, 5])) < 1e-6);
      assert.ok(Math.abs(small.data[9] - mean([10, 11, 14, 15])) < 1e-6);
      const big = resizeRgb({ data: new Float32Array(2 * 3 * 3).fill(0.25), width: 2, height: 3 }, 7, 5);
      for (const v of big.data) assert.ok(Math.abs(v - 0.25) < 1e-6);
      // A horizontal ramp enlarged stays monotonic.
      const ramp = resizeRgb({ data: new Float32Array([0, 0, 0, 1, 1, 1]), width: 2, height: 1 }, 6, 1);
      for (let x = 1; x < 6; x++) assert.ok(ramp.data[x * 3] >= ramp.data[(x - 1) * 3]);
    });

    it('cropResize with a null ROI uses the whole image', () => {
      const img: RgbImage = { data: new Float32Array(rgbBytes(10, 10, BLUE, RED, [0, 0, 4, 9])).map((v) => v / 255), width: 10, height: 10 };
      const out = cropResize(img, null, 2, 0);
      assert.deepEqual([...out], [1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]);
    });
  });

  describe('errors', () => {
    it('missing, empty and unrecognised folders', async () => {
      await rejectsUser(readGtsrb(path.join(tmpRoot, 'nope'), { split: 'train', size: 8 }), /not found.*nope/);
      await rejectsUser(readGtsrb(tmp('empty'), { split: 'train', size: 8 }), /empty/);
      const other = tmp('other');
      fs.writeFileSync(path.join(other, 'readme.txt'), 'hi');
      assert.throws(() => detectLayout(other), /not a GTSRB folder/);
    });

    /** Copy of the Kaggle set with Train.csv replaced. */
    function kaggleWithCsv(name: string, csv: string): string {
      const dir = tmp(name);
      fs.cpSync(kaggle, dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'Train.csv'), csv);
      return dir;
    }

    it('a CSV row naming a missing file', async () => {
      const dir = kaggleWithCsv(
        'missing-file',
        'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n20,22,2,2,17,19,0,Train/0/00000_00000_00000.png\n20,22,2,2,17,19,0,Train/0/gone.png\n',
      );
      await rejectsUser(readGtsrb(dir, { split: 'train', size: 8 }), /Train\.csv:3: image not found: .*gone\.png/);
    });

    it('a non-image file with .png extension and a truncated PNG', async () => {
      const dir = kaggleWithCsv('bad-png', 'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n20,22,2,2,17,19,0,Train/0/fake.png\n');
      fs.writeFileSync(path.join(dir, 'Train/0/fake.png'), 'hello, I am text');
      await rejectsUser(readGtsrb(dir, { split: 'train', size: 8 }), /fake\.png.*line 2.*not an image/);
      const good = fs.readFileSync(path.join(kaggle, 'Train/0/00000_00000_00000.png'));
      fs.writeFileSync(path.join(dir, 'Train/0/fake.png'), good.subarray(0, good.length - 20));
      await rejectsUser(readGtsrb(dir, { split: 'train', size: 8 }), /fake\.png.*(truncated|corrupt)/);
    });

    it('a truncated PPM in the official layout', async () => {
      const dir = tmp('bad-ppm');
      fs.cpSync(official, dir, { recursive: true });
      const f = path.join(dir, 'GTSRB/Final_Training/Images/00003/00001_00001.ppm');
      fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 100));
      await rejectsUser(readGtsrb(dir, { split: 'train', size: 8 }), /00001_00001\.ppm.*truncated PPM/);
    });

    it('bad headers and bad ClassId', async () => {
      const noCls = kaggleWithCsv('no-class', 'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,Label,Path\n20,22,2,2,17,19,0,Train/0/00000_00000_00000.png\n');
      await rejectsUser(readGtsrb(noCls, { split: 'train', size: 8 }), /Train\.csv: missing column "ClassId"/);
      const emptyCsv = kaggleWithCsv('empty-csv', '\n');
      await rejectsUser(readGtsrb(emptyCsv, { split: 'train', size: 8 }), /empty CSV/);
      const hdr = 'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n';
      for (const bad of ['43', '-1', '1.5', 'x']) {
        const d = kaggleWithCsv(`bad-class-${bad}`, `${hdr}20,22,2,2,17,19,${bad},Train/0/00000_00000_00000.png\n`);
        await rejectsUser(readGtsrb(d, { split: 'train', size: 8 }), /Train\.csv:2: bad ClassId/);
      }
      const short = kaggleWithCsv('short-row', `${hdr}20,22,2,2\n`);
      await rejectsUser(readGtsrb(short, { split: 'train', size: 8 }), /Train\.csv:2: expected 8 fields/);
      const badRoi = kaggleWithCsv('bad-roi', `${hdr}20,22,9,2,3,19,0,Train/0/00000_00000_00000.png\n`);
      await rejectsUser(readGtsrb(badRoi, { split: 'train', size: 8 }), /Train\.csv:2: empty ROI/);
    });

    it('official test CSV without ClassId', async () => {
      const dir = tmp('official-unlabelled');
      fs.cpSync(official, dir, { recursive: true });
      fs.rmSync(path.join(dir, 'GTSRB/Final_Test/Images/GT-final_test.csv'));
      await rejectsUser(readGtsrb(dir, { split: 'test', size: 8 }), /no ClassId column/);
    });
  });

  describe('sets', () => {
    /** 5 classes; class c has c+1 groups of 3 images each. */
    function synthetic(): ImageSet {
      const labels: number[] = [];
      const groups: string[] = [];
      for (let c = 0; c < 5; c++)
        for (let g = 0; g <= c; g++)
          for (let f = 0; f < 3; f++) {
            labels.push(c);
            groups.push(`${c}_${g}`);
          }
      const n = labels.length;
      const images = new Float32Array(n * 2 * 2 * 3).map((_, i) => Math.floor(i / 12) / n);
      return { images, labels: Int32Array.from(labels), groups, size: 2, n };
    }

    it('splitByGroup never cuts a group, covers classes and is deterministic', () => {
      const set = synthetic();
      for (const seed of [1, 2, 3, 99]) {
        const { train, val } = splitByGroup(set, 0.3, seed);
        assert.equal(train.n + val.n, set.n);
        const tg = new Set(train.groups);
        for (const g of val.groups) assert.ok(!tg.has(g), `group ${g} in both parts`);
        // Classes with >= 2 groups have validation and training groups.
        for (let c = 1; c < 5; c++) {
          assert.ok(val.labels.includes(c), `class ${c} missing from val`);
          assert.ok(train.labels.includes(c), `class ${c} missing from train`);
        }
        assert.ok(!val.labels.includes(0)); // one group only: stays in train
        const again = splitByGroup(set, 0.3, seed);
        assert.deepEqual(again, { train, val });
      }
      const seeds = new Set([1, 2, 3, 4, 5, 6].map((s) => splitByGroup(set, 0.3, s).val.groups.join()));
      assert.ok(seeds.size > 1, 'seed should change the split');
      assert.equal(splitByGroup(set, 0, 1).val.n, 0);
      assert.throws(() => splitByGroup(set, 1, 1), UserError);
    });

    it('subset and concatSets copy images, labels and groups', () => {
      const set = synthetic();
      const a = subset(set, [3, 0]);
      assert.deepEqual([...a.labels], [set.labels[3], set.labels[0]]);
      assert.deepEqual([...a.images.subarray(0, 12)], [...set.images.subarray(36, 48)]);
      const b = concatSets(a, subset(set, [5]));
      assert.equal(b.n, 3);
      assert.deepEqual(b.groups, [set.groups[3], set.groups[0], set.groups[5]]);
      assert.deepEqual([...b.images.subarray(24, 36)], [...set.images.subarray(60, 72)]);
      assert.throws(() => subset(set, [set.n]), RangeError);
      assert.throws(() => concatSets(a, { ...a, size: 3 }), UserError);
    });
  });

  describe('cache', () => {
    it('round-trips bit-identically and rebuilds a corrupt file', async () => {
      const cacheDir = tmp('cache');
      const opts = { split: 'train' as const, size: 8, margin: 0.1 };
      const direct = await readGtsrb(kaggle, opts);
      let calls = 0;
      const count = (): void => {
        calls++;
      };
      const miss = await readGtsrbCached(kaggle, { ...opts, onProgress: count }, cacheDir);
      assert.equal(calls, 12);
      const files = fs.readdirSync(cacheDir);
      assert.equal(files.length, 1);
      assert.ok(files[0].endsWith('.bin'));
      calls = 0;
      const hit = await readGtsrbCached(kaggle, { ...opts, onProgress: count }, cacheDir);
      assert.equal(calls, 1, 'a hit reports progress once');
      assert.deepEqual(miss, direct);
      assert.deepEqual(hit, direct);
      assert.ok(Buffer.from(hit.images.buffer).equals(Buffer.from(direct.images.buffer)));

      // Flip one pixel byte, then truncate: both are detected and rebuilt.
      const f = path.join(cacheDir, files[0]);
      const buf = fs.readFileSync(f);
      buf[buf.length - 5] ^= 0xff;
      fs.writeFileSync(f, buf);
      calls = 0;
      assert.deepEqual(await readGtsrbCached(kaggle, { ...opts, onProgress: count }, cacheDir), direct);
      assert.equal(calls, 12, 'corrupt cache must be rebuilt');
      fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 40));
      assert.deepEqual(await readGtsrbCached(kaggle, opts, cacheDir), direct);
      assert.deepEqual(fs.readFileSync(f).length, buf.length);

      // Other options use another entry.
      const other = await readGtsrbCached(kaggle, { ...opts, size: 4 }, cacheDir);
      assert.equal(other.size, 4);
      assert.equal(fs.readdirSync(cacheDir).filter((x) => x.endsWith('.bin')).length, 2);
      assert.equal(fs.readdirSync(cacheDir).filter((x) => x.endsWith('.tmp')).length, 0);
    });

    it('a changed CSV invalidates the cache', async () => {
      const dir = tmp('cache-src');
      fs.cpSync(kaggle, dir, { recursive: true });
      const cacheDir = tmp('cache2');
      const before = await readGtsrbCached(dir, { split: 'train', size: 4 }, cacheDir);
      const csv = path.join(dir, 'Train.csv');
      const lines = fs.readFileSync(csv, 'utf8').trim().split('\n');
      fs.writeFileSync(csv, lines.slice(0, -1).join('\n') + '\n');
      const after = await readGtsrbCached(dir, { split: 'train', size: 4 }, cacheDir);
      assert.equal(before.n, 12);
      assert.equal(after.n, 11);
    });
  });

  it('reads a subset of the real GTSRB copy when present', async function () {
    const real = process.env.ADVSIGN_GTSRB || path.resolve(repoRoot(), '..', 'shared', 'data', 'gtsrb');
    if (!fs.existsSync(path.join(real, 'Train.csv'))) this.skip();
    const set = await readGtsrb(real, { split: 'train', size: 32, limit: 200 });
    assert.equal(set.n, 200);
    assert.equal(new Set(set.labels).size, 43);
    for (const g of set.groups) assert.match(g, /^\d{5}_\d{5}$/);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of set.images) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    assert.ok(lo >= 0 && hi <= 1 && hi > lo);
    const { train, val } = splitByGroup(set, 0.2, 7);
    const tg = new Set(train.groups);
    assert.ok(val.groups.every((g) => !tg.has(g)));
  });
});
