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
import { parseAttackList, parseEpsList, attackNames } from '../attack/registry';
import { ATTACK_LOSSES, parseAttackLoss } from '../attack/loss';
import type { AttackOptions } from '../attack/types';
import { evaluateRobustness, robustnessToJson, RobustnessResult } from '../attack/evaluate';
import { defaultWorkerCount } from '../inference/data-parallel';
import { renderReportHtml } from '../attack/report';
import { worstCaseNorm } from '../attack/worst-case';
import { AUTOATTACK_FAMILY } from '../attack/autoattack';
import { progressBar, Progress } from '../util/progress';
import { writeJsonAtomic, readCard, ModelCard, resolveModelPath } from '../inference/model-io';
import { DEFENSE_EVAL_FLAGS, DEFENSE_EVAL_HELP, defenseEvaluateCommand, wantsDefenseEvaluation } from '../defense/evaluate-cli';

export const EVALUATE_HELP = `advsign evaluate --model models/NAME --data <dir|synthetic> [options]

  --split train|test     which split (default test)
  --limit N              evaluate about N images
  --attack a,b           attacks to run: ${attackNames().join(', ')}
  --eps LIST             perturbation budgets, e.g. 0,2/255,4/255,8/255 (default)
  --steps N              iterations for iterative attacks (default: each attack's own)
  --queries N            Square's queries per image (square, autoattack: default 1000 and 5000)
  --loss L               objective of the gradient attacks: ${ATTACK_LOSSES.join(' | ')} (default ce)
  --worst-case           add the per-image worst case over the attacks (one norm), as RobustBench counts
  --batch N              attack batch size (default 64; 128 with AutoAttack and its members)
  --report FILE.html     a self-contained HTML report with plots and examples
  --update-card          record the figures in the model's card.json
  --json FILE            write the figures as JSON ('-' for stdout)
  --backend NAME         tensorflow | wasm | cpu
  --workers N            extra threads attacking batches in parallel (default: one per spare core on wasm/cpu)
${DEFENSE_EVAL_HELP}`;

