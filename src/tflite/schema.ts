/**
 * The part of TFLite's schema.fbs this project writes and reads: enums, a plain description of
 * a single-subgraph model, its serialisation with the FlatBuffer writer, and a parser for the
 * fields the loader checks (operator codes, input and output tensors).
 *
 * Field ids below are the declaration order in schema.fbs (a table's vtable slot is 4 + 2·id).
 */
import { fb, FbReader, FbTable, serializeFlatBuffer } from './flatbuffer';

export const TFLITE_IDENTIFIER = 'TFL3';
export const TFLITE_SCHEMA_VERSION = 3;

/** BuiltinOperator names in enum order (code = index), up to the codes current runtimes know. */
const OP_NAMES = (
  'ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR ' +
  'FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION ' +
  'LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH ' +
  'CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER ' +
  'BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE ' +
  'BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ' +
  'ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE ' +
  'TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK ' +
  'LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD ' +
  'RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N ' +
  'GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE ' +
  'NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL ' +
  'PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE ' +
  'HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ' +
  'ASSIGN_VARIABLE BROADCAST_ARGS'
).split(' ');

export function opName(code: number): string {
  return OP_NAMES[code] ?? `unknown builtin op code ${code}`;
}

export function opCode(name: string): number {
  const i = OP_NAMES.indexOf(name);
  if (i < 0) throw new Error(`unknown TFLite op ${name}`);
  return i;
}

export const Op = {
  ADD: 0,
  AVERAGE_POOL_2D: 1,
  CONCATENATION: 2,
  CONV_2D: 3,
  DEPTHWISE_CONV_2D: 4,
  DEQUANTIZE: 6,
  FULLY_CONNECTED: 9,
  LOGISTIC: 14,
  LSTM: 16,
  MAX_POOL_2D: 17,
  MUL: 18,
  RELU: 19,
  RELU6: 21,
  RESHAPE: 22,
  SOFTMAX: 25,
  TANH: 28,
  CUSTOM: 32,
  PAD: 34,
  MEAN: 40,
  SUB: 41,
  SQUEEZE: 43,
  LOG_SOFTMAX: 50,
  PADV2: 60,
  ABS: 101,
  QUANTIZE: 114,
  HARD_SWISH: 117,
} as const;

