/**
 * Run by an arm64 Node under qemu-aarch64-static (ort-arm64.test.ts): loads onnxruntime-node
 * through the engine module, runs the ONNX graphs the x86 side exported on the x86 side's inputs
 * and writes what it got. Argument: the folder with the graphs and inputs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadOrt, ortStatus } from '../src/inference/engine';

/** A file of float32 values (a Buffer may sit inside a larger pooled ArrayBuffer). */
export function floats(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

async function main(dir: string): Promise<void> {
  const status = ortStatus();
  const ort = loadOrt();
  if (!ort) throw new Error(status.reason);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'spec.json'), 'utf8')) as { n: number; s: number; k: number };
  const x = floats(path.join(dir, 'x.bin'));
  const y = floats(path.join(dir, 'y.bin'));
  const session = await ort.InferenceSession.create(fs.readFileSync(path.join(dir, 'objective.onnx')));
  const out = await session.run({
    x: new ort.Tensor('float32', x, [spec.n, spec.s, spec.s, 3]),
    y: new ort.Tensor('float32', y, [spec.n, spec.k]),
  });
  fs.writeFileSync(path.join(dir, 'arm-logits.bin'), Buffer.from((out.logits.data as Float32Array).buffer));
  fs.writeFileSync(path.join(dir, 'arm-grad.bin'), Buffer.from((out.grad.data as Float32Array).buffer));
  process.stdout.write(JSON.stringify({ arch: process.arch, status }) + '\n');
}

if (require.main === module)
  main(process.argv[2]).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
