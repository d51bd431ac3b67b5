/**
 * Models that are not advsign's own, for tests, made from a trained advsign model's weights (so
 * their figures mean something): with the project's own TFLite writer (src/tflite/schema.ts) a
 * small graph builder, a "typical Keras" GTSRB .tflite (30×30 input, raw 0–255 pixels, softmax
 * head) and a zoo of ops the exporter never emits (non-square input); a TensorFlow.js graph model
 * as tensorflowjs_converter writes one (GraphDef JSON, −1…1 input, Softmax → Identity); and a
 * layers model trained on 0–255 pixels with a softmax head.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../src/inference/tf';
import { saveModel } from '../src/inference/model-io';
import { planFromModel } from '../src/tflite/plan';
import type { ConvStep, DenseStep } from '../src/tflite/plan';
import { ModelDesc, Op, opts, Padding, QuantDesc, serializeModel, TensorType, TensorTypeCode, Activation } from '../src/tflite/schema';
import { createRng } from '../src/data/random';

const bytes = (a: Float32Array | Int32Array) => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

/** Builds a single-subgraph model op by op; every op returns its output tensor index. */
export class GraphBuilder {
  private readonly m: ModelDesc = { description: 'advsign test model', buffers: [new Uint8Array(0)], tensors: [], operators: [], inputs: [], outputs: [] };

  tensor(name: string, shape: number[], type: TensorTypeCode = TensorType.FLOAT32, data?: Uint8Array, quantization?: QuantDesc): number {
    const buffer = data ? this.m.buffers.push(data) - 1 : 0;
    return this.m.tensors.push({ name, shape, type, buffer, quantization }) - 1;
  }

  input(shape: number[], type: TensorTypeCode = TensorType.FLOAT32, quantization?: QuantDesc): number {
    const t = this.tensor('input', shape, type, undefined, quantization);
    this.m.inputs.push(t);
    return t;
  }

  f32(name: string, shape: number[], values: ArrayLike<number>): number {
    return this.tensor(name, shape, TensorType.FLOAT32, bytes(Float32Array.from(values)));
  }

  i32(name: string, shape: number[], values: ArrayLike<number>): number {
    return this.tensor(name, shape, TensorType.INT32, bytes(Int32Array.from(values)));
  }

  op(
    op: number,
    inputs: number[],
    outShape: number[],
    options?: ModelDesc['operators'][number]['options'],
    out?: { type: TensorTypeCode; quantization?: QuantDesc },
  ): number {
    const t = this.tensor(`t${this.m.tensors.length}`, outShape, out?.type ?? TensorType.FLOAT32, undefined, out?.quantization);
    this.m.operators.push({ op, inputs, outputs: [t], options });
    return t;
  }

  build(output: number, description?: string): Uint8Array {
    this.m.outputs = [output];
    if (description) this.m.description = description;
    return serializeModel(this.m);
  }
}

const SAME = Padding.SAME,
  VALID = Padding.VALID;

/** tfjs [kh, kw, in, out] → TFLite [out, kh, kw, in]. */
function ohwi(st: ConvStep): Float32Array {
  const out = new Float32Array(st.kernel.length);
  for (let o = 0; o < st.outC; o++) for (let j = 0; j < st.kh * st.kw * st.inC; j++) out[o * st.kh * st.kw * st.inC + j] = st.kernel[j * st.outC + o];
  return out;
}

function denseOi(st: DenseStep): Float32Array {
  const out = new Float32Array(st.kernel.length);
  for (let i = 0; i < st.inC; i++) for (let o = 0; o < st.outC; o++) out[o * st.inC + i] = st.kernel[i * st.outC + o];
  return out;
}

export interface KerasStyleOptions {
  /** uint8 input (scale 1, zero point 0: the raw byte is the pixel) then DEQUANTIZE; default float32. */
  uint8Input?: boolean;
}

/**
 * A .tflite as TensorFlow's converter writes a Keras GTSRB model trained on 30×30 whole photos
 * with raw 0–255 pixels: 30×30×3 input in 0…255, CONV_2D/MAX_POOL_2D with fused ReLU, RESHAPE,
 * FULLY_CONNECTED and a SOFTMAX head. The weights come from `model` (a trained 32×32 advsign
 * cnn4, so the figures mean something): the 0–255 input is rescaled by MUL and SUB (x/127.5 − 1,
 * the model's own normalisation) and PADded by a pixel to 32×32.
 */