export const TensorType = { FLOAT32: 0, FLOAT16: 1, INT32: 2, UINT8: 3, INT64: 4, INT16: 7, INT8: 9 } as const;
export type TensorTypeCode = (typeof TensorType)[keyof typeof TensorType];
const TYPE_NAMES: Record<number, string> = {
  0: 'float32',
  1: 'float16',
  2: 'int32',
  3: 'uint8',
  4: 'int64',
  5: 'string',
  6: 'bool',
  7: 'int16',
  9: 'int8',
  10: 'float64',
};
export function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`;
}

/** BuiltinOptions union member indices. */
export const Options = {
  NONE: 0,
  Conv2DOptions: 1,
  DepthwiseConv2DOptions: 2,
  Pool2DOptions: 5,
  FullyConnectedOptions: 8,
  SoftmaxOptions: 9,
  ConcatenationOptions: 10,
  AddOptions: 11,
  ReshapeOptions: 17,
  MulOptions: 21,
  PadOptions: 22,
  ReducerOptions: 27,
  SubOptions: 28,
  SqueezeOptions: 30,
} as const;

export const Padding = { SAME: 0, VALID: 1 } as const;
export const Activation = { NONE: 0, RELU: 1, RELU_N1_TO_1: 2, RELU6: 3, TANH: 4 } as const;
export type ActivationCode = (typeof Activation)[keyof typeof Activation];

export interface QuantDesc {
  scale: number[];
  zeroPoint: number[];
  /** The axis `scale` runs along when it has more than one entry (per-channel). */
  quantizedDimension?: number;
  min?: number[];
  max?: number[];
}

export interface TensorDesc {
  name: string;
  shape: number[];
  type: TensorTypeCode;
  /** Index into ModelDesc.buffers; 0 (the empty buffer) for activations. */
  buffer: number;
  quantization?: QuantDesc;
}

export interface OperatorDesc {
  op: number;
  inputs: number[];
  outputs: number[];
  /** Builtin options: the union member and its table. */
  options?: { type: number; table: FbTable };
  /** Operator version (kernels with int8 support declare a higher one). */
  version?: number;
  /** For CUSTOM ops. */
  customCode?: string;
}

export interface ModelDesc {
  description: string;
  /** buffers[0] must be empty (TFLite's convention for tensors without data). */
  buffers: Uint8Array[];
  tensors: TensorDesc[];
  operators: OperatorDesc[];
  inputs: number[];
  outputs: number[];
  subgraphName?: string;
}

// Option tables, field ids as in schema.fbs.
export const opts = {
  conv2d: (padding: number, stride: number, act: number, dilation = 1) => ({
    type: Options.Conv2DOptions,
    table: fb.table([fb.i8(padding), fb.i32(stride), fb.i32(stride), fb.i8(act), fb.i32(dilation), fb.i32(dilation)]),
  }),
  pool2d: (padding: number, stride: number, filter: number, act = 0) => ({
    type: Options.Pool2DOptions,
    table: fb.table([fb.i8(padding), fb.i32(stride), fb.i32(stride), fb.i32(filter), fb.i32(filter), fb.i8(act)]),
  }),
  fullyConnected: (act: number, asymmetricQuantizeInputs = false) => ({
    type: Options.FullyConnectedOptions,
    // weights_format DEFAULT, keep_num_dims false: output is [batch, units].
    table: fb.table([fb.i8(act), fb.i8(0), fb.bool(false), asymmetricQuantizeInputs ? fb.bool(true) : null]),
  }),
  reshape: (newShape: number[]) => ({ type: Options.ReshapeOptions, table: fb.table([fb.vec('i32', newShape)]) }),
  softmax: (beta = 1) => ({ type: Options.SoftmaxOptions, table: fb.table([fb.f32(beta)]) }),
  add: (act = 0) => ({ type: Options.AddOptions, table: fb.table([fb.i8(act)]) }),
  mul: (act = 0) => ({ type: Options.MulOptions, table: fb.table([fb.i8(act)]) }),
  sub: (act = 0) => ({ type: Options.SubOptions, table: fb.table([fb.i8(act)]) }),
  depthwiseConv2d: (padding: number, stride: number, depthMultiplier: number, act: number, dilation = 1) => ({
    type: Options.DepthwiseConv2DOptions,
    table: fb.table([fb.i8(padding), fb.i32(stride), fb.i32(stride), fb.i32(depthMultiplier), fb.i8(act), fb.i32(dilation), fb.i32(dilation)]),
  }),
  concatenation: (axis: number, act = 0) => ({ type: Options.ConcatenationOptions, table: fb.table([fb.i32(axis), fb.i8(act)]) }),
  pad: () => ({ type: Options.PadOptions, table: fb.table([]) }),
  /** MEAN and the other reductions. */
  reducer: (keepDims: boolean) => ({ type: Options.ReducerOptions, table: fb.table([fb.bool(keepDims)]) }),
  squeeze: (dims: number[]) => ({ type: Options.SqueezeOptions, table: fb.table([fb.vec('i32', dims)]) }),
};

function quantTable(q: QuantDesc): FbTable {
  return fb.table([
    q.min ? fb.vec('f32', q.min) : null,
    q.max ? fb.vec('f32', q.max) : null,
    fb.vec('f32', q.scale),
    fb.vec(
      'i64',
      q.zeroPoint.map((z) => BigInt(z)),
    ),
    null,
    null, // details_type, details
    q.quantizedDimension ? fb.i32(q.quantizedDimension) : null,
  ]);
}

/** Serialises a model description into TFLite flatbuffer bytes (schema version 3). */
export function serializeModel(m: ModelDesc): Uint8Array {
  if (m.buffers.length === 0 || m.buffers[0].length !== 0) throw new Error('buffers[0] must be the empty buffer');
  // One OperatorCode per distinct (op, version, custom code).
  const codes: { op: number; version: number; custom?: string }[] = [];
  const codeIndex = (o: OperatorDesc) => {
    const version = o.version ?? 1;
    let i = codes.findIndex((c) => c.op === o.op && c.version === version && c.custom === o.customCode);
    if (i < 0) i = codes.push({ op: o.op, version, custom: o.customCode }) - 1;
    return i;
  };
  const operators = m.operators.map((o) =>
    fb.table([
      fb.u32(codeIndex(o)),
      fb.vec('i32', o.inputs),
      fb.vec('i32', o.outputs),
      o.options ? fb.u8(o.options.type) : null,
      o.options ? o.options.table : null,
    ]),
  );
  const tensors = m.tensors.map((t) =>
    fb.table([fb.vec('i32', t.shape), fb.i8(t.type), fb.u32(t.buffer), fb.str(t.name), t.quantization ? quantTable(t.quantization) : null]),
  );
  const subgraph = fb.table([fb.tables(tensors), fb.vec('i32', m.inputs), fb.vec('i32', m.outputs), fb.tables(operators), fb.str(m.subgraphName ?? 'main')]);
  const operatorCodes = codes.map((c) =>
    fb.table([
      // Codes above 127 do not fit the old int8 field: it then holds PLACEHOLDER_FOR_GREATER_OP_CODES.
      fb.i8(Math.min(c.op, 127)),
      c.custom != null ? fb.str(c.custom) : null,
      fb.i32(c.version),
      fb.i32(c.op),
    ]),
  );
  const buffers = m.buffers.map((b) => fb.table([b.length ? fb.bytes(b, 16) : null]));
  const model = fb.table([fb.u32(TFLITE_SCHEMA_VERSION), fb.tables(operatorCodes), fb.tables([subgraph]), fb.str(m.description), fb.tables(buffers)]);
  return serializeFlatBuffer(model, TFLITE_IDENTIFIER);
}

export interface ParsedTensor {
  index: number;
  name: string;
  shape: number[];
  type: number;
  typeName: string;
  buffer: number;
  scale: number[];
  zeroPoint: number[];
  quantizedDimension: number;
}

export interface ParsedOperatorCode {
  code: number;
  name: string;
  version: number;
  customCode: string | null;
}

export interface ParsedModel {
  version: number;
  description: string | null;
  operatorCodes: ParsedOperatorCode[];
  subgraphCount: number;
  tensors: ParsedTensor[];
  inputs: number[];
  outputs: number[];
  /** opcode index, inputs and outputs of each operator of the first subgraph. */
  operators: { opcodeIndex: number; name: string; inputs: number[]; outputs: number[]; optionsType: number }[];
  /** Byte length of each buffer. */
  bufferSizes: number[];
}

/** True when bytes 4–8 hold the TFLite file identifier. */
export function hasTfliteIdentifier(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && String.fromCharCode(...bytes.subarray(4, 8)) === TFLITE_IDENTIFIER;
}

/** Reads the structure of a TFLite file (not the weights). Throws on malformed files. */
export function parseModel(bytes: Uint8Array): ParsedModel {
  if (!hasTfliteIdentifier(bytes)) throw new Error('not a TFLite file (no TFL3 identifier)');
  const r = new FbReader(bytes);
  const root = r.root();
  const operatorCodes = r.tables(root, 1).map((t): ParsedOperatorCode => {
    // Readers take the larger of the two fields: old files only set the int8 one.
    const code = Math.max(r.scalar(t, 0, 'i8', 0), r.scalar(t, 3, 'i32', 0));
    return { code, name: opName(code), version: r.scalar(t, 2, 'i32', 1), customCode: r.string(t, 1) };
  });
  const subgraphs = r.tables(root, 2);
  const buffers = r.tables(root, 4);
  const sg = subgraphs[0];
  const tensors = sg
    ? r.tables(sg, 0).map((t, index): ParsedTensor => {
        const q = r.ref(t, 4);
        const type = r.scalar(t, 1, 'i8', 0);
        return {
          index,
          name: r.string(t, 3) ?? '',
          shape: r.scalars(t, 0, 'i32'),
          type,
          typeName: typeName(type),
          buffer: r.scalar(t, 2, 'u32', 0),
          scale: q ? r.scalars(q, 2, 'f32') : [],
          zeroPoint: q ? r.scalars(q, 3, 'i64') : [],
          quantizedDimension: q ? r.scalar(q, 6, 'i32', 0) : 0,
        };
      })
    : [];
  const operators = sg
    ? r.tables(sg, 3).map((o) => {
        const opcodeIndex = r.scalar(o, 0, 'u32', 0);
        return {
          opcodeIndex,
          name: operatorCodes[opcodeIndex]?.name ?? `bad opcode index ${opcodeIndex}`,
          inputs: r.scalars(o, 1, 'i32'),
          outputs: r.scalars(o, 2, 'i32'),
          optionsType: r.scalar(o, 3, 'u8', 0),
        };
      })
    : [];
  return {
    version: r.scalar(root, 0, 'u32', 0),
    description: r.string(root, 3),
    operatorCodes,
    subgraphCount: subgraphs.length,
    tensors,
    inputs: sg ? r.scalars(sg, 1, 'i32') : [],
    outputs: sg ? r.scalars(sg, 2, 'i32') : [],
    operators,
    bufferSizes: buffers.map((b) => r.vector(b, 0)?.length ?? 0),
  };
}

/** The data of buffer `index` (for tests and the reference interpreter). */
export function bufferData(bytes: Uint8Array, index: number): Uint8Array {
  const r = new FbReader(bytes);
  const b = r.tables(r.root(), 4)[index];
  if (b == null) throw new Error(`no buffer ${index}`);
  return r.bytesOf(b, 0) ?? new Uint8Array(0);
}
