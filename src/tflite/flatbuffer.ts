/**
 * A small FlatBuffers writer and reader, enough for TFLite model files (schema.fbs).
 *
 * The writer is declarative: describe tables, vectors and strings as plain objects, then
 * `serializeFlatBuffer(root, identifier)` lays them out front to back. The official builders
 * write back to front; front to back is simpler to follow and equally valid, because the format
 * only requires that every uoffset points forward (children are written after their parent) and
 * that scalars are aligned to their size relative to the start of the buffer. vtables are
 * written just before their table (soffset > 0) and are not deduplicated: TFLite files are
 * dominated by weight bytes, so the few saved bytes would not matter.
 */

export type ScalarKind = 'bool' | 'i8' | 'u8' | 'i16' | 'u16' | 'i32' | 'u32' | 'f32' | 'i64' | 'f64';

const SIZE: Record<ScalarKind, number> = { bool: 1, i8: 1, u8: 1, i16: 2, u16: 2, i32: 4, u32: 4, f32: 4, i64: 8, f64: 8 };

export interface FbScalar {
  kind: 'scalar';
  type: ScalarKind;
  value: number | bigint | boolean;
}
export interface FbTable {
  kind: 'table';
  fields: (FbField | undefined | null)[];
}
export interface FbString {
  kind: 'string';
  value: string;
}
/** A vector of scalars; `align` raises the alignment of the first element (TFLite buffers use 16). */
export interface FbScalarVector {
  kind: 'scalars';
  type: ScalarKind;
  values: ArrayLike<number> | readonly bigint[];
  align?: number;
}
/** Raw bytes as a [ubyte] vector, copied verbatim. */
export interface FbBytes {
  kind: 'bytes';
  data: Uint8Array;
  align?: number;
}
export interface FbTableVector {
  kind: 'tables';
  items: FbTable[];
}
export type FbRef = FbTable | FbString | FbScalarVector | FbBytes | FbTableVector;
export type FbField = FbScalar | FbRef;

// Small constructors keep schema code readable.
export const fb = {
  table: (fields: (FbField | undefined | null)[]): FbTable => ({ kind: 'table', fields }),
  str: (value: string): FbString => ({ kind: 'string', value }),
  bool: (value: boolean): FbScalar => ({ kind: 'scalar', type: 'bool', value }),
  i8: (value: number): FbScalar => ({ kind: 'scalar', type: 'i8', value }),
  u8: (value: number): FbScalar => ({ kind: 'scalar', type: 'u8', value }),
  i32: (value: number): FbScalar => ({ kind: 'scalar', type: 'i32', value }),
  u32: (value: number): FbScalar => ({ kind: 'scalar', type: 'u32', value }),
  f32: (value: number): FbScalar => ({ kind: 'scalar', type: 'f32', value }),
  vec: (type: ScalarKind, values: ArrayLike<number> | readonly bigint[], align?: number): FbScalarVector => ({ kind: 'scalars', type, values, align }),
  bytes: (data: Uint8Array, align?: number): FbBytes => ({ kind: 'bytes', data, align }),
  tables: (items: FbTable[]): FbTableVector => ({ kind: 'tables', items }),
};

const align = (n: number, a: number) => (n + a - 1) & ~(a - 1);

class ByteSink {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  len = 0;

