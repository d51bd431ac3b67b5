/** `advsign evaluate`: clean accuracy, confusion matrix and per-class accuracy (attacks: see --attack). */
import * as path from 'node:path';
import { initBackend } from '../inference/backend';
import { LayersClassifier, measuredOn, predictClasses } from '../inference/model';
import { describeModel, loadModelOnEngine } from '../inference/load-model';
import { cleanMetrics } from '../inference/metrics';
import { loadDataset } from '../data/load';
import { UserError } from '../data/types';
import { CLASS_NAMES, gtsrbClassIds, isGtsrbOrder } from '../data/classes';
import { relabelForModel } from '../data/gtsrb';
import { int, jsonTarget, parseFlags, required, str } from './args';
import { parseEpsList, attackNames } from '../attack/registry';
import { ATTACK_LOSSES, parseAttackLoss } from '../attack/loss';
import type { AttackOptions } from '../attack/types';
import {
  MODEL_INPUT_FLAGS,
  MODEL_INPUT_HELP,
  modelInputFromFlags,
  needsGradients,
  parseAttackSpecs,
  resolveAttacks,
  TRANSFER_FLAGS,
  TRANSFER_HELP,
} from './model-flags';
import { evaluateRobustness, robustnessToJson, RobustnessResult, RobustnessRow } from '../attack/evaluate';
import { defaultWorkerCount } from '../inference/data-parallel';
import { renderReportHtml } from '../attack/report';
import { worstCaseNorm } from '../attack/worst-case';
import { AUTOATTACK_BATCH, AUTOATTACK_FAMILY } from '../attack/autoattack';
import { progressBar, Progress } from '../util/progress';
import { writeJsonAtomic, readCard, ModelCard, resolveModelPath } from '../inference/model-io';
import { checkOutputs, checkWritable, OutputFile, writeFilesAtomic } from '../util/atomic-file';
import { certifiedAccuracy } from '../inference/ibp';
import { requireLogitsModel } from '../defense/adversarial';
import { OrtClassifier } from '../inference/ort-classifier';
import { DEFENSE_EVAL_FLAGS, DEFENSE_EVAL_HELP, defenseEvaluateCommand, wantsDefenseEvaluation } from './evaluate-defense';

export const EVALUATE_HELP = `advsign evaluate --model models/NAME|model.tflite --data <dir|synthetic> [options]

${MODEL_INPUT_HELP}
  --split train|test     which split (default test)
  --limit N              evaluate about N images
  --attack a,b           attacks to run: ${attackNames().join(', ')}, transfer
${TRANSFER_HELP}
  --eps LIST             perturbation budgets, e.g. 0,2/255,4/255,8/255 (default)
  --steps N              iterations for iterative attacks (default: each attack's own)
  --restarts N           random restarts of PGD (default 1)
  --queries N            query budget per image of black-box attacks (square, autoattack: default 1000 and 5000)
  --loss L               objective of the gradient attacks: ${ATTACK_LOSSES.join(' | ')} (default ce)
  --worst-case           add the per-image worst case over the attacks (one norm), as RobustBench counts
  --batch N              attack batch size (default 64; 128 with AutoAttack and its members)
  --report FILE.html     a self-contained HTML report with plots and examples
  --certify              IBP-certified accuracy at each --eps above 0 (the share of images proven
                         to keep their label over the whole L∞ box; see advsign train --ibp)
  --update-card          record the figures in the model's card.json
  --json FILE|-          write the figures as JSON to FILE ('-' or a bare --json: stdout)
  --backend NAME         tensorflow | wasm | cpu
  --engine ort|tfjs      compute engine for inference and attacks (default: ort when it loads)
  --quiet                no progress bars
  --workers N            extra threads attacking batches in parallel (default: one per spare core on wasm/cpu,
                         and on onnxruntime, where each thread's sessions then run on one thread)
${DEFENSE_EVAL_HELP}`;

