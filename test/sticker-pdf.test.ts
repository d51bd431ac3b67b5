/**
 * The print files: A4 pages, pieces drawn at their physical size (read back from the PDF content
 * stream), a scale bar that really is 100 mm (measured on a pdftoppm rendering when poppler is
 * installed), tiling for a real-size sign, and PNGs at print DPI.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { optimizeSticker, StickerResult } from '../src/sticker/optimize';
import { exportSticker, MM, tileRects } from '../src/sticker/pdf';
import { tempDir } from './helpers';

/** Content streams of an uncompressed PDF, concatenated. */
function contents(pdf: Buffer): string {
  return pdf.toString('latin1');
}

/** Image placements: pdfkit draws images as `w 0 0 -h x y cm` then `/In Do`. */
function imagePlacements(pdf: Buffer): { w: number; h: number }[] {
  const out: { w: number; h: number }[] = [];
  const re = /([\d.]+) 0 0 -([\d.]+) (-?[\d.]+) (-?[\d.]+) cm\s*\/I\d+ Do/g;
  for (let m = re.exec(contents(pdf)); m; m = re.exec(contents(pdf))) out.push({ w: Number(m[1]), h: Number(m[2]) });
  return out;
}

function hasPdftoppm(): boolean {
  return spawnSync('pdftoppm', ['-v']).status === 0;
}