  reserve(end: number): void {
    if (end <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < end) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Reserves `size` bytes at the next multiple of `a` (the gap stays zero) and returns where. */
  alloc(size: number, a: number): number {
    const at = align(this.len, a);
    this.reserve(at + size);
    this.len = at + size;
    return at;
  }

  scalar(at: number, type: ScalarKind, value: number | bigint | boolean): void {
    const v = this.view;
    switch (type) {
      case 'bool':
        v.setUint8(at, value ? 1 : 0);
        break;
      case 'i8':
        v.setInt8(at, Number(value));
        break;
      case 'u8':
        v.setUint8(at, Number(value));
        break;
      case 'i16':
        v.setInt16(at, Number(value), true);
        break;
      case 'u16':
        v.setUint16(at, Number(value), true);
        break;
      case 'i32':
        v.setInt32(at, Number(value), true);
        break;
      case 'u32':
        v.setUint32(at, Number(value), true);
        break;
      case 'f32':
        v.setFloat32(at, Number(value), true);
        break;
      case 'f64':
        v.setFloat64(at, Number(value), true);
        break;
      case 'i64':
        v.setBigInt64(at, typeof value === 'bigint' ? value : BigInt(Math.round(Number(value))), true);
        break;
    }
  }

  /** Patches the uoffset stored at `at` to point at `target` (always forward here). */
  offset(at: number, target: number): void {
    if (target <= at) throw new Error(`flatbuffer: offset must point forward (${at} → ${target})`);
    this.view.setUint32(at, target - at, true);
  }
}

function writeRef(out: ByteSink, node: FbRef): number {
  switch (node.kind) {
    case 'string': {
      const bytes = new TextEncoder().encode(node.value);
      const at = out.alloc(4 + bytes.length + 1, 4);
      out.view.setUint32(at, bytes.length, true);
      out.buf.set(bytes, at + 4);
      return at;
    }
    case 'bytes':
    case 'scalars': {
      const size = node.kind === 'bytes' ? 1 : SIZE[node.type];
      const count = node.kind === 'bytes' ? node.data.length : node.values.length;
      const a = Math.max(4, size, node.align ?? 1);
      // The length prefix sits right before the first element, which gets the alignment.
      const first = align(out.len + 4, a);
      out.reserve(first + count * size);
      out.len = first + count * size;
      const at = first - 4;
      out.view.setUint32(at, count, true);
      if (node.kind === 'bytes') out.buf.set(node.data, first);
      else for (let i = 0; i < count; i++) out.scalar(first + i * size, node.type, (node.values as ArrayLike<number | bigint>)[i]);
      return at;
    }
    case 'tables': {
      const at = out.alloc(4 + 4 * node.items.length, 4);
      out.view.setUint32(at, node.items.length, true);
      node.items.forEach((t, i) => out.offset(at + 4 + 4 * i, writeTable(out, t)));
      return at;
    }
    case 'table':
      return writeTable(out, node);
  }
}

function writeTable(out: ByteSink, t: FbTable): number {
  const n = t.fields.length;
  // Inline sizes: scalars by type, references as 4-byte uoffsets. Larger first packs tightly.
  const present = t.fields
    .map((f, id) => ({ f, id }))
    .filter((e): e is { f: FbField; id: number } => e.f != null)
    .map((e) => ({ ...e, size: e.f.kind === 'scalar' ? SIZE[e.f.type] : 4 }))
    .sort((a, b) => b.size - a.size || a.id - b.id);
  const maxAlign = Math.max(4, ...present.map((e) => e.size));
  const vtSize = 4 + 2 * n;
  const vt = out.alloc(vtSize, 2);
  const start = align(out.len, maxAlign);
  const fieldAt = new Map<number, number>();
  let p = start + 4; // after the soffset to the vtable
  for (const e of present) {
    p = align(p, e.size);
    fieldAt.set(e.id, p);
    p += e.size;
  }
  const tableSize = p - start;
  out.reserve(start + tableSize);
  out.len = start + tableSize;
  out.view.setUint16(vt, vtSize, true);
  out.view.setUint16(vt + 2, tableSize, true);
  for (let id = 0; id < n; id++) out.view.setUint16(vt + 4 + 2 * id, fieldAt.has(id) ? fieldAt.get(id)! - start : 0, true);
  out.view.setInt32(start, start - vt, true);
  for (const e of present) if (e.f.kind === 'scalar') out.scalar(fieldAt.get(e.id)!, e.f.type, e.f.value);
  // Children follow the table, so every offset points forward.
  for (const e of present) if (e.f.kind !== 'scalar') out.offset(fieldAt.get(e.id)!, writeRef(out, e.f));
  return start;
}

/** Serialises a root table with a 4-character file identifier (e.g. 'TFL3'). */
export function serializeFlatBuffer(root: FbTable, identifier: string): Uint8Array {
  if (identifier.length !== 4) throw new Error('flatbuffer identifier must have 4 characters');
  const out = new ByteSink();
  out.alloc(8, 8);
  for (let i = 0; i < 4; i++) out.buf[4 + i] = identifier.charCodeAt(i);
  out.offset(0, writeTable(out, root));
  // Pad to 16 so the file can be concatenated or mapped without surprises.
  out.alloc(align(out.len, 16) - out.len, 1);
  return out.buf.slice(0, out.len);
}

/** Minimal reader: tables, scalars, strings and vectors by field id, with bounds checks. */
export class FbReader {
  readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private check(at: number, size: number): void {
    if (at < 0 || at + size > this.bytes.length)
      throw new RangeError(`flatbuffer: read of ${size} bytes at ${at} is outside the ${this.bytes.length}-byte file`);
  }

