/**
 * The compiled tree holds only what the sources make: `npm test` and `npm run build` empty dist/
 * before tsc, so a deleted or renamed module (a test above all) never keeps running from a stale
 * .js file. This fails when dist/ was built over an older tree without cleaning.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './helpers';

function compiled(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return compiled(p);
    return e.name.endsWith('.js') ? [p] : [];
  });
}

describe('build output', () => {
  it('every .js in dist/src and dist/test has its .ts source (no stale modules or tests)', () => {
    const dist = path.join(ROOT, 'dist');
    const files = [...compiled(path.join(dist, 'src')), ...compiled(path.join(dist, 'test'))];
    assert.ok(
      files.some((f) => f === __filename),
      'this test runs from dist/test',
    );
    const stale = files.map((f) => path.relative(dist, f)).filter((rel) => !fs.existsSync(path.join(ROOT, rel.replace(/\.js$/, '.ts'))));
    assert.deepEqual(stale, [], `compiled files without a source (run npm test or npm run build, which clean dist/): ${stale.join(', ')}`);
  });

  it('npm test and npm run build empty dist/ before compiling', () => {
    const scripts = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.match(scripts.clean, /rmSync\('dist'/);
    assert.match(scripts.test, /^npm run clean && tsc /);
    assert.match(scripts.build, /^npm run clean && tsc /);
  });
});
