/**
 * Interval bound propagation (Gowal et al. 2018) through the advsign CNN: for every input in the
 * L∞ box [x − eps, x + eps] ∩ [0, 1], bounds on every logit. Intervals are carried as centre μ and
 * radius r; an affine map W sends them to (Wμ + b, |W| r), which is exact per layer. Monotone
 * layers (ReLU, max-pool) map the endpoints. BatchNorm is the affine map of inference mode;
 * Dropout is the identity at inference.
 *
 * Certification uses the "elision" form: the last Dense layer is folded into the margin
 * z_y − z_j = (w_y − w_j)·h + (b_y − b_j), bounded directly over the box of h. This is never looser
 * than subtracting independent logit bounds (and usually much tighter), and it is still sound.
 */
import { tf, Tensor2D, Tensor4D } from './tf';
import { UserError } from '../data/types';
import { StopCheck, yieldUnlessStopped } from '../util/interrupt';

export interface LogitBounds {
  lower: Tensor2D;
  upper: Tensor2D;
}

interface Box {
  mu: tf.Tensor;
  r: tf.Tensor;
}

type Act = 'linear' | 'relu';

function activationOf(layer: tf.layers.Layer): Act {
  const a = (layer.getConfig() as { activation?: string }).activation ?? 'linear';
  if (a === 'linear' || a === 'relu') return a;
  if (a === 'softmax') throw new UserError(`IBP verification needs a model that outputs logits; layer '${layer.name}' applies softmax`);
  throw new UserError(`IBP: activation '${a}' of layer '${layer.name}' is not supported (linear and relu are)`);
}

function applyMonotone(b: Box, f: (t: tf.Tensor) => tf.Tensor): Box {
  const lo = f(tf.sub(b.mu, b.r));
  const hi = f(tf.add(b.mu, b.r));
  return { mu: tf.div(tf.add(lo, hi), 2), r: tf.div(tf.sub(hi, lo), 2) };
}

function activate(b: Box, act: Act): Box {
  return act === 'relu' ? applyMonotone(b, (t) => tf.relu(t)) : b;
}

/** Propagates the box through one layer (inside a tidy). */
function propagateLayer(layer: tf.layers.Layer, b: Box): Box {
  const cls = layer.getClassName();
  const cfg = layer.getConfig() as Record<string, unknown>;
  switch (cls) {
    case 'InputLayer':
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
    case 'GaussianDropout':
      return b; // identity at inference
    case 'Rescaling': {
      const scale = cfg.scale as number,
        offset = cfg.offset as number;
      return { mu: tf.add(tf.mul(b.mu, scale), offset), r: tf.mul(b.r, Math.abs(scale)) };
    }
    case 'Flatten':
      return { mu: tf.reshape(b.mu, [b.mu.shape[0], -1]), r: tf.reshape(b.r, [b.r.shape[0], -1]) };
    case 'ReLU':
      return applyMonotone(b, (t) => tf.relu(t));
    case 'Activation':
      return activate(b, activationOf(layer));
    case 'MaxPooling2D': {
      const pool = cfg.poolSize as [number, number],
        strides = (cfg.strides ?? pool) as [number, number];
      const pad = (cfg.padding ?? 'valid') as 'valid' | 'same';
      return applyMonotone(b, (t) => tf.maxPool(t as Tensor4D, pool, strides, pad));
    }
    case 'Conv2D': {
      const [kernel, bias] = layer.getWeights();
      if ((cfg.dataFormat ?? 'channelsLast') !== 'channelsLast') throw new UserError(`IBP: layer '${layer.name}' is not channels-last`);
      const strides = cfg.strides as [number, number],
        pad = cfg.padding as 'valid' | 'same';
      const dil = (cfg.dilationRate ?? [1, 1]) as [number, number];
      let mu = tf.conv2d(b.mu as Tensor4D, kernel as tf.Tensor4D, strides, pad, 'NHWC', dil) as tf.Tensor;
      if (cfg.useBias !== false && bias) mu = tf.add(mu, bias);
      const r = tf.conv2d(b.r as Tensor4D, tf.abs(kernel) as tf.Tensor4D, strides, pad, 'NHWC', dil);
      return activate({ mu, r }, activationOf(layer));
    }
    case 'BatchNormalization': {
      const w = layer.getWeights();
      const center = cfg.center !== false,
        scaleOn = cfg.scale !== false;
      let i = 0;
      const gamma = scaleOn ? w[i++] : null;
      const beta = center ? w[i++] : null;
      const mean = w[i++],
        variance = w[i++];
      const eps = (cfg.epsilon as number | undefined) ?? 1e-3;
      // Inference mode: y = γ (x − mean) / √(var + ε) + β, a per-channel affine map.
      let s: tf.Tensor = tf.rsqrt(tf.add(variance, eps));
      if (gamma) s = tf.mul(s, gamma);
      let shift: tf.Tensor = tf.neg(tf.mul(mean, s));
      if (beta) shift = tf.add(shift, beta);
      return { mu: tf.add(tf.mul(b.mu, s), shift), r: tf.mul(b.r, tf.abs(s)) };
    }
    case 'Dense': {
      const [kernel, bias] = layer.getWeights();
      let mu: tf.Tensor = tf.matMul(b.mu as Tensor2D, kernel as Tensor2D);
      if (cfg.useBias !== false && bias) mu = tf.add(mu, bias);
      const r = tf.matMul(b.r as Tensor2D, tf.abs(kernel) as Tensor2D);
      return activate({ mu, r }, activationOf(layer));
    }
    default:
      throw new UserError(
        `IBP verification does not support layer '${layer.name}' (${cls}); supported: Rescaling, Conv2D, BatchNormalization, ReLU, MaxPooling2D, Flatten, Dense, Dropout`,
      );
  }
}