export async function evaluateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, data: { type: 'string' }, split: { type: 'string' }, limit: { type: 'string' },
    json: { type: 'string' }, backend: { type: 'string' }, quiet: { type: 'boolean' },
    attack: { type: 'string' }, eps: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, loss: { type: 'string' },
    report: { type: 'string' }, 'update-card': { type: 'boolean' }, workers: { type: 'string' }, 'worst-case': { type: 'boolean' }, queries: { type: 'string' },
    ...DEFENSE_EVAL_FLAGS,
  }, 'evaluate');
  // --defense / --compare: the before-vs-after comparison (src/defense/compare.ts).
  if (wantsDefenseEvaluation(f)) return defenseEvaluateCommand(f);
  const modelPath = required(f, 'model', 'evaluate');
  const data = required(f, 'data', 'evaluate');
  const split = str(f, 'split', 'test');
  if (split !== 'train' && split !== 'test') throw new UserError(`--split must be train or test, got '${split}'`);
  const limit = f.limit !== undefined ? int(f, 'limit', 0, 1) : undefined;
  // Validate every attack name and eps before any slow work starts.
  const attacks = f.attack !== undefined ? parseAttackList(str(f, 'attack') ?? '') : [];
  const epsList = parseEpsList(str(f, 'eps', '0,2/255,4/255,8/255') as string);
  const worstCase = f['worst-case'] === true;
  if (worstCase) worstCaseNorm(attacks);
  const needsBudget = attacks.filter((a) => a.name in AUTOATTACK_FAMILY);
  if (needsBudget.length && !epsList.some((e) => e > 0)) {
    throw new UserError(`${needsBudget[0].name} needs an eps > 0 (eps = 0 is the clean image: nothing to attack), e.g. --eps 8/255`);
  }
  const steps = f.steps !== undefined ? int(f, 'steps', 10, 1, 10000) : undefined;
  const queries = f.queries !== undefined ? int(f, 'queries', 1000, 1, 1000000) : undefined;
  const loss = f.loss !== undefined ? parseAttackLoss(str(f, 'loss') ?? '') : undefined;
  if (loss && attacks.length && !attacks.some((a) => a.takesLoss)) {
    throw new UserError(`--loss applies to none of ${attacks.map((a) => a.name).join(', ')}: they have objectives of their own`);
  }
  const attackOptions = (a: { name: string; takesLoss: boolean }): AttackOptions => ({
    ...(steps ? { steps } : {}), ...(loss && a.takesLoss ? { loss } : {}), ...(queries ? { maxQueries: queries } : {}),
  });
  // AutoAttack's members run on the images still robust, a fraction of each batch: larger batches
  // keep those calls efficient (the reference's default is 250; 128 still reports progress often).
  const batchSize = int(f, 'batch', needsBudget.length ? 128 : 64, 1, 4096);
  const backend = await initBackend(str(f, 'backend'));
  const workers = f.workers !== undefined ? int(f, 'workers', 0, 0, 64) : defaultWorkerCount(backend.backend);
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
  let robust: RobustnessResult | null = null;
  if (attacks.length) {
    let bar: Progress | null = null;
    let current = '';
    robust = await evaluateRobustness(clf, set, {
      attacks: attacks.map((a) => a.name), epsList, batchSize, workers, worstCase,
      attackOptions: Object.fromEntries(attacks.map((a) => [a.name, attackOptions(a)])),
      onProgress: f.quiet ? undefined : (p) => {
        if (p.attack !== current) {
          bar?.done();
          current = p.attack;
          bar = progressBar(`attack ${p.attack}`, p.total);
        }
        bar?.update(p.done);
      },
    });
    (bar as Progress | null)?.done();
    const json = robustnessToJson(robust, { model: modelPath, data, split, backend: backend.backend });
    report.results = json.results as unknown[];
    (report as Record<string, unknown>).examples = json.examples;
    (report as Record<string, unknown>).notes = json.notes;
  }
  const reportFile = str(f, 'report');
  if (reportFile) {
    const html = await renderReportHtml(robust ?? {
      n: set.n, numClasses: clf.numClasses, results: [], examples: [],
      clean: { accuracy: m.accuracy, perClassAccuracy: m.perClass.map((c) => (c.n ? c.accuracy : null)) },
    }, { model: modelPath, data, split, backend: backend.backend });
    fs.mkdirSync(path.dirname(path.resolve(reportFile)), { recursive: true });
    fs.writeFileSync(reportFile, html);
  }
  if (f['update-card']) {
    const card = readCard(modelPath) ?? ({} as ModelCard);
    const key = `${path.basename(path.resolve(data))}/${split}`;
    const clean = (card.cleanAccuracy as Record<string, number> | undefined) ?? {};
    // A --limit run must not overwrite the full-split figure.
    clean[limit !== undefined ? `${key} (first ${set.n} images)` : key] = m.accuracy;
    const robustCard = (card.robustAccuracy as Record<string, unknown> | undefined) ?? {};
    for (const r of (report.results as { attack: string; eps: number; accuracy: number; meanL2: number | null }[])) {
      robustCard[`${r.attack}@${r.eps.toFixed(4)}`] = { data: key, n: set.n, eps: r.eps, accuracy: r.accuracy, meanL2: r.meanL2 };
    }
    writeJsonAtomic(path.join(path.dirname(resolveModelPath(modelPath)), 'card.json'),
      { ...card, cleanAccuracy: clean, robustAccuracy: robustCard });
  }
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
    for (const note of robust?.notes ?? []) console.log(`note: ${note}`);
    for (const r of (report.results as { attack: string; eps: number; accuracy: number; successRate: number | null; meanL2: number | null; imagesPerSecond: number | null; stages?: { attack: string; accuracy: number }[] }[])) {
      const epsText = (r as { norm?: string }).norm === 'l2' ? `L2 ${r.eps.toFixed(3).padStart(7)}` : `eps ${(r.eps * 255).toFixed(1).padStart(5)}/255`;
      console.log(`  ${r.attack.padEnd(9)} ${epsText}  accuracy ${(r.accuracy * 100).toFixed(2).padStart(6)}%` +
        `  success ${r.successRate == null ? '  n/a' : (r.successRate * 100).toFixed(1) + '%'}` +
        `  mean L2 ${r.meanL2 == null ? 'n/a' : r.meanL2.toFixed(3)}  ${r.imagesPerSecond == null ? '' : r.imagesPerSecond.toFixed(r.imagesPerSecond < 10 ? 2 : 0) + ' img/s'}`);
      if (r.stages) console.log(`    in cascade, accuracy after ${r.stages.map((st) => `${st.attack} ${(st.accuracy * 100).toFixed(2)}%`).join(', ')}`);
    }
    if (reportFile) console.log(`report: ${reportFile}`);
  }
}
