/**
 * `advsign validate` (npm run validate): an independent check of advsign's numbers. Each model's
 * weights are loaded into PyTorch by the project's converter (scripts/torch/advsign_torch.py), and
 * logits, input gradients, FGSM and PGD results are compared image by image on a fixed set:
 * GTSRB Test when the shared copy is there, else synthetic signs. It fails (exit 1) when they
 * differ beyond float tolerance (reference-check.ts), and is skipped when Debian's python3 has
 * no torch. Optionally (--autoattack N) the reference AutoAttack, if installed, runs too.
 *
 * Cross-entropy gradients: advsign's is the plain float32 one except for an image whose logit
 * cotangent is below 1e-30 everywhere, where it is recomputed without underflow (objective.ts);
 * there the plain torch gradient is all zeros, so those images are compared with the same rule
 * computed in torch, and FGSM/PGD use the rule on both sides.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tf, Tensor4D } from '../inference/tf';
import { initBackend } from '../inference/backend';
import { loadClassifier, writeJsonAtomic } from '../inference/model-io';
import { loadDataset, sharedGtsrbDir } from '../data/load';
import { UserError } from '../data/types';
import { objectiveGradient } from '../attack/loss';
import { getAttack, parseEps } from '../attack/registry';
import { iterateAttack, randomStart } from '../attack/iterative';
import {
  argmaxRows, CONFIDENT, gradientFigures, imageFigures, labelComplement, logitsRelativeError, signFigures, TOLERANCES,
} from '../attack/reference-check';
import { int, parseFlags, str } from './args';
import { projectRoot } from './paths';

export const VALIDATE_HELP = `advsign validate [--model models/A,models/B] [--data DIR|synthetic] [--n 200] [--eps 8/255]

Loads each model's weights into PyTorch (Debian's /usr/bin/python3 with python3-torch;
ADVSIGN_PYTHON names another interpreter) and compares, image by image: logits, input
gradients, the FGSM step's signs and PGD-10 results. Exit 1 when they differ beyond float
tolerance; skipped (exit 0) without torch.

  --model LIST        models to check (default: the shipped models/gtsrb-cnn and models/gtsrb-cnn-robust)
  --data DIR          images (default: ../shared/data/gtsrb Test when present, else synthetic)
  --n N               images (default 200)
  --eps X             FGSM/PGD budget (default 8/255)
  --torch-model DIR   load these weights on the PyTorch side instead (to see a mismatch caught)
  --autoattack N      also run the reference AutoAttack (Python package 'autoattack', on
                      PYTHONPATH) and advsign's on the first N images, and compare
  --json FILE         write the figures as JSON`;

const PGD_STEPS = 10;

function python(): string {
  return process.env.ADVSIGN_PYTHON ?? '/usr/bin/python3';
}

/** Why the check cannot run here (no interpreter, no torch), or null. */
function torchMissing(): string | null {
  const r = spawnSync(python(), [path.join(projectRoot(), 'scripts', 'torch', 'validate.py'), '--check'], { encoding: 'utf8' });
  if (r.error) return `${python()} not found`;
  return r.status === 0 ? null : `${python()} has no torch (${(r.stderr || '').trim().split('\n').pop()})`;
}

const f32 = (file: string) => { const b = fs.readFileSync(file); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)); };
const save = (file: string, a: Float32Array | Int32Array | Uint8Array) => fs.writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));

async function predictArray(clf: Awaited<ReturnType<typeof loadClassifier>>, a: Float32Array, n: number): Promise<Int32Array> {
  const s = clf.inputSize;
  const z = tf.tidy(() => clf.logits(tf.tensor4d(a, [n, s, s, 3])));
  const out = argmaxRows(await z.data() as Float32Array, n);
  z.dispose();
  return out;
}

interface Checked { figures: Record<string, unknown>; failures: string[] }

