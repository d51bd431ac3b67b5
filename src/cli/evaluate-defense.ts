/**
 * `advsign evaluate --defense <names|all> [--compare m1,m2]`: the before-vs-after comparison
 * (src/defense/compare.ts). Kept here so src/cli/evaluate.ts only gains a branch.
 */
import * as path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { initBackend } from '../inference/backend';
import { loadClassifier, readCard } from '../inference/model-io';
import { EngineChoice, useEngine } from '../inference/engine';
import { loadDataset } from '../data/load';
import { UserError } from '../data/types';
import type { ImageSet } from '../data/types';
import { parseEpsList } from '../attack/registry';
import { Flags, jsonTarget } from './args';
import { parseDefenseList, DEFENSE_NAMES, DEFAULT_DEFENSE_SETTINGS, DefenseName } from '../defense/registry';
import { CompareModel, compareToJson, renderCompareHtml, runCompare } from '../defense/compare';
import { requireLogitsModel } from '../defense/adversarial';
import { checkOutputs, writeFilesAtomic } from '../util/atomic-file';

export const DEFENSE_EVAL_FLAGS: NonNullable<ParseArgsConfig['options']> = {
  defense: { type: 'string' },
  compare: { type: 'string' },
  'defense-seconds': { type: 'string' },
  'defense-train-limit': { type: 'string' },
  'defense-cache': { type: 'string' },
  'pgd-steps': { type: 'string' },
};

export const DEFENSE_EVAL_HELP = `
defenses (src/defense):
  --defense LIST         ${DEFENSE_NAMES.join(', ')} or all: before-vs-after table
                         (clean, FGSM and PGD at each --eps, plain and adaptive, IBP-certified)
  --compare M1,M2        models to compare (default --model); defenses wrap the first one,
                         the others are evaluated as they are ('none' + IBP)
  --pgd-steps N          PGD iterations in the comparison (default 10)
  --defense-seconds N    training budget per trained defense (autoencoder, detector, distilled; default 90)
  --defense-train-limit N  training images for those (default 4000)
  --defense-cache DIR    where trained defenses are cached (default ~/.cache/advsign/defenses)`;

function intFlag(f: Flags, name: string, def: number, min: number, max: number): number {
  const v = f[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min || n > max)
    throw new UserError(`--${name} must be a whole number from ${min} to ${max}, got '${String(v)}'`);
  return n;
}

/** True when the flags ask for the defense comparison. */
export function wantsDefenseEvaluation(f: Flags): boolean {
  return f.defense !== undefined || f.compare !== undefined;
}

export async function defenseEvaluateCommand(f: Flags): Promise<void> {
  const defenses: DefenseName[] = parseDefenseList(typeof f.defense === 'string' ? f.defense : 'none');
  const data = typeof f.data === 'string' ? f.data : '';
  if (!data) throw new UserError("evaluate: --data is required (see 'advsign evaluate --help')");
  const modelList = (typeof f.compare === 'string' ? f.compare : typeof f.model === 'string' ? f.model : '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (modelList.length === 0) throw new UserError('evaluate --defense needs --model or --compare');
  const epsList = parseEpsList(typeof f.eps === 'string' ? f.eps : '2/255,4/255,8/255').filter((e) => e > 0);
  if (epsList.length === 0) throw new UserError('--eps needs at least one value above 0 for the comparison');
  const split = typeof f.split === 'string' ? f.split : 'test';
  if (split !== 'train' && split !== 'test') throw new UserError(`--split must be train or test, got '${split}'`);
  const limit = f.limit !== undefined ? intFlag(f, 'limit', 0, 1, 1e9) : undefined;
  const pgdSteps = intFlag(f, 'pgd-steps', intFlag(f, 'steps', 10, 1, 1000), 1, 1000);
  const batchSize = intFlag(f, 'batch', 64, 1, 4096);
  const settings = { ...DEFAULT_DEFENSE_SETTINGS, trainSeconds: intFlag(f, 'defense-seconds', DEFAULT_DEFENSE_SETTINGS.trainSeconds, 1, 1e6) };
  const trainLimit = intFlag(f, 'defense-train-limit', 4000, 1, 1e9);
  const report = typeof f.report === 'string' ? f.report : undefined;
  const json = jsonTarget(f);
  checkOutputs(report, json); // before the defenses train and the attacks run
  const quiet = Boolean(f.quiet);
  const log = (m: string) => {
    if (!quiet) process.stderr.write(m + '\n');
  };
  const backend = await initBackend(typeof f.backend === 'string' ? f.backend : undefined);

  const engineName = typeof f.engine === 'string' ? f.engine : undefined;
  let engine: EngineChoice | null = null;
  const models: CompareModel[] = [];
  let trainSet: ImageSet | null = null;
  for (const [k, p] of modelList.entries()) {
    const clf = await loadClassifier(p);
    if (defenses.includes('ibp')) requireLogitsModel(clf, `IBP verification of ${p}`);
    const card = readCard(p);
    const onEngine = useEngine(clf, engineName);
    engine ??= onEngine.engine;
    models.push({
      label: p,
      clf,
      run: onEngine.classifier,
      defenses: k === 0 ? defenses : ['none'],
      context: {
        modelDir: path.dirname(path.resolve(p, 'model.json')),
        architecture: String(card?.architecture ?? ''),
        settings,
        log,
        cacheDir: typeof f['defense-cache'] === 'string' ? f['defense-cache'] : undefined,
        engine: engineName,
        trainDescription: `${path.resolve(data)} train ${trainLimit}`,
        trainSet: async () => (trainSet ??= await loadDataset(data, { split: 'train', size: clf.inputSize, limit: trainLimit, progress: !quiet })),
      },
    });
  }
  const set = await loadDataset(data, { split, size: models[0].clf.inputSize, limit, progress: !quiet });
  const result = await runCompare(models, set, { epsList, pgdSteps, batchSize, log });
  const meta = {
    data,
    split,
    backend: backend.backend,
    engine: (engine as EngineChoice | null)?.engine ?? 'tfjs',
    defenseTraining: { seconds: settings.trainSeconds, images: trainLimit },
  };
  const out = compareToJson(result, { ...meta, models: modelList, defenses });
  if (json === '-') process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  // The report and the JSON together: both new, or both as they were.
  writeFilesAtomic([
    ...(report ? [{ path: report, data: renderCompareHtml(result, meta) }] : []),
    ...(json && json !== '-' ? [{ path: json, data: JSON.stringify(out, null, 2) + '\n' }] : []),
  ]);
  if (json !== '-') {
    const p = (v: number | null | undefined) => (v == null ? '  –  ' : (v * 100).toFixed(1).padStart(5));
    console.log(`before vs after on ${data} ${split}, ${set.n} images (a/b = plain/adaptive; accuracy %)`);
    for (const r of result.rows) {
      console.log(
        `${path.basename(r.model).padEnd(18)} ${r.defense.padEnd(12)} clean ${p(r.clean)}  ` +
          r.cells.map((c) => `${c.attack}@${+(c.eps * 255).toFixed(1)} ${p(c.plain)}${c.adaptive != null ? '/' + p(c.adaptive).trim() : ''}`).join(' ') +
          (r.certified ? '  certified ' + r.certified.map((c) => p(c.accuracy).trim()).join('/') : ''),
      );
    }
    if (report) console.log(`report: ${report}`);
  }
}
