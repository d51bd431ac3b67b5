/**
 * Gradient kernels for the wasm backend, written as compositions of its fast forward Conv2D.
 *
 * tfjs-backend-wasm has no Conv2DBackpropFilter (training fails outright) and a naive, slow
 * Conv2DBackpropInput. Both gradients of a convolution are themselves convolutions:
 *   dx = conv(pad(dilate(dy, stride)), reverse(filter) with in/out channels swapped)
 *   dW = conv(x with batch and channels swapped, dilate(dy) used as the filter)
 * so they can run on the XNNPACK forward path. Kernels may return Tensors built from tf ops:
 * the engine does not record ops run inside a kernel on the gradient tape.
 */
import { tf, Tensor4D } from './tf';

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

interface ConvAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: number | [number, number];
}

function pair(v: number | [number, number] | undefined): [number, number] {
  if (v == null) return [1, 1];
  return typeof v === 'number' ? [v, v] : v;
}

/** Inserts (stride - 1) zeros between rows/columns of an NHWC tensor: out[i*s] = x[i]. */
export function dilateSpatial(x: Tensor4D, sh: number, sw: number): Tensor4D {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  // [n,h,1,w,1,c] padded to [n,h,sh,w,sw,c] then flattened puts each value at i*s.
  const expanded = x.reshape([n, h, 1, w, 1, c]);
  const padded = expanded.pad([
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0],
  ]);
  const flat = padded.reshape([n, h * sh, w * sw, c]);
  return flat.slice([0, 0, 0, 0], [n, (h - 1) * sh + 1, (w - 1) * sw + 1, c]) as Tensor4D;
}

/** Pads (positive) or crops (negative) the two spatial axes of an NHWC tensor. */
export function padOrCrop(x: Tensor4D, top: number, bottom: number, left: number, right: number): Tensor4D {
  let y = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = y.shape;
    const t = Math.max(0, -top),
      b = Math.max(0, -bottom),
      l = Math.max(0, -left),
      r = Math.max(0, -right);
    y = y.slice([0, t, l, 0], [n, h - t - b, w - l - r, c]);
  }
  const pt = Math.max(0, top),
    pb = Math.max(0, bottom),
    pl = Math.max(0, left),
    pr = Math.max(0, right);
  if (pt || pb || pl || pr)
    y = y.pad([
      [0, 0],
      [pt, pb],
      [pl, pr],
      [0, 0],
    ]);
  return y;
}

function convInfo(xShape: [number, number, number, number], filterShape: [number, number, number, number], attrs: ConvAttrs) {
  const [dh, dw] = pair(attrs.dilations);
  if (dh !== 1 || dw !== 1) throw new Error('advsign wasm conv gradients support dilation 1 only');
  if (attrs.dataFormat === 'NCHW') throw new Error('advsign wasm conv gradients support NHWC only');
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, pair(attrs.strides), 1, attrs.pad as 'same', attrs.dimRoundingMode, false, 'channelsLast');
}

/** dL/dx of conv2d(x, filter) given dy, as a stride-1 forward convolution. */
export function conv2dBackpropInputViaConv(dy: Tensor4D, filter: Tensor4D, inputShape: [number, number, number, number], attrs: ConvAttrs): Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(inputShape, filter.shape, attrs);
    const [kh, kw] = [info.filterHeight, info.filterWidth];
    const { top, left } = info.padInfo;
    const [, inH, inW] = inputShape;
    const dyd = dilateSpatial(dy, info.strideHeight, info.strideWidth);
    const hd = dyd.shape[1],
      wd = dyd.shape[2];
    // Full correlation with the reversed filter: left pad k-1-padTop; right pad fills to in+k-1.
    const p = padOrCrop(dyd, kh - 1 - top, inH + top - hd - 0, kw - 1 - left, inW + left - wd);
    const wRev = tf.reverse(filter, [0, 1]).transpose([0, 1, 3, 2]) as Tensor4D;
    return tf.conv2d(p, wRev, 1, 'valid');
  });
}