function inputBox(x: Tensor4D, eps: number): Box {
  if (!Number.isFinite(eps) || eps < 0 || eps > 1) throw new UserError(`IBP eps must be in [0, 1], got ${eps}`);
  const lo = tf.clipByValue(tf.sub(x, eps), 0, 1);
  const hi = tf.clipByValue(tf.add(x, eps), 0, 1);
  return { mu: tf.div(tf.add(lo, hi), 2), r: tf.div(tf.sub(hi, lo), 2) };
}

function checkModel(model: tf.LayersModel): void {
  const last = model.layers[model.layers.length - 1];
  if (last.getClassName() === 'Softmax' || (last.getConfig() as { activation?: string }).activation === 'softmax') {
    throw new UserError('IBP verification needs a model that outputs logits; this one ends in softmax');
  }
}

/** Sound lower/upper bounds of every logit over the eps box around each image. */
export function ibpBounds(model: tf.LayersModel, x: Tensor4D, eps: number): LogitBounds {
  checkModel(model);
  return tf.tidy(() => {
    let b = inputBox(x, eps);
    for (const layer of model.layers) b = propagateLayer(layer, b);
    return { lower: tf.sub(b.mu, b.r) as Tensor2D, upper: tf.add(b.mu, b.r) as Tensor2D };
  });
}

/**
 * Lower bounds of z_y − z_j over the eps box with the last Dense layer folded in ([n, k], exactly 0
 * at j = y). Differentiable in the weights (layer.getWeights() hands out the variables), so IBP
 * training (ibp-train.ts) uses it too; null when the last layer is not a linear Dense.
 */
export function elidedMarginBounds(model: tf.LayersModel, x: Tensor4D, y: tf.Tensor1D, eps: number): tf.Tensor2D | null {
  const layers = model.layers;
  const last = layers[layers.length - 1];
  if (last.getClassName() !== 'Dense' || activationOf(last) !== 'linear') return null;
  return tf.tidy(() => {
    let b = inputBox(x, eps);
    for (const layer of layers.slice(0, -1)) b = propagateLayer(layer, b);
    const [kernel, biasW] = last.getWeights(); // kernel [d, k]
    const k = kernel.shape[1] as number;
    const bias = biasW ?? tf.zeros([k]);
    // Rows picked by one-hot products, not tf.gather: its gradient needs UnsortedSegmentSum,
    // which wasm lacks.
    const onehot = tf.oneHot(y, k);
    const wy = tf.matMul(onehot, kernel as Tensor2D, false, true); // [n, d]
    const diff = tf.sub(tf.expandDims(wy, 2), tf.expandDims(kernel, 0)); // [n, d, k]
    const centre = tf.sum(tf.mul(diff, tf.expandDims(b.mu, 2)), 1);
    const spread = tf.sum(tf.mul(tf.abs(diff), tf.expandDims(b.r, 2)), 1);
    const db = tf.sub(tf.sum(tf.mul(onehot, bias), 1, true), tf.expandDims(bias, 0));
    return tf.add(tf.sub(centre, spread), db) as tf.Tensor2D;
  });
}

/**
 * Lower bounds of the margins z_y − z_j for j ≠ y ([n, k], +Infinity at j = y). With `elide`
 * (default) the last Dense layer is folded into the margin; otherwise lower(z_y) − upper(z_j).
 */
export function ibpMarginLowerBounds(model: tf.LayersModel, x: Tensor4D, labels: Int32Array, eps: number, elide = true): tf.Tensor2D {
  checkModel(model);
  return tf.tidy(() => {
    const y = tf.tensor1d(labels, 'int32');
    let margins = elide ? elidedMarginBounds(model, x, y, eps) : null;
    if (!margins) {
      const { lower, upper } = ibpBounds(model, x, eps);
      const ly = tf.expandDims(tf.sum(tf.mul(lower, tf.oneHot(y, lower.shape[1])), 1), 1);
      margins = tf.sub(ly, upper) as tf.Tensor2D;
    }
    const self = tf.cast(tf.oneHot(y, margins.shape[1]), 'bool');
    return tf.where(self, tf.fill(margins.shape, Infinity), margins) as tf.Tensor2D;
  });
}

/** 1 where every image is proven to keep its label over the whole eps box. */
export async function certify(model: tf.LayersModel, x: Tensor4D, labels: Int32Array, eps: number, elide = true): Promise<Uint8Array> {
  const m = tf.tidy(() => tf.min(ibpMarginLowerBounds(model, x, labels, eps, elide), 1));
  const v = await m.data();
  m.dispose();
  return Uint8Array.from(v, (t) => (t > 0 ? 1 : 0));
}

/** Certified accuracy over an image array (batched); `shouldStop` as in yieldUnlessStopped, between batches. */
export async function certifiedAccuracy(
  model: tf.LayersModel,
  images: Float32Array,
  labels: Int32Array,
  size: number,
  eps: number,
  batch = 128,
  elide = true,
  shouldStop?: StopCheck,
): Promise<number> {
  const n = labels.length;
  if (n === 0) return NaN;
  const px = size * size * 3;
  let ok = 0;
  for (let i = 0; i < n; i += batch) {
    if (shouldStop) await yieldUnlessStopped(shouldStop);
    const m = Math.min(batch, n - i);
    const x = tf.tensor4d(images.subarray(i * px, (i + m) * px), [m, size, size, 3]);
    const c = await certify(model, x, labels.subarray(i, i + m), eps, elide);
    x.dispose();
    for (const v of c) ok += v;
  }
  return ok / n;
}