  u32(at: number): number {
    this.check(at, 4);
    return this.view.getUint32(at, true);
  }
  i32(at: number): number {
    this.check(at, 4);
    return this.view.getInt32(at, true);
  }

  identifier(): string {
    this.check(4, 4);
    return String.fromCharCode(...this.bytes.subarray(4, 8));
  }

  root(): number {
    return this.u32(0);
  }

  /** Absolute position of field `id` of the table at `table`, or 0 when absent. */
  field(table: number, id: number): number {
    const vt = table - this.i32(table);
    this.check(vt, 4);
    const vtSize = this.view.getUint16(vt, true);
    const slot = 4 + 2 * id;
    if (slot + 2 > vtSize) return 0;
    this.check(vt + slot, 2);
    const off = this.view.getUint16(vt + slot, true);
    return off ? table + off : 0;
  }

  scalar(table: number, id: number, type: ScalarKind, def: number): number {
    const at = this.field(table, id);
    if (!at) return def;
    this.check(at, SIZE[type]);
    const v = this.view;
    switch (type) {
      case 'bool':
      case 'u8':
        return v.getUint8(at);
      case 'i8':
        return v.getInt8(at);
      case 'i16':
        return v.getInt16(at, true);
      case 'u16':
        return v.getUint16(at, true);
      case 'i32':
        return v.getInt32(at, true);
      case 'u32':
        return v.getUint32(at, true);
      case 'f32':
        return v.getFloat32(at, true);
      case 'f64':
        return v.getFloat64(at, true);
      case 'i64':
        return Number(v.getBigInt64(at, true));
    }
  }

  /** The target of the uoffset stored in field `id`, or 0 when absent. */
  ref(table: number, id: number): number {
    const at = this.field(table, id);
    return at ? at + this.u32(at) : 0;
  }

  string(table: number, id: number): string | null {
    const at = this.ref(table, id);
    if (!at) return null;
    const len = this.u32(at);
    this.check(at + 4, len);
    return new TextDecoder().decode(this.bytes.subarray(at + 4, at + 4 + len));
  }

  /** Start and length of a vector field (elements begin at start). */
  vector(table: number, id: number): { start: number; length: number } | null {
    const at = this.ref(table, id);
    if (!at) return null;
    return { start: at + 4, length: this.u32(at) };
  }

  tables(table: number, id: number): number[] {
    const v = this.vector(table, id);
    if (!v) return [];
    this.check(v.start, 4 * v.length);
    return Array.from({ length: v.length }, (_, i) => v.start + 4 * i + this.u32(v.start + 4 * i));
  }

  scalars(table: number, id: number, type: ScalarKind): number[] {
    const v = this.vector(table, id);
    if (!v) return [];
    const size = SIZE[type];
    this.check(v.start, size * v.length);
    const out: number[] = [];
    for (let i = 0; i < v.length; i++) {
      const at = v.start + i * size;
      switch (type) {
        case 'bool':
        case 'u8':
          out.push(this.view.getUint8(at));
          break;
        case 'i8':
          out.push(this.view.getInt8(at));
          break;
        case 'i16':
          out.push(this.view.getInt16(at, true));
          break;
        case 'u16':
          out.push(this.view.getUint16(at, true));
          break;
        case 'i32':
          out.push(this.view.getInt32(at, true));
          break;
        case 'u32':
          out.push(this.view.getUint32(at, true));
          break;
        case 'f32':
          out.push(this.view.getFloat32(at, true));
          break;
        case 'f64':
          out.push(this.view.getFloat64(at, true));
          break;
        case 'i64':
          out.push(Number(this.view.getBigInt64(at, true)));
          break;
      }
    }
    return out;
  }

  bytesOf(table: number, id: number): Uint8Array | null {
    const v = this.vector(table, id);
    if (!v) return null;
    this.check(v.start, v.length);
    return this.bytes.subarray(v.start, v.start + v.length);
  }
}
