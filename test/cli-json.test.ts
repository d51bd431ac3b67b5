/**
 * One JSON convention on every command (docs/ARCHITECTURE.md, "CLI"): `--json FILE` writes the
 * file and keeps the human output, `--json -` and a bare `--json` put only the JSON on stdout.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseFlags } from '../src/cli/args';
import { runCli, tempDir } from './helpers';

describe('--json FILE|-', function () {
  this.timeout(120000);

  it('a bare --json (last, or before another flag) means stdout; a value is kept', () => {
    const o = { json: { type: 'string' as const }, quick: { type: 'boolean' as const } };
    assert.strictEqual(parseFlags(['--json'], o, 'x').json, '-');
    assert.strictEqual(parseFlags(['--json', '--quick'], o, 'x').json, '-');
    assert.strictEqual(parseFlags(['--json', 'out.json', '--quick'], o, 'x').json, 'out.json');
    assert.strictEqual(parseFlags(['--json=-'], o, 'x').json, '-');
  });

  it('info: --json FILE writes the file and prints the report; --json - prints only JSON', async () => {
    const file = path.join(tempDir(), 'info.json');
    const toFile = await runCli(['info', '--json', file]);
    assert.strictEqual(toFile.code, 0, toFile.stderr);
    assert.match(toFile.stdout, /^advsign /);
    const written = JSON.parse(fs.readFileSync(file, 'utf8')) as { backend: { backend: string } };
    const toStdout = await runCli(['info', '--json', '-']);
    assert.strictEqual(toStdout.code, 0, toStdout.stderr);
    assert.strictEqual((JSON.parse(toStdout.stdout) as typeof written).backend.backend, written.backend.backend);
  });

  it('an unwritable --json FILE fails in one line before any work', async () => {
    const r = await runCli(['attack', '--model', 'models/gtsrb-cnn', '--input', 'nope.png', '--out', path.join(tempDir(), 'a.png'), '--json', '/proc/x.json']);
    assert.strictEqual(r.code, 2);
    assert.match(r.stderr, /cannot write \/proc\/x\.json/);
  });
});