/** dL/dfilter of conv2d(x, filter) given dy, as a forward convolution over the batch axis. */
export function conv2dBackpropFilterViaConv(x: Tensor4D, dy: Tensor4D, filterShape: [number, number, number, number], attrs: ConvAttrs): Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(x.shape, filterShape, attrs);
    const [kh, kw] = [info.filterHeight, info.filterWidth];
    const { top, left } = info.padInfo;
    const hd = (info.outHeight - 1) * info.strideHeight + 1;
    const wd = (info.outWidth - 1) * info.strideWidth + 1;
    // Rows of x that some output reads: padded x spans [-top, hd - 1 + kh - 1 - top].
    const xp = padOrCrop(x, top, hd + kh - 1 - top - x.shape[1], left, wd + kw - 1 - left - x.shape[2]);
    const xT = xp.transpose([3, 1, 2, 0]) as Tensor4D; // [Ci, H', W', N]
    const dyT = dilateSpatial(dy, info.strideHeight, info.strideWidth).transpose([1, 2, 0, 3]) as Tensor4D; // [hd, wd, N, Co]
    const dw = tf.conv2d(xT, dyT, 1, 'valid'); // [Ci, kh, kw, Co]
    return dw.transpose([1, 2, 0, 3]);
  });
}

/**
 * dL/dx of depthwiseConv2d(x, filter [kh, kw, C, M]) given dy [n, h', w', C·M] (missing in wasm):
 * the same full correlation as above, done per channel by a stride-1 depthwise convolution of
 * dy with the reversed filter, then summed over the M outputs of each input channel.
 */
export function depthwiseBackpropInputViaConv(dy: Tensor4D, filter: Tensor4D, inputShape: [number, number, number, number], attrs: ConvAttrs): Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, c, m] = filter.shape;
    const info = convInfo(inputShape, [kh, kw, c, c * m], attrs);
    const { top, left } = info.padInfo;
    const [n, inH, inW] = inputShape;
    const dyd = dilateSpatial(dy, info.strideHeight, info.strideWidth);
    const p = padOrCrop(dyd, kh - 1 - top, inH + top - dyd.shape[1], kw - 1 - left, inW + left - dyd.shape[2]);
    const wRev = tf.reverse(filter, [0, 1]).reshape([kh, kw, c * m, 1]) as Tensor4D;
    const perOutput = tf.depthwiseConv2d(p, wRev, 1, 'valid');
    return (m === 1 ? perOutput : perOutput.reshape([n, inH, inW, c, m]).sum(4)) as Tensor4D;
  });
}

function swapLastAxes(t: tf.Tensor): tf.Tensor {
  const perm = t.shape.map((_, i) => i);
  [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
  return tf.transpose(t, perm);
}

/**
 * wasm's BatchMatMul is fast for a·b but 50–150× slower when asked to transpose an operand,
 * which is exactly what dense-layer gradients ask for; transposing explicitly first is cheap.
 * For a·bᵀ with a small `a` (the input gradient of a dense layer at batch 1: dy[1, n]·Wᵀ) even the
 * explicit transpose of the big weight matrix dominates, so it is computed as (b·aᵀ)ᵀ instead,
 * transposing only the small operands (same products, summed in the same order).
 */
function registerFastTransposedMatMul(): void {
  const original = tf.getKernel('BatchMatMul', 'wasm');
  if (!original) return;
  const inner = original.kernelFunc;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  type Backend = Parameters<typeof inner>[0]['backend'];
  const plain = (a: tf.Tensor, b: tf.Tensor, attrs: tf.NamedAttrMap | undefined, backend: Backend): tf.TensorInfo =>
    inner({ inputs: { a, b }, attrs: { ...attrs, transposeA: false, transposeB: false }, backend }) as tf.TensorInfo;
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    kernelFunc: ({ inputs, attrs, backend }) => {
      const { a, b } = inputs as unknown as { a: tf.Tensor; b: tf.Tensor };
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return inner({ inputs, attrs, backend });
      const r = a.rank,
        m = a.shape[r - 2],
        k = a.shape[r - 1],
        n = b.shape[b.rank - 2];
      if (!transposeA && transposeB && a.rank === b.rank && m * k + m * n < n * k) {
        const at = swapLastAxes(a);
        const prodInfo = plain(b, at, attrs, backend);
        const prod = tf.engine().makeTensorFromTensorInfo(prodInfo);
        const out = swapLastAxes(prod);
        tf.dispose([at, prod]);
        return out;
      }
      const at = transposeA ? swapLastAxes(a) : a;
      const bt = transposeB ? swapLastAxes(b) : b;
      const out = plain(at, bt, attrs, backend);
      if (at !== a) at.dispose();
      if (bt !== b) bt.dispose();
      return out;
    },
  });
}