export function kerasStyleTflite(model: tf.LayersModel, o: KerasStyleOptions = {}): Uint8Array {
  const plan = planFromModel(model);
  if (plan.inputSize !== 32) throw new Error('kerasStyleTflite needs a 32×32 model');
  const g = new GraphBuilder();
  let x = o.uint8Input
    ? g.op(Op.DEQUANTIZE, [g.input([1, 30, 30, 3], TensorType.UINT8, { scale: [1], zeroPoint: [0] })], [1, 30, 30, 3])
    : g.input([1, 30, 30, 3]);
  x = g.op(Op.MUL, [x, g.f32('inv127_5', [1], [1 / 127.5])], [1, 30, 30, 3], opts.mul());
  x = g.op(Op.SUB, [x, g.f32('one', [1], [1])], [1, 30, 30, 3], opts.sub());
  x = g.op(Op.PAD, [x, g.i32('paddings', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0])], [1, 32, 32, 3], opts.pad());
  let shape = [1, 32, 32, 3];
  const act = (a: string) => (a === 'relu' ? Activation.RELU : a === 'relu6' ? Activation.RELU6 : Activation.NONE);
  plan.steps.forEach((st, i) => {
    const outShape = plan.shapes[i];
    if (st.kind === 'conv') {
      const w = g.f32(`${st.name}/kernel`, [st.outC, st.kh, st.kw, st.inC], ohwi(st));
      const b = g.f32(`${st.name}/bias`, [st.outC], st.bias);
      x = g.op(Op.CONV_2D, [x, w, b], outShape, opts.conv2d(st.padding === 'same' ? SAME : VALID, st.stride[0], act(st.act)));
    } else if (st.kind === 'pool') {
      x = g.op(
        st.type === 'max' ? Op.MAX_POOL_2D : Op.AVERAGE_POOL_2D,
        [x],
        outShape,
        opts.pool2d(st.padding === 'same' ? SAME : VALID, st.stride[0], st.size[0]),
      );
    } else if (st.kind === 'flatten') {
      x = g.op(Op.RESHAPE, [x, g.i32('flatten/shape', [2], [-1, outShape[1]])], outShape, opts.reshape([-1, outShape[1]]));
    } else if (st.kind === 'dense') {
      const w = g.f32(`${st.name}/kernel`, [st.outC, st.inC], denseOi(st));
      x = g.op(Op.FULLY_CONNECTED, [x, w, g.f32(`${st.name}/bias`, [st.outC], st.bias)], outShape, opts.fullyConnected(act(st.act)));
    }
    shape = outShape;
  });
  x = g.op(Op.SOFTMAX, [x], shape, opts.softmax(1));
  return g.build(x, 'keras-style GTSRB classifier (test)');
}

/** Random weights scaled like He initialisation. */
function randn(rand: () => number, n: number, fanIn: number): Float32Array {
  const s = Math.sqrt(2 / fanIn);
  return Float32Array.from({ length: n }, () => {
    const u = Math.max(rand(), 1e-9),
      v = rand();
    return s * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  });
}

export interface ZooOptions {
  /** Insert an op the rebuild does not know (ABS) after the first conv. */
  withAbs?: boolean;
  /** Insert a dilated CONV_2D after the first conv (rebuilt in tfjs; no ONNX export). */
  dilated?: boolean;
  seed?: number;
}

/**
 * Ops the exporter never writes, on a non-square 24×20 input in −1…1 with 5 classes: PAD,
 * strided VALID CONV_2D with fused RELU6, DEPTHWISE_CONV_2D (multiplier 2), LOGISTIC, MUL,
 * SUB (fused RELU), AVERAGE_POOL_2D, MAX_POOL_2D SAME, CONCATENATION (axis −1), HARD_SWISH, MEAN,
 * SQUEEZE, FULLY_CONNECTED (fused RELU), TANH, RELU, RELU6, ADD and SOFTMAX.
 */
