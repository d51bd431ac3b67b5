/**
 * The ONNX model format written by hand: a protobuf encoder for the few messages a model needs
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto). Field numbers
 * are those of onnx/onnx.proto3; only writing is needed, and it is small enough not to warrant a
 * protobuf dependency.
 */

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type DataTypeId = (typeof DataType)[keyof typeof DataType];

/** A protobuf message being written: append fields, then take the bytes. */
class Writer {
  private chunks: Uint8Array[] = [];
  private length = 0;

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  /** A varint (negative numbers as 64-bit two's complement, as int64 fields want). */
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) byte |= 0x80;
      out.push(byte);
    } while (x !== 0n);
    this.push(Uint8Array.from(out));
  }

  private key(field: number, wire: 0 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }

  /** A packed repeated varint field (dims, ints attributes). */
  packedInts(field: number, vs: readonly number[]): this {
    const inner = new Writer();
    for (const v of vs) inner.varint(v);
    return this.bytes(field, inner.finish());
  }

  /** A packed repeated float field. */
  packedFloats(field: number, vs: readonly number[]): this {
    const b = new Uint8Array(vs.length * 4);
    const dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** A constant tensor: float32, int64 or bool values with their shape. */
export interface TensorValue {
  name: string;
  dims: readonly number[];
  type: DataTypeId;
  /** Little-endian raw bytes in the ONNX layout (row-major). */
  raw: Uint8Array;
}

export type AttributeValue = number | string | readonly number[] | { floats: readonly number[] } | { tensor: TensorValue };

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, AttributeValue>>;
}

/** A graph input or output: element type and shape (a string is a symbolic dimension such as 'N'). */
export interface ValueSpec {
  name: string;
  type: DataTypeId;
  shape: readonly (number | string)[];
}

export interface GraphSpec {
  name: string;
  nodes: readonly NodeSpec[];
  initializers: readonly TensorValue[];
  inputs: readonly ValueSpec[];
  outputs: readonly ValueSpec[];
}

function tensorProto(t: TensorValue): Writer {
  const w = new Writer();
  if (t.dims.length) w.packedInts(1, t.dims);
  return w.int(2, t.type).string(8, t.name).bytes(9, t.raw);
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1,
  ATTR_INT = 2,
  ATTR_STRING = 3,
  ATTR_TENSOR = 4,
  ATTR_FLOATS = 6,
  ATTR_INTS = 7;

function isInts(v: AttributeValue): v is readonly number[] {
  return Array.isArray(v);
}

function attributeProto(name: string, v: AttributeValue): Writer {
  const w = new Writer().string(1, name);
  if (typeof v === 'number') {
    // A plain number is an INT attribute when integral; FLOAT attributes are written { floats: [x] }.
    return Number.isInteger(v) ? w.int(20, ATTR_INT).int(3, v) : w.int(20, ATTR_FLOAT).float(2, v);
  }
  if (typeof v === 'string') return w.int(20, ATTR_STRING).string(4, v);
  if (isInts(v)) return w.int(20, ATTR_INTS).packedInts(8, v);
  if ('floats' in v) return v.floats.length === 1 ? w.int(20, ATTR_FLOAT).float(2, v.floats[0]) : w.int(20, ATTR_FLOATS).packedFloats(7, v.floats);
  return w.int(20, ATTR_TENSOR).message(5, tensorProto(v.tensor));
}

function nodeProto(n: NodeSpec, index: number): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.op}_${index}`).string(4, n.op);
  for (const [k, v] of Object.entries(n.attributes ?? {})) w.message(5, attributeProto(k, v));
  return w;
}

function valueInfo(v: ValueSpec): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, v.type).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

/** IR version 8 with opset 17: what onnxruntime 1.14 and later load. */
export const IR_VERSION = 8;
export const OPSET = 17;

/** Serialises a whole model. */
export function encodeModel(g: GraphSpec, producer = 'advsign'): Uint8Array {
  const graph = new Writer();
  g.nodes.forEach((n, i) => graph.message(1, nodeProto(n, i)));
  graph.string(2, g.name);
  for (const t of g.initializers) graph.message(5, tensorProto(t));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  return new Writer().int(1, IR_VERSION).string(2, producer).message(7, graph).message(8, new Writer().string(1, '').int(2, OPSET)).finish();
}

/** Raw bytes of float32 values. */
export function floatBytes(v: Float32Array | readonly number[]): Uint8Array {
  const f = v instanceof Float32Array ? v : Float32Array.from(v);
  return new Uint8Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
}

/** Raw bytes of int64 values. */
export function int64Bytes(v: readonly number[]): Uint8Array {
  return new Uint8Array(BigInt64Array.from(v.map((x) => BigInt(x))).buffer);
}