async function checkModel(modelPath: string, torchModel: string, data: string, n: number, eps: number, aaN: number): Promise<Checked> {
  const clf = await loadClassifier(modelPath);
  const s = clf.inputSize;
  const set = await loadDataset(data, { split: 'test', size: s, limit: n, progress: false });
  const m = Math.min(n, set.n), px = s * s * 3;
  const images = set.images.slice(0, m * px), labels = set.labels.slice(0, m);
  const x = tf.tensor4d(images, [m, s, s, 3]), y = tf.tensor1d(labels, 'int32');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-validate-'));
  try {
    const { grad, logits } = await objectiveGradient(clf, x, y, null, 'ce');
    const z = Float32Array.from(await logits.data() as Float32Array), g = Float32Array.from(await grad.data() as Float32Array);
    const under = tf.tidy(() => tf.less(tf.max(tf.abs(tf.sub(tf.softmax(logits), tf.oneHot(y, clf.numClasses))), 1), 1e-30).toInt());
    const underflow = Uint8Array.from(await under.data() as Int32Array);
    tf.dispose([grad, logits, under]);
    const fg = await getAttack('fgsm').run(clf, x, y, { eps });
    const fgsm = Float32Array.from(await fg.adversarial.data() as Float32Array);
    fg.adversarial.dispose();
    const start: Tensor4D = randomStart(x, 'linf', eps, 17);
    const stepSize = 2.5 * eps / PGD_STEPS;
    const pg = await iterateAttack(clf, x, y, null, { norm: 'linf', eps, steps: PGD_STEPS, stepSize, start, loss: 'ce' });
    const pgd = Float32Array.from(await pg.data() as Float32Array);
    save(path.join(work, 'start.f32'), Float32Array.from(await start.data() as Float32Array));
    tf.dispose([start, pg]);
    save(path.join(work, 'images.f32'), images);
    save(path.join(work, 'labels.i32'), labels);
    save(path.join(work, 'underflow.u8'), underflow);
    fs.writeFileSync(path.join(work, 'manifest.json'), JSON.stringify({ model: path.resolve(torchModel), n: m, size: s, eps, steps: PGD_STEPS, stepSize, autoattack: aaN }));
    const r = spawnSync(python(), [path.join(projectRoot(), 'scripts', 'torch', 'validate.py'), work], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
    if (r.status !== 0) throw new UserError(`the PyTorch side failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
    const info = JSON.parse(fs.readFileSync(path.join(work, 'info.json'), 'utf8')) as Record<string, unknown>;
    const read = (name: string) => f32(path.join(work, name));
    const zRef = read('logits.f32'), gPlain = read('grad.f32'), gRule = read('grad_rule.f32');
    const predTf = argmaxRows(z, m), predRef = argmaxRows(zRef, m);
    const complement = labelComplement(zRef, labels);
    const fgsmRef = read('fgsm.f32'), pgdRef = read('pgd.f32');
    const figures: Record<string, unknown> = {
      model: modelPath, data, n: m, eps, torch: info.torch, underflowImages: underflow.reduce((a, b) => a + b, 0),
      logits: { maxRelativeError: logitsRelativeError(z, zRef, m), predictionAgreement: predTf.filter((p, i) => p === predRef[i]).length / m },
      gradient: gradientFigures(g, gPlain, m, (i) => !underflow[i] && complement[i] >= CONFIDENT),
      gradientConfidentImages: gradientFigures(g, gPlain, m, (i) => !underflow[i] && complement[i] < CONFIDENT),
      gradientUnderflowImages: gradientFigures(g, gRule, m, (i) => underflow[i] === 1),
      fgsmSigns: signFigures(images, g, gRule, eps),
      fgsm: imageFigures(fgsm, fgsmRef, await predictArray(clf, fgsm, m), await predictArray(clf, fgsmRef, m), labels),
      pgd: { steps: PGD_STEPS, stepSize, ...imageFigures(pgd, pgdRef, await predictArray(clf, pgd, m), await predictArray(clf, pgdRef, m), labels) },
    };
    if (aaN > 0) figures.autoattack = await compareAutoAttack(clf, x, labels, eps, Math.min(aaN, m), work);
    return { figures, failures: failuresOf(figures) };
  } finally {
    tf.dispose([x, y]);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function compareAutoAttack(clf: Awaited<ReturnType<typeof loadClassifier>>, x: Tensor4D, labels: Int32Array, eps: number, k: number, work: string): Promise<Record<string, number>> {
  const xs = x.slice(0, k);
  const ys = tf.tensor1d(labels.slice(0, k), 'int32');
  const r = await getAttack('autoattack').run(clf, xs, ys, { eps, seed: 0 });
  tf.dispose([xs, ys, r.adversarial]);
  const ref = fs.readFileSync(path.join(work, 'aa_robust.u8'));
  let ours = 0, theirs = 0, same = 0;
  for (let i = 0; i < k; i++) { ours += 1 - r.success[i]; theirs += ref[i]; if (1 - r.success[i] === ref[i]) same++; }
  return { images: k, accuracy: ours / k, referenceAccuracy: theirs / k, imageAgreement: same / k };
}

function failuresOf(f: Record<string, unknown>): string[] {
  const t = TOLERANCES, out: string[] = [];
  const l = f.logits as { maxRelativeError: number };
  const g = f.gradient as { medianRelativeError: number; p90RelativeError: number };
  const s = f.fgsmSigns as { agreement: number };
  const p = f.pgd as { predictionAgreement: number; accuracy: number; referenceAccuracy: number };
  if (l.maxRelativeError > t.logitsRelative) out.push(`logits differ by ${l.maxRelativeError.toExponential(2)} (relative) > ${t.logitsRelative}`);
  if (g.medianRelativeError > t.gradientMedian || g.p90RelativeError > t.gradientP90) {
    out.push(`input gradients differ: median ${g.medianRelativeError.toExponential(2)}, 90th percentile ${g.p90RelativeError.toExponential(2)} (relative; tolerance ${t.gradientMedian}, ${t.gradientP90})`);
  }
  if (s.agreement < t.signAgreement) out.push(`FGSM signs agree on ${(s.agreement * 100).toFixed(3)} % of unclipped pixels < ${t.signAgreement * 100} %`);
  if (p.predictionAgreement < t.pgdPredictionAgreement || Math.abs(p.accuracy - p.referenceAccuracy) * 100 > t.accuracyPoints) {
    out.push(`PGD-10 results differ: predictions agree on ${(p.predictionAgreement * 100).toFixed(1)} %, accuracy ${(p.accuracy * 100).toFixed(1)} % vs ${(p.referenceAccuracy * 100).toFixed(1)} %`);
  }
  const aa = f.autoattack as { accuracy: number; referenceAccuracy: number } | undefined;
  if (aa && Math.abs(aa.accuracy - aa.referenceAccuracy) * 100 > t.accuracyPoints) {
    out.push(`AutoAttack accuracy ${(aa.accuracy * 100).toFixed(1)} % vs the reference's ${(aa.referenceAccuracy * 100).toFixed(1)} %`);
  }
  return out;
}

function summary(f: Record<string, unknown>): string[] {
  const pct = (v: number, d = 2) => `${(v * 100).toFixed(d)} %`;
  const l = f.logits as { maxRelativeError: number; predictionAgreement: number };
  const g = f.gradient as { images: number; medianRelativeError: number; p90RelativeError: number; maxRelativeError: number };
  const gc = f.gradientConfidentImages as { images: number; medianRelativeError: number; maxRelativeError: number };
  const gu = f.gradientUnderflowImages as { images: number; medianRelativeError: number; maxRelativeError: number };
  const s = f.fgsmSigns as { agreement: number; counted: number; agreementAll: number; zeroInReference: number; nonzeroOursWhereReferenceZero: number };
  const fg = f.fgsm as { equalValues: number; accuracy: number; referenceAccuracy: number };
  const p = f.pgd as { predictionAgreement: number; accuracy: number; referenceAccuracy: number; equalValues: number };
  const aa = f.autoattack as { images: number; accuracy: number; referenceAccuracy: number; imageAgreement: number } | undefined;
  return [
    `${f.model}: ${f.n} images of ${f.data}, torch ${String(f.torch)}`,
    `  logits: max relative difference ${l.maxRelativeError.toExponential(2)}, same prediction on ${pct(l.predictionAgreement, 1)}`,
    `  CE input gradient: relative error median ${g.medianRelativeError.toExponential(2)}, 90th percentile ${g.p90RelativeError.toExponential(2)}, max ${g.maxRelativeError.toExponential(2)} over ${g.images} images`,
    ...(gc.images ? [`    ${gc.images} confident images (1 − p_y < ${CONFIDENT}, float32 gradient ill-conditioned; not held to the tolerance): median ${gc.medianRelativeError.toExponential(2)}, max ${gc.maxRelativeError.toExponential(2)}`] : []),
    ...(gu.images ? [`    ${gu.images} images whose CE cotangent underflows (< 1e-30; plain torch gradient 0 there), against the same no-underflow rule in torch: median ${gu.medianRelativeError.toExponential(2)}, max ${gu.maxRelativeError.toExponential(2)}`] : []),
    `  FGSM signs: agree on ${pct(s.agreement, 3)} of ${s.counted} unclipped pixels (${pct(s.agreementAll, 3)} of all with a nonzero reference gradient); ` +
      `${s.zeroInReference} values have a zero reference gradient, ${s.nonzeroOursWhereReferenceZero} of them nonzero here`,
    `  FGSM images: ${pct(fg.equalValues, 3)} of values equal; accuracy ${pct(fg.accuracy, 1)} vs ${pct(fg.referenceAccuracy, 1)}`,
    `  PGD-10 (same start): same prediction on ${pct(p.predictionAgreement, 1)}, accuracy ${pct(p.accuracy, 1)} vs ${pct(p.referenceAccuracy, 1)}, ${pct(p.equalValues, 2)} of values equal`,
    ...(aa ? [`  AutoAttack (${aa.images} images): accuracy ${pct(aa.accuracy, 1)} vs the reference's ${pct(aa.referenceAccuracy, 1)}, same verdict on ${pct(aa.imageAgreement, 1)}`] : []),
  ];
}

export async function validateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, data: { type: 'string' }, n: { type: 'string' }, eps: { type: 'string' }, json: { type: 'string' },
    'torch-model': { type: 'string' }, autoattack: { type: 'string' }, backend: { type: 'string' },
  }, 'validate');
  const root = projectRoot();
  const models = (str(f, 'model') ?? ['gtsrb-cnn', 'gtsrb-cnn-robust'].map((m) => path.join(root, 'models', m)).join(',')).split(',').map((m) => m.trim()).filter(Boolean);
  for (const m of models) if (!fs.existsSync(m)) throw new UserError(`model not found: ${m}`);
  const n = int(f, 'n', 200, 1, 100000);
  const eps = parseEps(str(f, 'eps', '8/255') as string);
  if (!(eps > 0)) throw new UserError('validate: --eps must be above 0, e.g. 8/255');
  const aaN = f.autoattack !== undefined ? int(f, 'autoattack', 0, 1, 100000) : 0;
  const torchModel = str(f, 'torch-model');
  if (torchModel && !fs.existsSync(torchModel)) throw new UserError(`--torch-model not found: ${torchModel}`);
  const data = str(f, 'data') ?? sharedGtsrbDir() ?? 'synthetic';
  const missing = torchMissing();
  if (missing) {
    console.log(`validate: skipped: ${missing}. Install Debian's python3-torch (apt-get install python3-torch) to run the PyTorch reference check.`);
    return;
  }
  await initBackend(str(f, 'backend'));
  const all: Record<string, unknown>[] = [];
  const failures: string[] = [];
  for (const m of models) {
    const r = await checkModel(m, torchModel ?? m, data, n, eps, aaN);
    all.push({ ...r.figures, failures: r.failures });
    for (const line of summary(r.figures)) console.log(line);
    for (const fail of r.failures) console.log(`  FAILED: ${fail}`);
    failures.push(...r.failures.map((x) => `${m}: ${x}`));
  }
  const jsonOut = str(f, 'json');
  if (jsonOut) writeJsonAtomic(jsonOut, { tolerances: TOLERANCES, models: all });
  if (failures.length) {
    console.log(`validate: FAILED (${failures.length} check${failures.length === 1 ? '' : 's'} beyond float tolerance)`);
    process.exitCode = 1;
  } else {
    console.log('validate: every check within float tolerance');
  }
}