export function opZooTflite(o: ZooOptions = {}): Uint8Array {
  const rand = createRng(o.seed ?? 7);
  const g = new GraphBuilder();
  let x = g.input([1, 24, 20, 3]);
  x = g.op(Op.PAD, [x, g.i32('pad', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0])], [1, 26, 22, 3], opts.pad());
  const c1 = g.op(
    Op.CONV_2D,
    [x, g.f32('c1/w', [8, 3, 3, 3], randn(rand, 8 * 27, 27)), g.f32('c1/b', [8], randn(rand, 8, 8))],
    [1, 12, 10, 8],
    opts.conv2d(VALID, 2, Activation.RELU6),
  );
  let y = c1;
  if (o.withAbs) y = g.op(Op.ABS, [y], [1, 12, 10, 8]);
  if (o.dilated)
    y = g.op(
      Op.CONV_2D,
      [y, g.f32('d/w', [8, 3, 3, 8], randn(rand, 576, 72)), g.f32('d/b', [8], new Float32Array(8))],
      [1, 12, 10, 8],
      opts.conv2d(SAME, 1, Activation.NONE, 2),
    );
  const dw = g.op(
    Op.DEPTHWISE_CONV_2D,
    [y, g.f32('dw/w', [1, 3, 3, 16], randn(rand, 144, 9)), g.f32('dw/b', [16], randn(rand, 16, 16))],
    [1, 12, 10, 16],
    opts.depthwiseConv2d(SAME, 1, 2, Activation.RELU),
  );
  const gate = g.op(Op.LOGISTIC, [dw], [1, 12, 10, 16]);
  const shifted = g.op(Op.SUB, [dw, g.f32('shift', [1, 1, 1, 16], randn(rand, 16, 4))], [1, 12, 10, 16], opts.sub(Activation.RELU));
  const gated = g.op(Op.MUL, [gate, shifted], [1, 12, 10, 16], opts.mul());
  const avg = g.op(Op.AVERAGE_POOL_2D, [gated], [1, 6, 5, 16], opts.pool2d(VALID, 2, 2));
  const max = g.op(Op.MAX_POOL_2D, [dw], [1, 6, 5, 16], opts.pool2d(SAME, 2, 2));
  const cat = g.op(Op.CONCATENATION, [avg, max], [1, 6, 5, 32], opts.concatenation(-1));
  const hs = g.op(Op.HARD_SWISH, [cat], [1, 6, 5, 32]);
  const mean = g.op(Op.MEAN, [hs, g.i32('axes', [2], [1, 2])], [1, 1, 1, 32], opts.reducer(true));
  const flat = g.op(Op.SQUEEZE, [mean], [1, 32], opts.squeeze([1, 2]));
  const fc1 = g.op(
    Op.FULLY_CONNECTED,
    [flat, g.f32('fc1/w', [16, 32], randn(rand, 512, 32)), g.f32('fc1/b', [16], randn(rand, 16, 16))],
    [1, 16],
    opts.fullyConnected(Activation.RELU),
  );
  const th = g.op(Op.TANH, [fc1], [1, 16]);
  const r = g.op(Op.RELU6, [g.op(Op.RELU, [th], [1, 16])], [1, 16]);
  const fc2 = g.op(
    Op.FULLY_CONNECTED,
    [r, g.f32('fc2/w', [5, 16], randn(rand, 80, 4)), g.f32('fc2/b', [5], [0, 0, 0, 0, 0])],
    [1, 5],
    opts.fullyConnected(Activation.NONE),
  );
  const out = g.op(Op.ADD, [fc2, g.f32('bias2', [5], randn(rand, 5, 2))], [1, 5], opts.add());
  return g.build(g.op(Op.SOFTMAX, [out], [1, 5], opts.softmax(1)), 'op zoo (test)');
}

/** The conv/pool/dense layers of an advsign cnn4, in order (no normalisation, no dropout). */
function coreLayers(model: tf.LayersModel): tf.layers.Layer[] {
  return model.layers.filter((l) => ['Conv2D', 'MaxPooling2D', 'Flatten', 'Dense'].includes(l.getClassName()));
}

/**
 * The same network as a layers model trained on raw 0–255 pixels with a softmax head (as many
 * Keras models are): Rescaling x·2/255 − 1 replaces the model's own x·2 − 1.
 */
export async function saveRawPixelLayersModel(model: tf.LayersModel, dir: string): Promise<void> {
  const m = tf.sequential({ name: 'keras_style_255' });
  m.add(tf.layers.rescaling({ inputShape: [32, 32, 3], scale: 2 / 255, offset: -1 }));
  const core = coreLayers(model);
  core.forEach((l, i) => {
    const cfg = l.getConfig();
    const last = i === core.length - 1;
    const cls = l.getClassName();
    const layer =
      cls === 'Conv2D'
        ? tf.layers.conv2d(cfg as unknown as Parameters<typeof tf.layers.conv2d>[0])
        : cls === 'MaxPooling2D'
          ? tf.layers.maxPooling2d(cfg as unknown as Parameters<typeof tf.layers.maxPooling2d>[0])
          : cls === 'Flatten'
            ? tf.layers.flatten()
            : tf.layers.dense({ ...(cfg as unknown as Parameters<typeof tf.layers.dense>[0]), activation: last ? 'softmax' : (cfg.activation as 'relu') });
    m.add(layer);
    layer.setWeights(l.getWeights());
  });
  await saveModel(m, dir);
  m.dispose();
}

type Attr = Record<string, unknown>;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const ints = (v: number[]) => ({ list: { i: v.map(String) } });
const F = { type: 'DT_FLOAT' };

/**
 * The network as a TensorFlow.js graph model (the format tensorflowjs_converter writes from a
 * SavedModel): Placeholder [−1, 32, 32, 3] taking −1…1 pixels, Conv2D + BiasAdd + Relu, MaxPool,
 * Reshape, MatMul + BiasAdd, Softmax, and an Identity output node.
 */
