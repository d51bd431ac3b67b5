/**
 * `advsign sticker` (called in-process through stickerCommand, which the CLI dispatches to):
 * one-line UserErrors for bad input before any work starts, and a short end-to-end run that
 * writes the PDF, the JSON summary beside it and the PNGs.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { initBackend } from '../src/inference/backend';
import { buildModel } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { stickerCommand, outputPaths, STICKER_HELP } from '../src/cli/sticker';
import { tempDir } from './helpers';

describe('advsign sticker', function () {
  this.timeout(120000);
  let dir: string;
  let modelDir: string;

  before(async () => {
    await initBackend();
    dir = tempDir();
    modelDir = path.join(dir, 'm');
    await saveModel(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 3 }), modelDir);
  });

  async function fails(args: string[], message: RegExp): Promise<void> {
    await assert.rejects(stickerCommand(['--model', modelDir, '--out', path.join(dir, 'x.pdf'), ...args]), (e: Error) => {
      assert.strictEqual(e.name, 'UserError', `${e.name}: ${e.message}`);
      assert.match(e.message, message);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }

  it('rejects bad input with one-line messages', async () => {
    await fails(['--sign', '43', '--target', '1'], /sign class 43 is out of range: use 0\.\.42/);
    await fails(['--sign=-1', '--target', '1'], /sign class -1 is out of range/);
    await fails(['--sign', 'stop', '--target', '1'], /--sign must be a class id/);
    await fails(['--sign', '14', '--target', '99'], /target class 99 is out of range/);
    await fails(['--sign', '14', '--target', '14'], /target class 14 is the sign's own class/);
    await fails(['--sign', '14', '--target', '1', '--mask', 'hexagon'], /unknown mask 'hexagon'/);
    await fails(['--sign', '14', '--target', '1', '--mask', path.join(dir, 'nope.png')], /mask image not found/);
    const bad = path.join(dir, 'bad.png');
    fs.writeFileSync(bad, 'garbage');
    await fails(['--sign', '14', '--target', '1', '--mask', bad], /mask image .*bad\.png cannot be read/);
    const empty = path.join(dir, 'empty.png');
    await sharp(Buffer.alloc(16 * 16 * 3), { raw: { width: 16, height: 16, channels: 3 } })
      .png()
      .toFile(empty);
    await fails(['--sign', '14', '--target', '1', '--mask', empty], /covers none of the sign/);
    await fails(['--sign', '14', '--target', '1', '--mask', 'rect:0,0,0.05,0.05'], /covers none of the sign/);
    await fails(['--sign', '14', '--target', '1', '--mode', 'sign', '--eps', '300/255'], /eps '300\/255' is above 1/);
    await fails(['--sign', '14', '--target', '1', '--mode', 'sign', '--eps=-0.1'], /negative/);
    await fails(['--sign', '14', '--target', '1', '--mode', 'sign', '--eps', '0'], /eps must be above 0/);
    await fails(['--sign', '14', '--target', '1', '--eps', '8/255'], /--eps applies to --mode sign only/);
    await fails(['--sign', '14', '--target', '1', '--mode', 'poster'], /unknown --mode 'poster'/);
    await fails(['--sign', '14', '--target', '1', '--sign-mm', '5'], /--sign-mm must be a number from 20 to 3000/);
    await fails(['--sign', '14', '--target', '1', '--palette', path.join(dir, 'nope.csv')], /palette file not found/);
    await assert.rejects(stickerCommand(['--sign', '14', '--target', '1', '--out', 'x.png']), /--out must name a \.pdf file/);
    await assert.rejects(
      stickerCommand(['--sign', '14', '--target', '1', '--model', path.join(dir, 'none'), '--out', path.join(dir, 'y.pdf'), '--steps', '1']),
      /model not found/,
    );
    assert.match(STICKER_HELP, /--sign-mm/);
  });

  it('writes the PDF, a JSON summary beside it and the PNGs', async () => {
    const out = path.join(dir, 'run', 'stop.pdf');
    const log = console.log;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => {
      lines.push(a.join(' '));
    };
    try {
      await stickerCommand([
        '--model',
        modelDir,
        '--sign',
        '14',
        '--target',
        '1',
        '--out',
        out,
        '--steps',
        '3',
        '--eot-samples',
        '2',
        '--eval',
        '10',
        '--roundtrip',
        '3',
        '--sign-mm',
        '100',
        '--canvas',
        '32',
        '--seed',
        '4',
      ]);
    } finally {
      console.log = log;
    }
    const p = outputPaths(out);
    for (const f of [p.pdf, p.json, p.stickerPng, p.signPng]) assert.ok(fs.existsSync(f), f);
    assert.strictEqual(fs.readFileSync(p.pdf).subarray(0, 5).toString(), '%PDF-');
    const s = JSON.parse(fs.readFileSync(p.json, 'utf8'));
    assert.strictEqual(s.sign.classId, 14);
    assert.strictEqual(s.target.classId, 1);
    assert.strictEqual(s.heldOut.eot.n, 10);
    assert.ok(s.heldOut.eot.successRate >= 0 && s.heldOut.eot.successRate <= 1);
    assert.ok(s.heldOut.withoutEot && s.heldOut.withoutEot.n === 10, 'the non-EOT baseline is measured too');
    assert.strictEqual(s.roundTrip.eot.n, 3);
    assert.strictEqual(s.signMm, 100);
    assert.deepStrictEqual(
      s.pieces.map((q: { label: string }) => q.label),
      ['A', 'B', 'S'],
    );
    assert.strictEqual(s.history.length, 3);
    assert.match(lines.join('\n'), /robust success rate \(10 held-out transformations\): [\d.]+ % with EOT, [\d.]+ % without EOT/);
  });
});
