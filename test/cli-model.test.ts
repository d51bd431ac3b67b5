/**
 * The deployed model as the target, from the command line: a .tflite exported by `advsign export`
 * and a Keras-style one (30×30, 0–255 pixels, softmax) through evaluate, attack and serve, with
 * Square's queries, the transfer attack, and one-line errors for what cannot work. Data: the
 * shared GTSRB copy when present, else synthetic signs.
 */
import * as assert from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { io as ioClient } from 'socket.io-client';
import { initBackend } from '../src/inference/backend';
import { loadLayersModel } from '../src/inference/model-io';
import { renderSign } from '../src/data/synthetic';
import { encodePng } from '../src/data/image-io';
import { kerasStyleTflite, opZooTflite } from './foreign-models';
import { BIN, ROOT, runCli, sharedGtsrb, tempDir } from './helpers';

interface Row {
  attack: string;
  eps: number;
  accuracy: number;
  successRate: number | null;
  meanQueries: number | null;
  queriesPerSecond: number | null;
}
interface Report {
  n: number;
  clean: { accuracy: number };
  results: Row[];
  modelInfo: { kind: string; predictions: string; gradients: string | null; outputs: string; input: { height: number; range: { lo: number; hi: number } } };
}

describe('the deployed model as the target (CLI)', function () {
  this.timeout(300000);
  const data = sharedGtsrb() ?? 'synthetic';
  let dir: string;
  const file = (name: string) => path.join(dir, name);
  const evaluate = async (args: string[]): Promise<Report> => {
    const r = await runCli(['evaluate', '--data', data, '--limit', '43', '--quiet', '--json', '-', ...args]);
    assert.strictEqual(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Report;
  };
  const at = (rep: Report, attack: string, eps: number) => rep.results.find((r) => r.attack === attack && Math.abs(r.eps - eps) < 1e-9) as Row;

  before(async () => {
    dir = tempDir();
    const e = await runCli(['export', '--model', 'models/gtsrb-cnn', '--out', file('model.tflite'), '--verify', '0']);
    assert.strictEqual(e.code, 0, e.stderr);
    await initBackend();
    const m = await loadLayersModel(path.join(ROOT, 'models', 'gtsrb-cnn'));
    fs.writeFileSync(file('keras.tflite'), kerasStyleTflite(m));
    m.dispose();
    fs.writeFileSync(file('abs.tflite'), opZooTflite({ withAbs: true }));
    fs.writeFileSync(file('dilated.tflite'), opZooTflite({ dilated: true }));
    fs.writeFileSync(file('labels5.txt'), 'one\ntwo\nthree\nfour\nfive\n');
  });

  it('evaluate on the exported file: same figures as the model it came from; Square queries; transfer', async () => {
    const eps = 8 / 255;
    const own = await evaluate(['--model', 'models/gtsrb-cnn', '--attack', 'fgsm', '--eps', '0,8/255']);
    const t = await evaluate([
      '--model',
      file('model.tflite'),
      '--attack',
      'fgsm,square,transfer',
      '--source-model',
      'models/gtsrb-cnn-robust',
      '--eps',
      '0,8/255',
      '--queries',
      '60',
    ]);
    assert.strictEqual(t.modelInfo.kind, 'tflite');
    assert.match(t.modelInfo.predictions, /TFLite interpreter/);
    assert.match(t.modelInfo.gradients ?? '', /^onnxruntime \(the file's graph rebuilt as ONNX/);
    assert.strictEqual(t.clean.accuracy, own.clean.accuracy, 'the interpreter computes what tfjs does');
    // FGSM through the rebuilt graph takes the same steps as FGSM on the tfjs model.
    assert.ok(
      Math.abs(at(t, 'fgsm', eps).accuracy - at(own, 'fgsm', eps).accuracy) <= 1 / t.n,
      `${at(t, 'fgsm', eps).accuracy} vs ${at(own, 'fgsm', eps).accuracy}`,
    );
    assert.ok(at(t, 'fgsm', eps).accuracy < t.clean.accuracy - 0.2);
    const sq = at(t, 'square', eps);
    assert.ok(sq.queriesPerSecond! > 0 && sq.successRate! > 0, JSON.stringify(sq));
    assert.ok(sq.meanQueries! >= 1 && sq.meanQueries! <= 60, JSON.stringify(sq));
    const tr = at(t, 'transfer-pgd', eps);
    assert.ok(tr && tr.accuracy < t.clean.accuracy, JSON.stringify(tr));
  });

  it('a Keras-style file (30×30, 0–255, softmax) needs --input-range 0,255 --preprocess whole, and is attacked through its own graph', async () => {
    const args = ['--model', file('keras.tflite'), '--preprocess', 'whole'];
    const wrong = await evaluate(args);
    const right = await evaluate([...args, '--input-range', '0,255', '--attack', 'fgsm', '--eps', '0,8/255']);
    assert.strictEqual(right.modelInfo.input.height, 30);
    assert.strictEqual(right.modelInfo.outputs, 'probabilities');
    assert.ok(right.clean.accuracy > wrong.clean.accuracy + 0.3, `with the range ${right.clean.accuracy}, without ${wrong.clean.accuracy}`);
    assert.ok(at(right, 'fgsm', 8 / 255).accuracy < right.clean.accuracy - 0.2, JSON.stringify(right.results));
  });

  it('attack: Square reports its queries; a gradient attack on a file with an op it cannot rebuild fails in one line', async () => {
    // A sign photo to attack: a synthetic Stop sign.
    const img = file('stop.png');
    fs.writeFileSync(img, await encodePng({ data: renderSign(14, { size: 48, seed: 7 }), width: 48, height: 48 }));
    const s = await runCli([
      'attack',
      '--model',
      file('keras.tflite'),
      '--input-range',
      '0,255',
      '--attack',
      'square',
      '--queries',
      '200',
      '--input',
      img,
      '--out',
      file('sq.png'),
      '--json',
    ]);
    assert.strictEqual(s.code, 0, s.stderr);
    const j = JSON.parse(s.stdout) as { queries: number; linf: number; model: { kind: string } };
    assert.strictEqual(j.model.kind, 'tflite');
    assert.ok(j.queries >= 1 && j.queries <= 200, `queries ${j.queries}`);
    assert.ok(j.linf <= 8 / 255 + 1e-6);
    assert.strictEqual((await sharp(file('sq.png')).metadata()).width, 30);
    // FGSM through the file's graph: native gradients by default, the same result as the tfjs rebuild.
    const fgsm = [];
    for (const engine of ['ort', 'tfjs']) {
      const keras = ['--model', file('keras.tflite'), '--input-range', '0,255', '--preprocess', 'whole', '--engine', engine];
      const r = await runCli(['attack', ...keras, '--attack', 'fgsm', '--eps', '4/255', '--input', img, '--out', file(`fgsm-${engine}.png`), '--json']);
      assert.strictEqual(r.code, 0, r.stderr);
      fgsm.push(JSON.parse(r.stdout) as { engine: string; success: boolean; linf: number; adversarial: { classId: number }[]; model: { gradients: string } });
    }
    assert.strictEqual(fgsm[0].engine, 'ort');
    assert.match(fgsm[0].model.gradients, /^onnxruntime/);
    assert.match(fgsm[1].model.gradients, /rebuilt in TensorFlow\.js/);
    assert.deepStrictEqual([fgsm[0].success, fgsm[0].adversarial[0].classId], [fgsm[1].success, fgsm[1].adversarial[0].classId]);
    assert.ok(Math.abs(fgsm[0].linf - fgsm[1].linf) <= 1 / 255 + 1e-6, `${fgsm[0].linf} vs ${fgsm[1].linf}`);
    const dilated = await runCli([
      'attack',
      '--model',
      file('dilated.tflite'),
      '--labels',
      file('labels5.txt'),
      '--engine',
      'ort',
      '--attack',
      'fgsm',
      '--input',
      img,
      '--out',
      file('d.png'),
    ]);
    assert.strictEqual(dilated.code, 2, dilated.stderr);
    assert.match(dilated.stderr, /^advsign: error: engine 'ort' cannot run this model: its ONNX export does not support a dilated CONV_2D/);
    assert.strictEqual(dilated.stderr.trim().split('\n').length, 1, dilated.stderr);
    const abs = await runCli([
      'attack',
      '--model',
      file('abs.tflite'),
      '--labels',
      file('labels5.txt'),
      '--attack',
      'fgsm',
      '--input',
      img,
      '--out',
      file('abs.png'),
    ]);
    assert.strictEqual(abs.code, 2);
    assert.match(abs.stderr, /^advsign: error: .*op ABS \(operator 2\) cannot be rebuilt; black-box attacks \(square, transfer\) still run/);
    assert.strictEqual(abs.stderr.trim().split('\n').length, 1);
    const absSquare = await runCli([
      'attack',
      '--model',
      file('abs.tflite'),
      '--labels',
      file('labels5.txt'),
      '--attack',
      'square',
      '--queries',
      '20',
      '--input',
      img,
      '--out',
      file('abs.png'),
    ]);
    assert.strictEqual(absSquare.code, 0, absSquare.stderr);
  });

  it('bad input: an unparsable range, labels that do not fit, transfer without a surrogate', async () => {
    const cases: [string[], RegExp][] = [
      [['--input-range', '0'], /--input-range must be two numbers LO,HI/],
      [['--input-range', '255,0'], /HI must be above LO/],
      [['--preprocess', 'centre'], /--preprocess must be crop or whole/],
      [['--labels', file('labels5.txt')], /labels5\.txt has 5 names but .* has 43 outputs/],
      [['--attack', 'transfer'], /--attack transfer needs --source-model/],
    ];
    for (const [extra, pattern] of cases) {
      const r = await runCli(['evaluate', '--model', file('model.tflite'), '--data', 'synthetic', '--limit', '43', ...extra]);
      assert.strictEqual(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  it('serve --model keras.tflite: frames reach a socket.io client, classified by the interpreter', async () => {
    const child = spawn(
      process.execPath,
      [BIN, 'serve', '--model', file('keras.tflite'), '--input-range', '0,255', '--preprocess', 'whole', '--source', 'synthetic', '--port', '0', '--fps', '10'],
      { cwd: ROOT },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      const t0 = Date.now();
      while (!/open (http:\/\/\S+)/.test(out)) {
        if (Date.now() - t0 > 60000 || child.exitCode !== null) throw new Error(`serve did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(out, /"event":"model.runtime".*TFLite interpreter/);
      const url = (/open (http:\/\/\S+)/.exec(out) as RegExpExecArray)[1];
      const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true });
      const hello = new Promise<{ model: { inputSize: number } }>((r) => socket.once('hello', r));
      const frame = await new Promise<{ clean: { name: string }; images: { adversarial: Buffer } }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no frame in 60 s')), 60000);
        socket.on('frame', (f: { clean: { name: string }; images: { adversarial: Buffer } }, ack?: () => void) => {
          ack?.();
          clearTimeout(timer);
          resolve(f);
        });
      });
      assert.strictEqual((await hello).model.inputSize, 30);
      assert.strictEqual((await sharp(Buffer.from(frame.images.adversarial)).metadata()).width, 30);
      assert.ok(frame.clean.name.length > 0);
      socket.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('close', r));
    }
  });
});
