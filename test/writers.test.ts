/**
 * Nothing half-written: every writer (sticker, export, train, evaluate's JSON and HTML, the
 * daemon's snapshots) keeps the previous file whole when the disk fills up (`ulimit -f`) or the
 * process is SIGKILLed mid-write, and the next run leaves no temporary file behind. Outputs that
 * cannot be written are refused before any work, in one line.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { loadClassifier, saveModel } from '../src/inference/model-io';
import { startServer } from '../src/server/app';
import { DEFAULT_CONFIG } from '../src/server/config';
import { memoryLogger } from '../src/server/log';
import { createGpio, MemoryDriver } from '../src/gpio';
import { checkWritable, writeFileAtomic } from '../src/util/atomic-file';
import { BIN, ROOT, RunResult, runCli, tempDir, tinyStickerArgs } from './helpers';

const PRELOAD = path.join(__dirname, 'fault-preload.js');

/** Runs advsign with the fault preload: it hangs half-way through the first write to a path matching `fault`, and is SIGKILLed there. */
function runUntilFault(args: string[], fault: RegExp): Promise<{ faulted: boolean; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--require', PRELOAD, BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, ADVSIGN_FAULT_WRITE: fault.source },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let faulted = false;
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!faulted && stderr.includes('advsign-fault: stopped')) {
        faulted = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', () => resolve({ faulted, stderr }));
  });
}

/** Runs advsign in a shell whose file-size limit is `kb` KiB: writes beyond it fail (EFBIG), as on a full disk. */
function runWithFileLimit(args: string[], kb: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `ulimit -f ${kb}; exec "$@"`, 'bash', process.execPath, BIN, ...args], { cwd: ROOT });
    let stdout = '',
      stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Everything in a folder (names starting with '.' included), with contents. */
function snapshot(dir: string): Map<string, Buffer> {
  return new Map(
    fs
      .readdirSync(dir)
      .filter((n) => fs.statSync(path.join(dir, n)).isFile())
      .map((n) => [n, fs.readFileSync(path.join(dir, n))]),
  );
}

function assertUnchanged(before: Map<string, Buffer>, dir: string, what: string): void {
  const now = snapshot(dir);
  for (const [name, bytes] of before) assert.ok(now.get(name)?.equals(bytes), `${what}: ${name} changed`);
}

function temps(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /\.tmp-|\.saving-/.test(n));
}

