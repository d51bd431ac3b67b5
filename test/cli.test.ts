/**
 * The command line as a user meets it: bad input gets one clear line (no stack trace) and a
 * non-zero exit; nothing is left half-written.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { runCli, tempDir } from './helpers';

function assertOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.strictEqual(r.code, 2, `exit code ${r.code}, stderr: ${r.stderr}`);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('advsign: error:'));
  assert.strictEqual(lines.length, 1, r.stderr);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

/** A Kaggle-layout folder with `n` images per class for classes 0..1; `mutate` breaks it. */
async function writeKaggle(dir: string, mutate?: (rows: string[]) => void): Promise<void> {
  fs.mkdirSync(path.join(dir, 'Train', '0'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'Train', '1'), { recursive: true });
  const rows = ['Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path'];
  for (const c of [0, 1]) {
    for (let t = 0; t < 3; t++) {
      const rel = `Train/${c}/0000${c}_0000${t}_00000.png`;
      await sharp({ create: { width: 30, height: 30, channels: 3, background: c ? '#00f' : '#f00' } })
        .png()
        .toFile(path.join(dir, rel));
      rows.push(`30,30,2,2,27,27,${c},${rel}`);
    }
  }
  mutate?.(rows);
  fs.writeFileSync(path.join(dir, 'Train.csv'), rows.join('\n') + '\n');
}

describe('advsign CLI errors', function () {
  this.timeout(60000);

  it('prints usage with --help and exits 0', async () => {
    const r = await runCli(['--help']);
    assert.strictEqual(r.code, 0);
    assert.match(r.stdout, /usage: advsign <command>/);
  });

  it('rejects an unknown command', async () => {
    assertOneLineError(await runCli(['frobnicate']), /unknown command 'frobnicate'/);
  });

  it('rejects an unknown backend name, listing the known ones', async () => {
    assertOneLineError(await runCli(['info', '--backend', 'tpu']), /unknown backend 'tpu'.*wasm/);
    assertOneLineError(await runCli(['info'], { env: { ...process.env, ADVSIGN_BACKEND: 'gpu' } }), /unknown backend 'gpu'/);
  });

  it('rejects an unknown flag', async () => {
    assertOneLineError(await runCli(['train', '--data', 'synthetic', '--epoch', '3']), /Unknown option '--epoch'/);
  });

  it('rejects a missing dataset folder', async () => {
    assertOneLineError(await runCli(['train', '--data', '/nonexistent/gtsrb']), /not found.*\/nonexistent\/gtsrb/);
  });

  it('rejects an empty dataset folder', async () => {
    const dir = tempDir();
    assertOneLineError(await runCli(['train', '--data', dir]), /empty|no GTSRB/i);
  });

  it('rejects a CSV row naming a missing file', async () => {
    const dir = tempDir();
    await writeKaggle(dir, (rows) => rows.push('30,30,2,2,27,27,1,Train/1/00001_00009_00000.png'));
    assertOneLineError(await runCli(['train', '--data', dir]), /00001_00009_00000\.png/);
  });

  it('rejects a file that is not an image', async () => {
    const dir = tempDir();
    await writeKaggle(dir);
    fs.writeFileSync(path.join(dir, 'Train/0/00000_00001_00000.png'), 'this is text, not a PNG');
    assertOneLineError(await runCli(['train', '--data', dir]), /00000_00001_00000\.png/);
  });

  it('rejects a truncated PNG', async () => {
    const dir = tempDir();
    await writeKaggle(dir);
    const f = path.join(dir, 'Train/1/00001_00002_00000.png');
    const bytes = fs.readFileSync(f);
    fs.writeFileSync(f, bytes.subarray(0, Math.floor(bytes.length / 2)));
    assertOneLineError(await runCli(['train', '--data', dir]), /00001_00002_00000\.png/);
  });

  it('rejects a corrupt model.json and a model whose weights do not match', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'model.json'), '{"modelTopology": {"class_name": ');
    assertOneLineError(await runCli(['evaluate', '--model', dir, '--data', 'synthetic']), /corrupt model file/);
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ hello: 'world' }));
    assertOneLineError(
      await runCli(['evaluate', '--model', dir, '--data', 'synthetic']),
      /is not a TensorFlow.js model \(modelTopology or weightsManifest missing\)/,
    );
  });

  it('rejects a model folder that does not exist', async () => {
    assertOneLineError(await runCli(['evaluate', '--model', '/nonexistent/model', '--data', 'synthetic']), /model not found/);
  });

  it('reports the backend and why the others are unavailable (info --json)', async () => {
    const r = await runCli(['info', '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { backend: { backend: string; attempts: { name: string; ok: boolean; reason: string }[] } };
    assert.ok(['tensorflow', 'wasm', 'cpu'].includes(info.backend.backend));
    const chosen = info.backend.attempts.find((a) => a.ok);
    assert.strictEqual(chosen?.name, info.backend.backend);
    for (const a of info.backend.attempts.filter((x) => !x.ok)) assert.ok(a.reason.length > 0);
  });
});