export function saveGraphModel(model: tf.LayersModel, dir: string, o: { signature?: boolean } = {}): void {
  const nodes: { name: string; op: string; input?: string[]; attr?: Attr }[] = [];
  const weights: { name: string; shape: number[]; dtype: 'float32' | 'int32' }[] = [];
  const data: Buffer[] = [];
  const constant = (name: string, t: tf.Tensor | Int32Array, shape?: number[]) => {
    const dtype = t instanceof Int32Array ? 'int32' : 'float32';
    const values = t instanceof Int32Array ? t : (t.dataSync() as Float32Array);
    const s = shape ?? (t as tf.Tensor).shape;
    nodes.push({
      name,
      op: 'Const',
      attr: {
        dtype: { type: dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT' },
        value: { tensor: { dtype: dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT', tensorShape: { dim: s.map((d) => ({ size: String(d) })) } } },
      },
    });
    weights.push({ name, shape: s, dtype });
    data.push(Buffer.from(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)));
  };
  nodes.push({ name: 'input', op: 'Placeholder', attr: { dtype: F, shape: { shape: { dim: [-1, 32, 32, 3].map((d) => ({ size: String(d) })) } } } });
  let x = 'input';
  const nhwc = { s: b64('NHWC') };
  for (const l of coreLayers(model)) {
    const n = l.name;
    const cls = l.getClassName();
    const cfg = l.getConfig() as { padding?: string; activation?: string; poolSize?: number[]; strides?: number[] };
    const pad = { s: b64(cfg.padding === 'same' ? 'SAME' : 'VALID') };
    if (cls === 'Conv2D' || cls === 'Dense') {
      const [k, bias] = l.getWeights();
      constant(`${n}/kernel`, k);
      constant(`${n}/bias`, bias);
      nodes.push(
        cls === 'Conv2D'
          ? {
              name: `${n}/Conv2D`,
              op: 'Conv2D',
              input: [x, `${n}/kernel`],
              attr: { T: F, strides: ints([1, 1, 1, 1]), padding: pad, data_format: nhwc, dilations: ints([1, 1, 1, 1]), use_cudnn_on_gpu: { b: true } },
            }
          : { name: `${n}/MatMul`, op: 'MatMul', input: [x, `${n}/kernel`], attr: { T: F, transpose_a: { b: false }, transpose_b: { b: false } } },
      );
      nodes.push({
        name: `${n}/BiasAdd`,
        op: 'BiasAdd',
        input: [`${n}/${cls === 'Conv2D' ? 'Conv2D' : 'MatMul'}`, `${n}/bias`],
        attr: { T: F, data_format: nhwc },
      });
      x = `${n}/BiasAdd`;
      if (cfg.activation === 'relu') {
        nodes.push({ name: `${n}/Relu`, op: 'Relu', input: [x], attr: { T: F } });
        x = `${n}/Relu`;
      }
    } else if (cls === 'MaxPooling2D') {
      nodes.push({
        name: n,
        op: 'MaxPool',
        input: [x],
        attr: { T: F, ksize: ints([1, 2, 2, 1]), strides: ints([1, 2, 2, 1]), padding: pad, data_format: nhwc },
      });
      x = n;
    } else {
      constant(`${n}/shape`, Int32Array.of(-1, (l.outputShape as number[])[1]), [2]);
      nodes.push({ name: n, op: 'Reshape', input: [x, `${n}/shape`], attr: { T: F, Tshape: { type: 'DT_INT32' } } });
      x = n;
    }
  }
  nodes.push({ name: 'probabilities', op: 'Softmax', input: [x], attr: { T: F } });
  nodes.push({ name: 'Identity', op: 'Identity', input: ['probabilities'], attr: { T: F } });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.concat(data));
  const dims = (d: number[]) => ({ dim: d.map((v) => ({ size: String(v) })) });
  const k = (coreLayers(model).pop() as tf.layers.Layer).getWeights()[1].shape[0];
  // The converter records the SavedModel signature (with shapes); without it the loader runs the graph once.
  const signature = o.signature
    ? {
        inputs: { 'input:0': { name: 'input:0', dtype: 'DT_FLOAT', tensorShape: dims([-1, 32, 32, 3]) } },
        outputs: { 'Identity:0': { name: 'Identity:0', dtype: 'DT_FLOAT', tensorShape: dims([-1, k]) } },
      }
    : undefined;
  fs.writeFileSync(
    path.join(dir, 'model.json'),
    JSON.stringify({
      format: 'graph-model',
      generatedBy: '2.15.0',
      convertedBy: 'TensorFlow.js Converter v4.22.0',
      signature,
      modelTopology: { node: nodes, library: {}, versions: { producer: 1645 } },
      weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights }],
    }),
  );
}
