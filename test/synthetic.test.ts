import * as assert from 'node:assert';
import { CLASS_NAMES, NUM_CLASSES, SIGN_SPECS, className } from '../src/data/classes';
import { createRng, hashSeed, randInt, shuffleInPlace } from '../src/data/random';
import { renderCleanSign, renderDataset, renderPreviewPng, renderSign, renderSignRGBA } from '../src/data/synthetic';
import { UserError } from '../src/data/types';

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}

function assertValidImage(img: Float32Array, size: number, what: string): void {
  assert.strictEqual(img.length, size * size * 3, `${what}: length`);
  for (let i = 0; i < img.length; i++) {
    const v = img[i];
    if (!(v >= 0 && v <= 1)) assert.fail(`${what}: value ${v} at ${i} not in [0, 1]`);
  }
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('classes', () => {
  it('has 43 names and specs', () => {
    assert.strictEqual(NUM_CLASSES, 43);
    assert.strictEqual(CLASS_NAMES.length, 43);
    assert.strictEqual(SIGN_SPECS.length, 43);
    assert.strictEqual(className(0), 'Speed limit (20km/h)');
    assert.strictEqual(className(14), 'Stop');
    assert.strictEqual(className(42), 'End of no passing by vehicles over 3.5 t');
  });

  it('className rejects out-of-range ids', () => {
    assert.throws(() => className(43), /0\.\.42.*43/);
    assert.throws(() => className(-1), /0\.\.42.*-1/);
    assert.throws(() => className(1.5), RangeError);
  });
});

describe('random', () => {
  it('is deterministic and seed dependent', () => {
    const a = createRng(7);
    const b = createRng(7);
    const c = createRng(8);
    const sa = Array.from({ length: 20 }, () => a());
    assert.deepStrictEqual(
      sa,
      Array.from({ length: 20 }, () => b()),
    );
    assert.notDeepStrictEqual(
      sa,
      Array.from({ length: 20 }, () => c()),
    );
    assert.ok(sa.every((v) => v >= 0 && v < 1));
    assert.notStrictEqual(hashSeed(1, 2), hashSeed(2, 1));
  });

  it('randInt stays in range and shuffle permutes', () => {
    const rng = createRng(3);
    for (let i = 0; i < 1000; i++) {
      const v = randInt(rng, 2, 5);
      assert.ok(Number.isInteger(v) && v >= 2 && v < 5);
    }
    const arr = Int32Array.from({ length: 50 }, (_, i) => i);
    shuffleInPlace(rng, arr);
    assert.deepStrictEqual(
      [...arr].sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.notDeepStrictEqual(
      [...arr],
      Array.from({ length: 50 }, (_, i) => i),
    );
  });
});

describe('synthetic renderer', () => {
  it('same seed gives bit-identical output, different seeds differ', () => {
    for (const c of [0, 14, 31, 40]) {
      const a = renderSign(c, { seed: 123 });
      const b = renderSign(c, { seed: 123 });
      assert.ok(bitsEqual(a, b), `class ${c}: same seed differs`);
      const d = renderSign(c, { seed: 124 });
      assert.ok(l2(a, d) > 1, `class ${c}: different seeds too similar`);
    }
    const x = renderDataset({ perClass: 6, classes: [2, 17], seed: 9 });
    const y = renderDataset({ perClass: 6, classes: [2, 17], seed: 9 });
    assert.ok(bitsEqual(x.images, y.images));
  });

  it('renders every class, augmented and clean, at several sizes', () => {
    for (let c = 0; c < NUM_CLASSES; c++) {
      for (const seed of [1, 2, 3]) assertValidImage(renderSign(c, { seed }), 32, `class ${c} seed ${seed}`);
      assertValidImage(renderSign(c, { seed: 5, size: 21, background: 'plain' }), 21, `class ${c} size 21`);
      assertValidImage(renderCleanSign(c, 32), 32, `clean ${c}`);
    }
    assertValidImage(renderSign(7, { seed: 1, size: 96 }), 96, 'size 96');
    assertValidImage(renderSign(7, { seed: 1, augment: false, background: 'random' }), 32, 'unaugmented, random background');
  });

  it('rejects bad class ids and sizes', () => {
    assert.throws(() => renderSign(43, { seed: 1 }), UserError);
    assert.throws(() => renderSign(-1, { seed: 1 }), UserError);
    assert.throws(() => renderSign(0, { seed: 1, size: 0 }), UserError);
    assert.throws(() => renderDataset({ perClass: 1, classes: [50] }), UserError);
  });

  it('clean renders of different classes are pairwise distinguishable', () => {
    const clean = Array.from({ length: NUM_CLASSES }, (_, c) => renderCleanSign(c, 32));
    for (let i = 0; i < NUM_CLASSES; i++) {
      for (let j = i + 1; j < NUM_CLASSES; j++) {
        const d = l2(clean[i], clean[j]);
        // Speed limits differ only in their digits, which must stay legible at 32 px.
        const min = i <= 8 && j <= 8 ? 3 : 1.5;
        assert.ok(d > min, `classes ${i} and ${j} too similar: L2 ${d.toFixed(2)}`);
      }
    }
  });

  it('clean renders put the sign colours where expected', () => {
    const px = (img: Float32Array, x: number, y: number): number[] => Array.from(img.subarray(3 * (y * 32 + x), 3 * (y * 32 + x) + 3));
    const stop = renderCleanSign(14, 32);
    const [r, g, b] = px(stop, 5, 16);
    assert.ok(r > 0.5 && g < 0.3 && b < 0.3, `stop sign not red: ${[r, g, b]}`);
    const ahead = renderCleanSign(35, 32);
    const [r2, g2, b2] = px(ahead, 8, 16);
    assert.ok(b2 > 0.45 && r2 < 0.25, `ahead-only not blue: ${[r2, g2, b2]}`);
    const priority = renderCleanSign(12, 32);
    const [r3, g3, b3] = px(priority, 16, 16);
    assert.ok(r3 > 0.8 && g3 > 0.6 && b3 < 0.3, `priority centre not yellow: ${[r3, g3, b3]}`);
  });

  it('renderDataset keeps labels and groups consistent', () => {
    const classes = [3, 14, 40];
    const set = renderDataset({ perClass: 7, classes, seed: 4, size: 24 });
    assert.strictEqual(set.n, 21);
    assert.strictEqual(set.size, 24);
    assert.strictEqual(set.images.length, 21 * 24 * 24 * 3);
    assert.strictEqual(set.labels.length, 21);
    assert.strictEqual(set.groups.length, 21);
    const perGroup = new Map<string, number>();
    for (let i = 0; i < set.n; i++) {
      const m = /^synthetic-(\d+)-(\d+)$/.exec(set.groups[i]);
      assert.ok(m, `bad group name ${set.groups[i]}`);
      assert.strictEqual(Number(m[1]), set.labels[i]);
      perGroup.set(set.groups[i], (perGroup.get(set.groups[i]) ?? 0) + 1);
    }
    for (const c of classes) {
      assert.strictEqual(set.labels.filter((l) => l === c).length, 7);
      assert.strictEqual(perGroup.get(`synthetic-${c}-0`), 5);
      assert.strictEqual(perGroup.get(`synthetic-${c}-1`), 2);
    }
    assert.ok(
      set.images.every((v) => v >= 0 && v <= 1),
      'dataset values in [0, 1]',
    );
    // Frames of a track resemble each other more than frames of different tracks.
    const px = 24 * 24 * 3;
    const img = (i: number): Float32Array => set.images.subarray(i * px, (i + 1) * px);
    assert.ok(l2(img(0), img(1)) < l2(img(0), img(5)) || l2(img(0), img(1)) < l2(img(0), img(7)));

    const three = renderDataset({ perClass: 7, classes: [1], groupSize: 3, augment: false });
    assert.deepStrictEqual(three.groups, [
      'synthetic-1-0',
      'synthetic-1-0',
      'synthetic-1-0',
      'synthetic-1-1',
      'synthetic-1-1',
      'synthetic-1-1',
      'synthetic-1-2',
    ]);
    assert.strictEqual(renderDataset({ perClass: 0 }).n, 0);
  });

  it('renders all 43 classes quickly', function () {
    this.timeout(20000);
    const t0 = Date.now();
    const set = renderDataset({ perClass: 10, seed: 11 });
    assert.strictEqual(set.n, 430);
    assert.deepStrictEqual(
      [...new Set(set.labels)].sort((a, b) => a - b),
      Array.from({ length: 43 }, (_, i) => i),
    );
    assert.ok(Date.now() - t0 < 10000, `430 images took ${Date.now() - t0} ms`);
  });

  it('renderSignRGBA gives a sign mask in alpha', () => {
    const { rgba, size, shape } = renderSignRGBA(17, 32);
    assert.strictEqual(size, 32);
    assert.strictEqual(shape, 'circle');
    assert.strictEqual(rgba.length, 32 * 32 * 4);
    assert.strictEqual(rgba[3], 0, 'corner should be transparent');
    const centre = 4 * (16 * 32 + 16);
    assert.strictEqual(rgba[centre + 3], 1, 'centre should be opaque');
    for (const v of rgba) assert.ok(v >= 0 && v <= 1);
    const tri = renderSignRGBA(18, 32, { margin: 0.1 });
    assert.strictEqual(tri.shape, 'triangle');
    assert.strictEqual(tri.rgba[4 * (2 * 32 + 2) + 3], 0);
  });

  it('renderPreviewPng returns a PNG', () => {
    const png = renderPreviewPng({ size: 16, labels: false });
    assert.deepStrictEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  });
});