/** The slice of the wasm backend a kernel written in JS needs: its tensors' memory. */
interface WasmHeap {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

/**
 * MaxPoolGrad as one pass over the windows in JS, straight on the wasm heap: each window's dy
 * goes to its first maximum in row-major order (as TensorFlow does), summed where windows
 * overlap; padding never wins. The composites above need a dozen kernels and two transposes
 * of the whole activation for the same result.
 */
export function maxPoolGradDirect(heap: WasmHeap, dy: tf.TensorInfo, input: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const [n, h, w, c] = input.shape;
  const out = heap.makeOutput(input.shape, 'float32');
  const dx = heap.typedArrayFromHeap(out);
  dx.fill(0);
  const x = heap.typedArrayFromHeap(input),
    g = heap.typedArrayFromHeap(dy);
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      const y0 = i * sh - top,
        y1 = Math.min(h, y0 + fh);
      for (let j = 0; j < ow; j++) {
        const x0 = j * sw - left,
          x1 = Math.min(w, x0 + fw);
        const go = ((b * oh + i) * ow + j) * c;
        for (let ch = 0; ch < c; ch++) {
          let best = -1,
            bestV = -Infinity;
          for (let yy = Math.max(0, y0); yy < y1; yy++) {
            for (let xx = Math.max(0, x0); xx < x1; xx++) {
              const idx = ((b * h + yy) * w + xx) * c + ch;
              if (x[idx] > bestV || best < 0) {
                bestV = x[idx];
                best = idx;
              }
            }
          }
          if (best >= 0) dx[best] += g[go + ch];
        }
      }
    }
  }
  return out;
}

function registerFastMaxPoolGrad(): void {
  const original = tf.getKernel('MaxPoolGrad', 'wasm');
  if (!original) return;
  tf.unregisterKernel('MaxPoolGrad', 'wasm');
  tf.registerKernel({
    kernelName: 'MaxPoolGrad',
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    kernelFunc: (args) => {
      const { dy, input } = args.inputs as unknown as { dy: Tensor4D; input: Tensor4D };
      const a = args.attrs as unknown as {
        filterSize: number | [number, number];
        strides: number | [number, number];
        pad: Pad;
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
      };
      const info = tf.backend_util.computePool2DInfo(input.shape, pair(a.filterSize), pair(a.strides), 1, a.pad as 'same', a.dimRoundingMode);
      return maxPoolGradDirect(args.backend as unknown as WasmHeap, dy, input, info);
    },
  });
}

type InputGradient = (dy: Tensor4D, filter: Tensor4D, inputShape: [number, number, number, number], attrs: ConvAttrs) => Tensor4D;

/** A wasm kernel for dL/dx of a convolution-like op (inputs dy and filter, attribute inputShape). */
function registerInputGradient(kernelName: string, gradient: InputGradient): void {
  tf.registerKernel({
    kernelName,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }) => {
      const { dy, filter } = inputs as unknown as { dy: Tensor4D; filter: Tensor4D };
      const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
      return gradient(dy, filter, a.inputShape, a);
    },
  });
}

let registered = false;

/** Registers the kernels above for the wasm backend (idempotent). */
export function registerWasmGradKernels(): void {
  if (registered) return;
  registered = true;
  registerFastTransposedMatMul();
  registerFastMaxPoolGrad();
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }) => {
      const { x, dy } = inputs as unknown as { x: Tensor4D; dy: Tensor4D };
      const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
      return conv2dBackpropFilterViaConv(x, dy, a.filterShape, a);
    },
  });
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  registerInputGradient('Conv2DBackpropInput', conv2dBackpropInputViaConv);
  if (!tf.getKernel('DepthwiseConv2dNativeBackpropInput', 'wasm')) registerInputGradient('DepthwiseConv2dNativeBackpropInput', depthwiseBackpropInputViaConv);
}
