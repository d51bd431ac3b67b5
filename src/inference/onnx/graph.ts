/** A small builder for ONNX graphs: fresh value names, constants as initializers, nodes in order. */
import { AttributeValue, DataType, DataTypeId, floatBytes, GraphSpec, int64Bytes, NodeSpec, TensorValue, ValueSpec } from './proto';

export class GraphBuilder {
  private readonly nodes: NodeSpec[] = [];
  private readonly initializers: TensorValue[] = [];
  private readonly inputs: ValueSpec[] = [];
  private readonly outputs: ValueSpec[] = [];
  private readonly scalars = new Map<string, string>();
  /** Initializers by the array they were made from: a graph running the forward twice stores each weight once. */
  private readonly arrays = new WeakMap<object, { name: string; dims: string }>();
  private count = 0;

  fresh(prefix: string): string {
    return `${prefix}_${this.count++}`;
  }

  input(name: string, type: DataTypeId, shape: readonly (number | string)[]): string {
    this.inputs.push({ name, type, shape });
    return name;
  }

  /** Marks `value` as a graph output under `name` (through an Identity when the names differ). */
  output(value: string, name: string, type: DataTypeId, shape: readonly (number | string)[]): void {
    if (value !== name) this.nodes.push({ op: 'Identity', inputs: [value], outputs: [name] });
    this.outputs.push({ name, type, shape });
  }

  floats(prefix: string, values: Float32Array | readonly number[], dims: readonly number[]): string {
    const known = this.arrays.get(values);
    if (known && known.dims === dims.join(',')) return known.name;
    const name = this.fresh(prefix);
    this.initializers.push({ name, dims, type: DataType.FLOAT, raw: floatBytes(values) });
    this.arrays.set(values, { name, dims: dims.join(',') });
    return name;
  }

  int64s(prefix: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = this.fresh(prefix);
    this.initializers.push({ name, dims, type: DataType.INT64, raw: int64Bytes(values) });
    return name;
  }

  /** A float scalar constant, shared between uses. */
  scalar(v: number): string {
    const key = String(v);
    let name = this.scalars.get(key);
    if (!name) {
      name = this.floats('c', [v], []);
      this.scalars.set(key, name);
    }
    return name;
  }

  /** Appends a node with `outputs` fresh outputs; returns their names. */
  ops(op: string, inputs: readonly string[], attributes: Record<string, AttributeValue> = {}, outputs = 1): string[] {
    const names = Array.from({ length: outputs }, () => this.fresh(op.toLowerCase()));
    this.nodes.push({ op, inputs, outputs: names, attributes });
    return names;
  }

  /** Appends a node with one output. */
  op(op: string, inputs: readonly string[], attributes: Record<string, AttributeValue> = {}): string {
    return this.ops(op, inputs, attributes)[0];
  }

  build(name: string): GraphSpec {
    return { name, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs };
  }
}
