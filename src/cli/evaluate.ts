/** `advsign evaluate`: clean accuracy, confusion matrix and per-class accuracy (attacks: see --attack). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../inference/backend';
import { loadClassifier } from '../inference/model-io';
import { predictClasses } from '../inference/model';
import { cleanMetrics } from '../inference/metrics';
import { loadDataset } from '../data/load';
import { UserError } from '../data/types';
import { CLASS_NAMES } from '../data/classes';
import { int, parseFlags, required, str } from './args';

export const EVALUATE_HELP = `advsign evaluate --model models/NAME --data <dir|synthetic> [options]

  --split train|test     which split (default test)
  --limit N              evaluate about N images
  --json FILE            write the figures as JSON ('-' for stdout)
  --backend NAME         tensorflow | wasm | cpu`;

export async function evaluateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, data: { type: 'string' }, split: { type: 'string' }, limit: { type: 'string' },
    json: { type: 'string' }, backend: { type: 'string' }, quiet: { type: 'boolean' },
  }, 'evaluate');
  const modelPath = required(f, 'model', 'evaluate');
  const data = required(f, 'data', 'evaluate');
  const split = str(f, 'split', 'test');
  if (split !== 'train' && split !== 'test') throw new UserError(`--split must be train or test, got '${split}'`);
  const limit = f.limit !== undefined ? int(f, 'limit', 0, 1) : undefined;
  const backend = await initBackend(str(f, 'backend'));
  const clf = await loadClassifier(modelPath);
  const set = await loadDataset(data, { split, size: clf.inputSize, limit, progress: !f.quiet });
  const t0 = performance.now();
  const pred = await predictClasses(clf, set.images, set.n);
  const seconds = (performance.now() - t0) / 1000;
  const m = cleanMetrics(pred, set.labels, clf.numClasses);
  const report = {
    model: modelPath, data, split, n: set.n, backend: backend.backend,
    clean: { accuracy: m.accuracy, imagesPerSecond: set.n / seconds, perClass: m.perClass, confusion: m.confusion },
    results: [] as unknown[],
  };
  const jsonOut = str(f, 'json');
  if (jsonOut === '-') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else if (jsonOut) {
    fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true });
    fs.writeFileSync(jsonOut, JSON.stringify(report, null, 2) + '\n');
  }
  if (jsonOut !== '-') {
    console.log(`${modelPath} on ${data} ${split}: accuracy ${(m.accuracy * 100).toFixed(2)}% over ${set.n} images (${backend.backend}, ${(set.n / seconds).toFixed(0)} img/s)`);
    const worst = m.perClass.filter((c) => c.n > 0).sort((a, b) => a.accuracy - b.accuracy).slice(0, 5);
    console.log('weakest classes: ' + worst.map((c) => `${c.classId} ${CLASS_NAMES[c.classId]} ${(c.accuracy * 100).toFixed(1)}%`).join('; '));
  }
}
