/**
 * The wasm gradient kernels registered by advsign are checked against tfjs's reference cpu
 * backend: each gradient is computed on both and must agree to float32 rounding.
 */
import * as assert from 'node:assert';
import { tf } from '../src/inference/tf';
import { initBackend, switchBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';

type Shape4 = [number, number, number, number];

/** Runs `f` on cpu and wasm with the same inputs and returns the largest relative difference. */
async function compare(inputs: tf.Tensor[], f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<number> {
  const values = await Promise.all(inputs.map(async (t) => ({ data: await t.data(), shape: t.shape, dtype: t.dtype })));
  const results: Float32Array[][] = [];
  for (const b of ['cpu', 'wasm'] as const) {
    await switchBackend(b);
    const xs = values.map((v) => tf.tensor(v.data, v.shape, v.dtype));
    const out = f(...xs);
    const outs = Array.isArray(out) ? out : [out];
    results.push(await Promise.all(outs.map(async (o) => (await o.data()) as Float32Array)));
    tf.dispose([...xs, ...outs]);
  }
  let worst = 0;
  results[0].forEach((ref, k) => {
    const got = results[1][k];
    assert.strictEqual(got.length, ref.length);
    let scale = 1e-3;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ref[i] - got[i]) / scale);
  });
  return worst;
}

