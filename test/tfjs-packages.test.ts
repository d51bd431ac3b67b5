/**
 * Issue 15: the project depends on the tfjs packages its code imports, not on the @tensorflow/tfjs
 * umbrella (which loads the WebGL backend and tfjs-data into the daemon), and tfjs-core still has
 * its gradients and chained ops without it.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './helpers';

describe('tfjs packages', () => {
  it('package.json lists exactly the @tensorflow packages src/ imports, not the umbrella', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    const listed = Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies }).filter((n) => n.startsWith('@tensorflow/'));
    const imported = new Set<string>();
    const src = path.join(ROOT, 'src');
    for (const f of fs.readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.ts'))) {
      for (const m of fs.readFileSync(path.join(src, f), 'utf8').matchAll(/(?:from |import |require\()'(@tensorflow\/[a-z0-9-]+)/g)) imported.add(m[1]);
    }
    assert.ok(!listed.includes('@tensorflow/tfjs'), 'the @tensorflow/tfjs umbrella is a dependency');
    assert.deepEqual(listed.sort(), [...imported].sort());
  });

  it('the library loads without the umbrella, WebGL or tfjs-data, and tf.grad and chained ops work', () => {
    const script = `
      const { tf } = require(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'inference', 'tf.js'))});
      require(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'index.js'))});
      tf.setBackend('cpu').then(() => {
        const g = tf.grad((x) => x.square().sum())(tf.tensor1d([1, -2, 3]));
        const loaded = Object.keys(require.cache).filter((k) => /@tensorflow[\\\\/]tfjs(-data|-backend-webgl)?[\\\\/]/.test(k));
        console.log(JSON.stringify({ grad: Array.from(g.dataSync()), loaded }));
      });`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const r = JSON.parse(out.trim().split('\n').pop() as string) as { grad: number[]; loaded: string[] };
    assert.deepEqual(r.loaded, []);
    assert.deepEqual(r.grad, [2, -4, 6]);
  });
});