describe('writers: nothing half-written', function () {
  this.timeout(180000);
  let dir: string;
  let modelDir: string;

  before(async () => {
    await initBackend();
    dir = tempDir();
    modelDir = path.join(dir, 'm');
    await saveModel(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 3 }), modelDir);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sticker: a full disk and a SIGKILL mid-write leave the previous PDF, PNGs and JSON whole; the next run cleans up', async () => {
    const outDir = path.join(dir, 'sticker');
    const sticker = (seed: string) => ['sticker', ...tinyStickerArgs(modelDir, path.join(outDir, 'stop.pdf'), '--canvas', '32', '--seed', seed)];
    const first = await runCli(sticker('1'));
    assert.equal(first.code, 0, first.stderr);
    const good = snapshot(outDir);
    assert.equal(good.size, 5); // PDF, JSON, sticker, sign and layer PNGs
    assert.ok(good.get('stop.pdf')!.subarray(-6).toString().includes('%%EOF'));

    const full = await runWithFileLimit(sticker('2'), 512); // the 1.5 MB PDF does not fit
    assert.equal(full.code, 2, full.stderr);
    assert.match(full.stderr, /^advsign: error: cannot write \S*stop\.pdf: file too large/m);
    assertUnchanged(good, outDir, 'disk full');
    assert.deepEqual(temps(outDir), [], 'the partial temporary file is removed');

    const killed = await runUntilFault(sticker('3'), /stop-sign\.png/);
    assert.ok(killed.faulted, killed.stderr.slice(-300));
    assertUnchanged(good, outDir, 'SIGKILL while writing the sign PNG');
    assert.ok(temps(outDir).length > 0, 'the killed run left its temporary files');

    const again = await runCli(sticker('4'));
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(temps(outDir), [], 'the next run removed them');
    assert.deepEqual([...snapshot(outDir).keys()].sort(), [...good.keys()].sort());
  });

  it('export: a SIGKILL mid-write keeps the old .tflite; the next export leaves no temporary file', async () => {
    const out = path.join(dir, 'tfl', 'm.tflite');
    const exp = ['export', '--model', modelDir, '--out', out, '--verify', '0'];
    assert.equal((await runCli(exp)).code, 0);
    const good = fs.readFileSync(out);
    const killed = await runUntilFault(exp, /m\.tflite/);
    assert.ok(killed.faulted, killed.stderr.slice(-300));
    assert.ok(fs.readFileSync(out).equals(good), 'the old model is whole');
    assert.equal((await runCli(exp)).code, 0);
    assert.deepEqual(temps(path.dirname(out)), []);
  });

  it('train: a SIGKILL while saving keeps the old model loadable; the next run leaves no staging folder', async () => {
    const out = path.join(dir, 'models', 'net');
    const train = ['train', '--data', 'synthetic', '--per-class', '12', '--epochs', '1', '--arch', 'cnn4-small', '--workers', '0', '--quiet', '--out', out];
    const first = await runCli(train);
    assert.equal(first.code, 0, first.stderr);
    const good = snapshot(out);
    const killed = await runUntilFault(train, /\.net\.saving-[^/]*\/weights\.bin$/);
    assert.ok(killed.faulted, killed.stderr.slice(-300));
    assertUnchanged(good, out, 'SIGKILL while saving');
    assert.equal((await loadClassifier(out)).numClasses, 43);
    assert.ok(temps(path.dirname(out)).length > 0, 'the killed run left its staging folder');
    const again = await runCli(train);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(temps(path.dirname(out)), []);
  });

  it('evaluate: --json and --report survive a full disk and a SIGKILL mid-write', async () => {
    const outDir = path.join(dir, 'eval');
    const evaluate = [
      'evaluate',
      '--model',
      modelDir,
      '--data',
      'synthetic',
      '--limit',
      '43',
      '--quiet',
      '--json',
      path.join(outDir, 'r.json'),
      '--report',
      path.join(outDir, 'r.html'),
    ];
    assert.equal((await runCli(evaluate)).code, 0);
    const good = snapshot(outDir);
    const full = await runWithFileLimit(evaluate, 8);
    assert.equal(full.code, 2, full.stderr);
    assert.match(full.stderr, /^advsign: error: cannot write \S*r\.(json|html): file too large/m);
    assertUnchanged(good, outDir, 'disk full');
    for (const target of [/r\.html/, /r\.json/]) {
      const killed = await runUntilFault(evaluate, target);
      assert.ok(killed.faulted, killed.stderr.slice(-300));
      assertUnchanged(good, outDir, `SIGKILL while writing ${target.source}`);
    }
    assert.equal((await runCli(evaluate)).code, 0);
    assert.deepEqual(temps(outDir), []);
  });

  it('outputs that cannot be written are refused before any work, in one line', async () => {
    const t0 = Date.now();
    const cases: [string[], RegExp][] = [
      [['sticker', '--model', modelDir, '--sign', '14', '--target', '1', '--out', '/sys/x.pdf'], /\/sys\/x\.pdf: permission denied/],
      [['evaluate', '--model', modelDir, '--data', 'synthetic', '--json', '/sys/x.json'], /\/sys\/x\.json: permission denied/],
      [['evaluate', '--model', modelDir, '--data', 'synthetic', '--report', dir], /it is a folder/],
      [['export', '--model', modelDir, '--out', '/proc/x.tflite'], /\/proc\/x\.tflite: (\/proc takes no new files|permission denied)/],
      [['train', '--data', 'synthetic', '--out', path.join(modelDir, 'model.json')], /exists and is not a folder/],
      [['attack', '--model', modelDir, '--input', path.join(ROOT, 'README.md'), '--out', '/dev/null'], /not a regular file/],
    ];
    for (const [args, re] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^advsign: error: cannot write .*${re.source}`), args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    // Each refused at once: no optimisation, data loading or training ran first.
    assert.ok(Date.now() - t0 < 30000, `${Date.now() - t0} ms`);
  });
});

describe("writers: the daemon's snapshots", function () {
  this.timeout(60000);

  it('a snapshot killed mid-write leaves only a hidden temporary file, which the next snapshot removes', async () => {
    await initBackend();
    const snaps = tempDir();
    // A process that dies half-way through writing a snapshot (a crash, a power cut).
    const script = `require(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'util', 'atomic-file.js'))}).writeFileAtomic(${JSON.stringify(path.join(snaps, 'advsign-old.png'))}, Buffer.alloc(100000, 7))`;
    const child = spawn(process.execPath, ['--require', PRELOAD, '-e', script], {
      env: { ...process.env, ADVSIGN_FAULT_WRITE: 'advsign-old\\.png' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        if (d.toString().includes('advsign-fault')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the writer exited (${code}) before the fault`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    assert.deepEqual(
      fs.readdirSync(snaps).filter((n) => !n.startsWith('.')),
      [],
      'no partial PNG under its real name',
    );
    assert.equal(temps(snaps).length, 1);

    const clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    const board = new MemoryDriver();
    const gpio = createGpio({ button: 17 }, { driver: board });
    const server = await startServer({
      config: {
        ...DEFAULT_CONFIG,
        sources: [],
        ffmpegInputArgs: [],
        port: 0,
        source: 'synthetic',
        width: 96,
        height: 72,
        fps: 10,
        snapshotDir: snaps,
        logLevel: 'silent',
      },
      classifier: clf,
      gpio,
      logger: memoryLogger('warn'),
    });
    try {
      const t0 = Date.now();
      while (!server.daemon.last && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
      const file = await server.daemon.saveSnapshot();
      assert.deepEqual(fs.readdirSync(snaps), [path.basename(file)], 'the stale temporary file is gone');
    } finally {
      await server.close();
      gpio.close();
      clf.model.dispose();
    }
  });

  it('writeFileAtomic keeps permissions and refuses devices; checkWritable probes the real folder', () => {
    const d = tempDir();
    const f = path.join(d, 'private.json');
    fs.writeFileSync(f, 'old', { mode: 0o600 });
    writeFileAtomic(f, 'new');
    assert.equal(fs.readFileSync(f, 'utf8'), 'new');
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
    assert.throws(() => checkWritable('/dev/null'), /not a regular file/);
    checkWritable(path.join(d, 'new', 'deeper', 'x.json')); // created later, by the write
    assert.deepEqual(fs.readdirSync(d), ['private.json'], 'the probe leaves nothing');
  });
});