describe('wasm gradient kernels match the cpu backend', function () {
  this.timeout(60000);
  before(async () => {
    await initBackend('wasm');
  });
  after(async () => {
    await switchBackend('wasm');
  });

  const cases: { x: Shape4; f: Shape4; s: number | [number, number]; p: 'same' | 'valid' | number }[] = [
    { x: [2, 9, 9, 3], f: [3, 3, 3, 4], s: 1, p: 'same' },
    { x: [2, 9, 9, 3], f: [3, 3, 3, 4], s: 2, p: 'same' },
    { x: [2, 10, 10, 3], f: [3, 3, 3, 4], s: 2, p: 'same' },
    { x: [2, 10, 11, 3], f: [5, 3, 3, 2], s: [2, 3], p: 'valid' },
    { x: [1, 8, 8, 2], f: [2, 2, 2, 3], s: 2, p: 'valid' },
    { x: [3, 7, 7, 2], f: [3, 3, 2, 3], s: 1, p: 1 },
    { x: [2, 12, 12, 3], f: [4, 4, 3, 2], s: 3, p: 'same' },
    { x: [4, 32, 32, 8], f: [3, 3, 8, 16], s: 1, p: 'same' },
  ];
  for (const c of cases) {
    it(`conv2d x=${c.x} filter=${c.f} stride=${c.s} pad=${c.p}: dx and dW`, async () => {
      const x = tf.randomNormal(c.x, 0, 1, 'float32', 1);
      const w = tf.randomNormal(c.f, 0, 1, 'float32', 2);
      const err = await compare([x, w], (a, b) =>
        tf.grads((xa: tf.Tensor, wa: tf.Tensor) =>
          tf
            .conv2d(xa as tf.Tensor4D, wa as tf.Tensor4D, c.s, c.p)
            .square()
            .sum(),
        )([a, b]),
      );
      tf.dispose([x, w]);
      assert.ok(err < 1e-5, `relative difference ${err}`);
    });
  }

  // wasm has no DepthwiseConv2dNativeBackpropInput at all (gradients through a rebuilt TFLite graph need it).
  for (const [x, f, s, p] of [
    [[2, 9, 9, 3], [3, 3, 3, 2], 1, 'same'],
    [[2, 12, 10, 4], [3, 3, 4, 1], 2, 'same'],
    [[1, 11, 9, 2], [5, 3, 2, 3], [2, 1], 'valid'],
  ] as [Shape4, Shape4, number | [number, number], 'same' | 'valid'][]) {
    it(`depthwiseConv2d x=${x} filter=${f} stride=${s} pad=${p}: dx`, async () => {
      const xt = tf.randomNormal(x, 0, 1, 'float32', 11);
      const w = tf.randomNormal(f, 0, 1, 'float32', 12);
      const err = await compare([xt, w], (a, b) =>
        tf.grad((xa: tf.Tensor) =>
          tf
            .depthwiseConv2d(xa as tf.Tensor4D, b as tf.Tensor4D, s, p)
            .square()
            .sum(),
        )(a),
      );
      tf.dispose([xt, w]);
      assert.ok(err < 1e-5, `relative difference ${err}`);
    });
  }

  for (const shape of [
    [2, 8, 8, 3],
    [1, 32, 32, 16],
    [3, 6, 10, 5],
  ] as Shape4[]) {
    it(`maxPool 2×2/2 gradient on ${shape}, including ties`, async () => {
      // Rounded values create ties inside windows: the gradient must go to one position only.
      const x = tf.randomUniform(shape, 0, 4, 'float32', 3).round();
      const wts = tf.randomNormal([1, shape[1] / 2, shape[2] / 2, shape[3]], 0, 1, 'float32', 4);
      const err = await compare([x, wts], (a, b) =>
        tf.grad((xa: tf.Tensor) =>
          tf
            .maxPool(xa as tf.Tensor4D, 2, 2, 'valid')
            .mul(b)
            .sum(),
        )(a),
      );
      tf.dispose([x, wts]);
      assert.ok(err < 1e-6, `relative difference ${err}`);
    });
  }

  // wasm's own MaxPoolGrad got asymmetric 'same' padding wrong (7×7 2×2/2, 8×8 3×3/2).
  for (const [f, s, p, hw] of [
    [3, 2, 'same', 9],
    [3, 2, 'same', 8],
    [2, 2, 'same', 7],
    [3, 1, 'same', 6],
    [3, 2, 'valid', 9],
  ] as const) {
    it(`maxPool ${f}×${f}/${s} ${p} on ${hw}×${hw} (general path)`, async () => {
      const x = tf.randomNormal([2, hw, hw, 3], 0, 1, 'float32', 5);
      const err = await compare([x], (a) =>
        tf.grad((xa: tf.Tensor) =>
          tf
            .maxPool(xa as tf.Tensor4D, f, s, p)
            .square()
            .sum(),
        )(a),
      );
      x.dispose();
      assert.ok(err < 1e-6, `relative difference ${err}`);
    });
  }

  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ]) {
    it(`matMul transposeA=${ta} transposeB=${tb}, rank 2 and batched`, async () => {
      const a = tf.randomNormal(ta ? [37, 19] : [19, 37], 0, 1, 'float32', 6);
      const b = tf.randomNormal(tb ? [23, 37] : [37, 23], 0, 1, 'float32', 7);
      const a3 = tf.randomNormal(ta ? [3, 11, 5] : [3, 5, 11], 0, 1, 'float32', 8);
      const b3 = tf.randomNormal(tb ? [3, 4, 11] : [3, 11, 4], 0, 1, 'float32', 9);
      const err = await compare([a, b, a3, b3], (p, q, r, s) => [tf.matMul(p, q, ta, tb), tf.matMul(r, s, ta, tb)]);
      tf.dispose([a, b, a3, b3]);
      assert.ok(err < 1e-5, `relative difference ${err}`);
    });
  }

  it("matMul a·bᵀ with a small a (a dense layer's input gradient at batch 1) agrees with cpu", async () => {
    // Computed as (b·aᵀ)ᵀ on wasm: rank 2 and batched, a with one and with two rows.
    const a = tf.randomNormal([1, 300], 0, 1, 'float32', 10);
    const a2 = tf.randomNormal([2, 300], 0, 1, 'float32', 11);
    const b = tf.randomNormal([40, 300], 0, 1, 'float32', 12);
    const a3 = tf.randomNormal([3, 1, 50], 0, 1, 'float32', 13);
    const b3 = tf.randomNormal([3, 20, 50], 0, 1, 'float32', 14);
    const err = await compare([a, a2, b, a3, b3], (p, p2, q, r, s) => [
      tf.matMul(p, q, false, true),
      tf.matMul(p2, q, false, true),
      tf.matMul(r, s, false, true),
    ]);
    tf.dispose([a, a2, b, a3, b3]);
    assert.ok(err < 1e-5, `relative difference ${err}`);
  });

  it('gradients of the whole CNN agree with cpu', async function () {
    // The cpu backend is slow: a few images are enough to exercise every layer's gradient.
    this.timeout(240000);
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 3 });
    const clf = new LayersClassifier(model);
    const x = tf.randomUniform([3, 32, 32, 3], 0, 1, 'float32', 10);
    const y = tf.oneHot(tf.tensor1d([0, 14, 42], 'int32'), 43);
    const err = await compare([x, y], (xa, ya) => {
      const { grads, value } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(ya, clf.logits(xa as tf.Tensor4D)) as tf.Scalar);
      return [value, ...Object.values(grads), tf.grad((xi: tf.Tensor) => tf.losses.softmaxCrossEntropy(ya, clf.logits(xi as tf.Tensor4D)))(xa)];
    });
    tf.dispose([x, y]);
    model.dispose();
    assert.ok(err < 1e-5, `relative difference ${err}`);
  });
});