describe('sticker: PDF and PNG export', function () {
  this.timeout(120000);
  let sticker: StickerResult;
  let sign: StickerResult;

  before(async () => {
    await initBackend();
    // Export does not care whether the attack works: an untrained model and 2 steps suffice.
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 4 });
    const clf = new LayersClassifier(model);
    sticker = await optimizeSticker(clf, { classId: 14, target: 1, steps: 2, eotSamples: 2, canvasSize: 32 });
    sign = await optimizeSticker(clf, { classId: 14, target: 1, mode: 'sign', steps: 2, eotSamples: 2, canvasSize: 32 });
    model.dispose();
  });

  it('draws every piece at its physical size on A4 pages, with a 100 mm scale bar', async () => {
    const r = await exportSticker(sticker, { signMm: 100, compress: false });
    const text = contents(r.pdf);
    const boxes = [...text.matchAll(/\/MediaBox \[([^\]]+)\]/g)].map((m) => m[1].trim().split(/\s+/).map(Number));
    assert.strictEqual(boxes.length, r.pageCount);
    for (const b of boxes) {
      assert.ok(Math.abs(b[2] - 210 * MM) < 0.5 && Math.abs(b[3] - 297 * MM) < 0.5, `MediaBox ${b}`);
    }
    // Two stripes (A, B) and, for a 100 mm desk sign, the whole sign (S).
    assert.deepStrictEqual(
      r.pieces.map((p) => p.label),
      ['A', 'B', 'S'],
    );
    const a = r.pieces[0];
    // The default stripes: 0.76 × 0.11 of the sign's size (within a cut-grid pixel).
    assert.ok(Math.abs(a.widthMm - 76) < 0.6 && Math.abs(a.heightMm - 11) < 0.6, `A is ${a.widthMm} × ${a.heightMm} mm`);
    assert.ok(Math.abs(a.xMm - 12) < 0.6 && Math.abs(a.yMm - 20) < 0.6, `A at ${a.xMm}, ${a.yMm} mm`);
    const placed = imagePlacements(r.pdf);
    const bleed = 2;
    for (const p of r.pieces) {
      const w = (p.widthMm + 2 * bleed) * MM,
        h = (p.heightMm + 2 * bleed) * MM;
      assert.ok(
        placed.some((q) => Math.abs(q.w - w) < 0.05 && Math.abs(q.h - h) < 0.05),
        `piece ${p.label}: no image of ${w} × ${h} pt in ${JSON.stringify(placed)}`,
      );
    }
    // The scale bar's outline rectangle is 100 mm = 283.46 pt wide on every page.
    const bars = [...text.matchAll(/(-?[\d.]+) (-?[\d.]+) ([\d.]+) ([\d.]+) re/g)].filter((m) => Math.abs(Number(m[3]) - 100 * MM) < 0.01);
    assert.ok(bars.length >= r.pageCount, `found ${bars.length} 100 mm rectangles on ${r.pageCount} pages`);
    assert.ok(Math.abs(100 * MM - 283.4646) < 1e-3);
  });

  it('renders with pdftoppm: the scale bar measures 100 mm and the sticker sits where it says', async function () {
    if (!hasPdftoppm()) this.skip();
    const dir = tempDir();
    const r = await exportSticker(sticker, { signMm: 100 });
    const file = path.join(dir, 's.pdf');
    fs.writeFileSync(file, r.pdf);
    // 254 dpi = 10 px per mm.
    const res = spawnSync('pdftoppm', ['-r', '254', '-f', '2', '-l', '2', '-png', file, path.join(dir, 'p')]);
    assert.strictEqual(res.status, 0, String(res.stderr));
    const png = fs.readdirSync(dir).find((f) => f.startsWith('p') && f.endsWith('.png')) as string;
    const { data, info } = await sharp(path.join(dir, png)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.ok(Math.abs(info.width - 2100) <= 1 && Math.abs(info.height - 2970) <= 1, `page ${info.width}×${info.height}`);
    const dark = (x: number, y: number) => {
      const o = 3 * (y * info.width + x);
      return data[o] + data[o + 1] + data[o + 2] < 200;
    };
    // The bar is drawn 24 mm − 6 mm above the page bottom, 3 mm tall, from x = 10 mm; the text
    // beside it starts at 114 mm, so scan up to 112 mm.
    const y = Math.round((297 - 24 + 6 + 1.5) * 10);
    let first = -1,
      last = -1;
    for (let x = 0; x < 1120; x++)
      if (dark(x, y)) {
        if (first < 0) first = x;
        last = x;
      }
    const lengthMm = (last - first + 1) / 10;
    assert.ok(Math.abs(lengthMm - 100) < 0.5, `scale bar is ${lengthMm} mm`);
    // Sticker A is the first piece on page 2: its artwork (76 × 11 mm plus 2 mm bleed each side)
    // starts 19 mm from the left and 30 mm from the top (margin + room for marks and the label).
    const row = Math.round((30 + 2 + 5.5) * 10);
    const paper = (x: number) => {
      const o = 3 * (row * info.width + x);
      return data[o] > 245 && data[o + 1] > 245 && data[o + 2] > 245;
    };
    let a0 = -1,
      a1 = -1;
    for (let x = 100; x < 1500; x++)
      if (!paper(x)) {
        if (a0 < 0) a0 = x;
        a1 = x;
      }
    assert.ok(Math.abs(a0 / 10 - 19) < 0.5, `sticker A starts at ${a0 / 10} mm`);
    assert.ok(Math.abs((a1 - a0 + 1) / 10 - 80) < 0.6, `sticker A is ${(a1 - a0 + 1) / 10} mm wide on paper`);
  });

  it("tiles a 600 mm sign's stickers over several A4 pages", async () => {
    const r = await exportSticker(sticker, { signMm: 600, compress: false, dpi: 40, embedMaxPx: 600, signPngMaxPx: 256 });
    assert.deepStrictEqual(
      r.pieces.map((p) => p.label),
      ['A', 'B'],
      'no whole-sign piece for a real-size sign',
    );
    for (const p of r.pieces) {
      assert.ok(p.widthMm > 450 && p.tiles >= 3, `piece ${p.label}: ${p.widthMm} mm in ${p.tiles} tiles`);
    }
    assert.ok(r.pageCount >= 3);
    // Tiles cover the artwork with overlaps and none exceeds the printable width.
    const t = tileRects(460, 70, 172, 220);
    assert.ok(t.length >= 3 && t.every((q) => q.w <= 172 + 1e-9));
    assert.strictEqual(t[0].x, 0);
    assert.ok(Math.abs(t[t.length - 1].x + t[t.length - 1].w - 460) < 1e-9);
    for (let i = 1; i < t.length; i++) assert.ok(t[i].x < t[i - 1].x + t[i - 1].w, 'tiles overlap');
  });

  it('writes PNGs at 300 DPI (sticker transparent outside its cut line), and a printed-sign PDF', async () => {
    const r = await exportSticker(sticker, { signMm: 100 });
    const meta = await sharp(r.stickerPng as Buffer).metadata();
    assert.strictEqual(Math.round(meta.density ?? 0), 300);
    // The two stripes' bounding box with a 2 mm margin: 80 mm wide at 300 DPI ≈ 945 px.
    assert.ok(Math.abs((meta.width as number) - (80 / 25.4) * 300) < 12, `sticker PNG ${meta.width} px wide`);
    assert.strictEqual(meta.channels, 4);
    const { data, info } = await sharp(r.stickerPng as Buffer)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const alphaAt = (x: number, y: number) => data[4 * (y * info.width + x) + 3];
    assert.strictEqual(alphaAt(5, 5), 0, 'transparent outside the cut line');
    assert.strictEqual(alphaAt(Math.round(info.width / 2), Math.round(((2 + 5.5) / 25.4) * 300)), 255, 'opaque inside stripe A');
    assert.strictEqual(alphaAt(Math.round(info.width / 2), Math.round(info.height / 2)), 0, 'transparent between the stripes');
    const s = await sharp(r.signPng).metadata();
    assert.ok(Math.abs((s.width as number) - (100 / 25.4) * 300) < 2, `sign PNG ${s.width} px`);
    const p = await exportSticker(sign, { signMm: 100, compress: false });
    assert.strictEqual(p.stickerPng, null);
    assert.deepStrictEqual(
      p.pieces.map((q) => q.label),
      ['S'],
    );
    assert.ok(Math.abs(p.pieces[0].widthMm - 100) < 0.6);
    await assert.rejects(exportSticker(sticker, { signMm: 5 }), /sign size must be 20\.\.3000 mm/);
  });
});