export async function evaluateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      model: { type: 'string' },
      data: { type: 'string' },
      split: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'string' },
      backend: { type: 'string' },
      quiet: { type: 'boolean' },
      attack: { type: 'string' },
      eps: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      loss: { type: 'string' },
      report: { type: 'string' },
      'update-card': { type: 'boolean' },
      workers: { type: 'string' },
      'worst-case': { type: 'boolean' },
      queries: { type: 'string' },
      certify: { type: 'boolean' },
      restarts: { type: 'string' },
      engine: { type: 'string' },
      ...DEFENSE_EVAL_FLAGS,
      ...MODEL_INPUT_FLAGS,
      ...TRANSFER_FLAGS,
    },
    'evaluate',
  );
  // --defense / --compare: the before-vs-after comparison (src/defense/compare.ts).
  if (wantsDefenseEvaluation(f)) return defenseEvaluateCommand(f);
  const modelPath = required(f, 'model', 'evaluate');
  const data = required(f, 'data', 'evaluate');
  const split = str(f, 'split', 'test');
  if (split !== 'train' && split !== 'test') throw new UserError(`--split must be train or test, got '${split}'`);
  const limit = f.limit !== undefined ? int(f, 'limit', 0, 1) : undefined;
  // Validate every attack name, eps and model option before any slow work starts.
  const specs = f.attack !== undefined ? parseAttackSpecs(str(f, 'attack') ?? '', f) : [];
  const epsList = parseEpsList(str(f, 'eps', '0,2/255,4/255,8/255') as string);
  const worstCase = f['worst-case'] === true;
  const named = specs.map((sp) => (sp.kind === 'attack' ? sp.attack : sp.inner));
  if (worstCase) worstCaseNorm(named);
  const needsBudget = named.filter((a) => a.name in AUTOATTACK_FAMILY);
  if (needsBudget.length && !epsList.some((e) => e > 0)) {
    throw new UserError(`${needsBudget[0].name} needs an eps > 0 (eps = 0 is the clean image: nothing to attack), e.g. --eps 8/255`);
  }
  const steps = f.steps !== undefined ? int(f, 'steps', 10, 1, 10000) : undefined;
  const restarts = f.restarts !== undefined ? int(f, 'restarts', 1, 1, 1000) : undefined;
  const queries = f.queries !== undefined ? int(f, 'queries', 1000, 1, 1e7) : undefined;
  const loss = f.loss !== undefined ? parseAttackLoss(str(f, 'loss') ?? '') : undefined;
  if (loss && named.length && !named.some((a) => a.takesLoss)) {
    throw new UserError(`--loss applies to none of ${named.map((a) => a.name).join(', ')}: they have objectives of their own`);
  }
  const attackOptions = (a: { name: string; takesLoss: boolean }): AttackOptions => ({
    ...(steps ? { steps } : {}),
    ...(queries ? { maxQueries: queries } : {}),
    ...(loss && a.takesLoss ? { loss } : {}),
    ...(restarts ? { restarts } : {}),
  });
  const batchSize = int(f, 'batch', needsBudget.length ? AUTOATTACK_BATCH : 64, 1, 4096);
  const input = modelInputFromFlags(f);
  const reportFile = str(f, 'report');
  const jsonOut = jsonTarget(f);
  checkOutputs(reportFile, jsonOut); // before the data loads and the attacks run
  if (f['update-card']) checkWritable(path.join(path.dirname(resolveModelPath(modelPath)), 'card.json'));
  const backend = await initBackend(str(f, 'backend'));
  const workers = f.workers !== undefined ? int(f, 'workers', 0, 0, 64) : defaultWorkerCount(backend.backend);
  const loaded = await loadModelOnEngine(modelPath, input, str(f, 'engine'));
  const clf = loaded.classifier;
  const engine = loaded.engine;
  const described = loaded.description;
  if (f['update-card'] && described.kind === 'tflite') throw new UserError('--update-card needs a model folder with a card.json, not a .tflite file');
  if (needsGradients(specs) && described.gradients === null) throw new UserError(described.noGradients ?? `${modelPath} has no gradients`);
  const certifyEps = f.certify ? epsList.filter((e) => e > 0) : [];
  // IBP bounds go through the layers themselves: the tfjs model behind an engine wrapper.
  const layers = clf instanceof OrtClassifier ? clf.inner : clf;
  if (f.certify) {
    if (certifyEps.length === 0) throw new UserError('--certify needs an --eps above 0, e.g. --eps 1/255,2/255,4/255');
    if (!(layers instanceof LayersClassifier)) throw new UserError('--certify (IBP) needs a layers model (an advsign model folder or a tfjs layers model)');
    requireLogitsModel(layers, '--certify (IBP)');
  }
  let set = await loadDataset(data, { split, size: clf.inputSize, limit, progress: !f.quiet, preprocess: input.preprocess });
  // A model whose outputs are not GTSRB's 43 in class-id order sees the data in its own labels.
  const outputIds = gtsrbClassIds(clf.classNames ?? CLASS_NAMES);
  let relabelled: string | null = null;
  if (!isGtsrbOrder(outputIds)) {
    const r = relabelForModel(set, outputIds);
    if (r.set.n === 0) throw new UserError(`none of the data's classes is among the model's labels (${described.labels}): check --labels`);
    set = r.set;
    relabelled = `labels matched to the data's GTSRB classes by name or id${r.dropped ? `; ${r.dropped} images of classes the model lacks left out` : ''}`;
  }
  const runtime = measuredOn(clf);
  const t0 = performance.now();
  const pred = await predictClasses(runtime, set.images, set.n);
  const seconds = (performance.now() - t0) / 1000;
  const names = clf.classNames ?? CLASS_NAMES;
  const m = cleanMetrics(pred, set.labels, clf.numClasses);
  const report = {
    model: modelPath,
    data,
    split,
    n: set.n,
    backend: backend.backend,
    engine: engine.engine,
    modelInfo: { ...described, relabelled },
    clean: { accuracy: m.accuracy, imagesPerSecond: set.n / seconds, perClass: m.perClass, confusion: m.confusion },
    results: [] as unknown[],
    certified: [] as { eps: number; accuracy: number }[],
    /** Batches attacked side by side (1 + worker threads used). */
    threads: 1,
  };
  for (const eps of certifyEps) {
    report.certified.push({ eps, accuracy: await certifiedAccuracy((layers as LayersClassifier).model, set.images, set.labels, set.size, eps) });
  }
  let robust: RobustnessResult | null = null;
  if (specs.length) {
    const { attacks, surrogate } = await resolveAttacks(specs, f, clf);
    let bar: Progress | null = null;
    let current = '';
    try {
      robust = await evaluateRobustness(clf, set, {
        attacks,
        epsList,
        batchSize,
        workers,
        worstCase,
        attackOptions: Object.fromEntries(attacks.map((a) => [a.name, attackOptions(a)])),
        onProgress: f.quiet
          ? undefined
          : (p) => {
              if (p.attack !== current) {
                bar?.done();
                current = p.attack;
                bar = progressBar(`attack ${p.attack}`, p.total);
              }
              bar?.update(p.done);
            },
      });
    } finally {
      surrogate?.dispose();
    }
    (bar as Progress | null)?.done();
    const json = robustnessToJson(robust, { model: modelPath, data, split, backend: backend.backend });
    report.results = json.results as unknown[];
    report.threads = robust.threads ?? 1;
    (report as Record<string, unknown>).examples = json.examples;
    (report as Record<string, unknown>).notes = json.notes;
  }
  const outputs: OutputFile[] = [];
  if (reportFile) {
    const html = await renderReportHtml(
      robust ?? {
        n: set.n,
        numClasses: clf.numClasses,
        results: [],
        examples: [],
        clean: { accuracy: m.accuracy, perClassAccuracy: m.perClass.map((c) => (c.n ? c.accuracy : null)) },
      },
      { model: modelPath, data, split, backend: backend.backend, classNames: names },
    );
    outputs.push({ path: reportFile, data: html });
  }
  if (f['update-card']) {
    const card = readCard(modelPath) ?? ({} as ModelCard);
    const key = `${path.basename(path.resolve(data))}/${split}`;
    const clean = (card.cleanAccuracy as Record<string, number> | undefined) ?? {};
    // A --limit run must not overwrite the full-split figure.
    clean[limit !== undefined ? `${key} (first ${set.n} images)` : key] = m.accuracy;
    const robustCard = (card.robustAccuracy as Record<string, unknown> | undefined) ?? {};
    for (const r of report.results as RobustnessRow[]) {
      // Each figure says what produced it: the attack, the parameters it ran with (defaults filled
      // in: steps, restarts, step size, queries…), n and, for ensembles, each member's share.
      robustCard[`${r.attack}@${r.eps.toFixed(4)}`] = {
        data: key,
        n: set.n,
        eps: r.eps,
        accuracy: r.accuracy,
        meanL2: r.meanL2,
        attack: r.title,
        settings: r.settings ?? {},
        ...(r.stages ? { stages: r.stages } : {}),
        measuredAt: new Date().toISOString(),
      };
    }
    const certifiedCard = (card.certifiedAccuracy as Record<string, unknown> | undefined) ?? {};
    for (const c of report.certified) certifiedCard[`ibp@${c.eps.toFixed(4)}`] = { data: key, n: set.n, eps: c.eps, accuracy: c.accuracy };
    writeJsonAtomic(path.join(path.dirname(resolveModelPath(modelPath)), 'card.json'), {
      ...card,
      cleanAccuracy: clean,
      robustAccuracy: robustCard,
      ...(report.certified.length ? { certifiedAccuracy: certifiedCard } : {}),
    });
  }
  if (jsonOut === '-') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else if (jsonOut) outputs.push({ path: jsonOut, data: JSON.stringify(report, null, 2) + '\n' });
  writeFilesAtomic(outputs); // the report and the JSON together: both new, or both as they were
  loaded.dispose();
  if (jsonOut !== '-') {
    for (const line of describeModel(described)) console.log(line);
    if (relabelled) console.log(relabelled);
    console.log(
      `${modelPath} on ${data} ${split}: accuracy ${(m.accuracy * 100).toFixed(2)}% over ${set.n} images (${engine.engine === 'ort' ? 'ort' : backend.backend}, ${(set.n / seconds).toFixed(0)} img/s)`,
    );
    const worst = m.perClass
      .filter((c) => c.n > 0)
      .sort((a, b) => a.accuracy - b.accuracy)
      .slice(0, 5);
    console.log('weakest classes: ' + worst.map((c) => `${c.classId} ${names[c.classId]} ${(c.accuracy * 100).toFixed(1)}%`).join('; '));
    if ((robust?.threads ?? 1) > 1) {
      console.log(
        `attacks: ${robust?.threads} batches at a time${engine.engine === 'ort' ? ', each on onnxruntime sessions of 1 thread' : ' (worker threads)'}`,
      );
    }
    for (const note of robust?.notes ?? []) console.log(`note: ${note}`);
    for (const r of report.results as RobustnessResult['results']) {
      const epsText = r.norm === 'l2' ? `L2 ${r.eps.toFixed(3).padStart(7)}` : `eps ${(r.eps * 255).toFixed(1).padStart(5)}/255`;
      console.log(
        `  ${r.attack.padEnd(9)} ${epsText}  accuracy ${(r.accuracy * 100).toFixed(2).padStart(6)}%` +
          `  success ${r.successRate == null ? '  n/a' : (r.successRate * 100).toFixed(1) + '%'}` +
          `  mean L2 ${r.meanL2 == null ? 'n/a' : r.meanL2.toFixed(3)}  ${r.imagesPerSecond == null ? '' : r.imagesPerSecond.toFixed(r.imagesPerSecond < 10 ? 2 : 0) + ' img/s'}` +
          (r.queriesPerSecond == null
            ? ''
            : `  queries: ${r.meanQueries == null ? 'n/a' : r.meanQueries.toFixed(0)} per success, ${r.queriesPerSecond.toFixed(0)}/s`),
      );
      if (r.stages) console.log(`    in cascade, accuracy after ${r.stages.map((st) => `${st.attack} ${(st.accuracy * 100).toFixed(2)}%`).join(', ')}`);
    }
    for (const c of report.certified)
      console.log(`  IBP-certified eps ${(c.eps * 255).toFixed(1).padStart(5)}/255  accuracy ${(c.accuracy * 100).toFixed(2).padStart(6)}%`);
    if (reportFile) console.log(`report: ${reportFile}`);
  }
}
