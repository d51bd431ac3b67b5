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
import { Classifier, inferLogits } from '../inference/model';
import { loadModelOnEngine } from '../inference/load-model';
import { DEFAULT_MODEL_INPUT } from '../inference/model-input';
import { loadDataset, sharedGtsrbDir } from '../data/load';
import { UserError } from '../data/types';
import { objectiveGradient } from '../attack/loss';
import { getAttack, parseEps } from '../attack/registry';
import { iterateAttack, randomStart } from '../attack/iterative';
import { argmaxRows, CONFIDENT, gradientFigures, imageFigures, labelComplement, logitsRelativeError, signFigures, TOLERANCES } from '../attack/reference-check';
import { int, jsonTarget, parseFlags, str, writeJsonOutput } from './args';
import { checkOutputs } from '../util/atomic-file';
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
  --engine ort|tfjs   advsign's engine (default: ort when it loads, as evaluate and attack)
  --backend NAME      tensorflow | wasm | cpu (the tfjs backend; default: the best that loads)
  --json FILE|-       write the figures as JSON to FILE ('-' or a bare --json: stdout)`;

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

const f32 = (file: string) => {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};
const save = (file: string, a: Float32Array | Int32Array | Uint8Array) => fs.writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));

async function predictArray(clf: Classifier, a: Float32Array, n: number): Promise<Int32Array> {
  const s = clf.inputSize;
  const x = tf.tensor4d(a, [n, s, s, 3]);
  const z = await inferLogits(clf, x);
  const out = argmaxRows((await z.data()) as Float32Array, n);
  tf.dispose([x, z]);
  return out;
}

interface Checked {
  figures: Record<string, unknown>;
  failures: string[];
}

async function checkModel(
  modelPath: string,
  torchModel: string,
  data: string,
  n: number,
  eps: number,
  aaN: number,
  engine: string | undefined,
): Promise<Checked> {
  // The engine evaluate and attack use by default (onnxruntime when it loads), unless --engine says.
  const loaded = await loadModelOnEngine(modelPath, DEFAULT_MODEL_INPUT, engine);
  const clf = loaded.classifier;
  const s = clf.inputSize;
  const set = await loadDataset(data, { split: 'test', size: s, limit: n, progress: false });
  const m = Math.min(n, set.n),
    px = s * s * 3;
  const images = set.images.slice(0, m * px),
    labels = set.labels.slice(0, m);
  const x = tf.tensor4d(images, [m, s, s, 3]),
    y = tf.tensor1d(labels, 'int32');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-validate-'));
  try {
    const { grad, logits } = await objectiveGradient(clf, x, y, null, 'ce');
    const z = Float32Array.from((await logits.data()) as Float32Array),
      g = Float32Array.from((await grad.data()) as Float32Array);
    // As objective.ts decides: the CE cotangent underflows where Σ_{j≠y} p_j < 1e-30.
    const under = tf.tidy(() => tf.less(tf.sum(tf.mul(tf.softmax(logits), tf.sub(1, tf.oneHot(y, clf.numClasses))), 1), 1e-30).toInt());
    const underflow = Uint8Array.from((await under.data()) as Int32Array);
    tf.dispose([grad, logits, under]);
    const fg = await getAttack('fgsm').run(clf, x, y, { eps });
    const fgsm = Float32Array.from((await fg.adversarial.data()) as Float32Array);
    fg.adversarial.dispose();
    const start: Tensor4D = randomStart(x, 'linf', eps, 17);
    const stepSize = (2.5 * eps) / PGD_STEPS;
    const pg = await iterateAttack(clf, x, y, null, { norm: 'linf', eps, steps: PGD_STEPS, stepSize, start, loss: 'ce' });
    const pgd = Float32Array.from((await pg.data()) as Float32Array);
    save(path.join(work, 'start.f32'), Float32Array.from((await start.data()) as Float32Array));
    tf.dispose([start, pg]);
    save(path.join(work, 'images.f32'), images);
    save(path.join(work, 'labels.i32'), labels);
    save(path.join(work, 'underflow.u8'), underflow);
    fs.writeFileSync(
      path.join(work, 'manifest.json'),
      JSON.stringify({ model: path.resolve(torchModel), n: m, size: s, eps, steps: PGD_STEPS, stepSize, autoattack: aaN }),
    );
    const r = spawnSync(python(), [path.join(projectRoot(), 'scripts', 'torch', 'validate.py'), work], {
      encoding: 'utf8',
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    if (r.status !== 0) throw new UserError(`the PyTorch side failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
    const info = JSON.parse(fs.readFileSync(path.join(work, 'info.json'), 'utf8')) as Record<string, unknown>;
    const read = (name: string) => f32(path.join(work, name));
    const zRef = read('logits.f32'),
      gPlain = read('grad.f32'),
      gRule = read('grad_rule.f32');
    const f64 = (name: string) => {
      const b = fs.readFileSync(path.join(work, name));
      return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    };
    const z64 = f64('logits64.f64'),
      g64 = f64('grad64.f64');
    const predTf = argmaxRows(z, m),
      predRef = argmaxRows(zRef, m);
    const complement = labelComplement(zRef, labels);
    const fgsmRef = read('fgsm.f32'),
      pgdRef = read('pgd.f32');
    const figures: Record<string, unknown> = {
      model: modelPath,
      data,
      n: m,
      eps,
      engine: loaded.description.gradients,
      torch: info.torch,
      underflowImages: underflow.reduce((a, b) => a + b, 0),
      logits: {
        maxRelativeError: logitsRelativeError(z, zRef, m),
        maxRelativeErrorFloat64: logitsRelativeError(z, z64, m),
        predictionAgreement: predTf.filter((p, i) => p === predRef[i]).length / m,
      },
      // Held to the tolerance: the exact CE gradient against the float64 reference, every image.
      gradient: gradientFigures(g, g64, m, () => true),
      // The same cotangent in float32 PyTorch; and PyTorch's own float32 CE, which is trusted only
      // where 1 − p_y ≥ CONFIDENT (it drops the label term on confident images).
      gradientTorchFloat32: gradientFigures(g, gRule, m, () => true),
      gradientTorchPlain: gradientFigures(g, gPlain, m, (i) => !underflow[i] && complement[i] >= CONFIDENT),
      gradientTorchPlainConfident: gradientFigures(gPlain, g64, m, (i) => !underflow[i] && complement[i] < CONFIDENT),
      // PyTorch against itself (float32 vs float64, same cotangent): the floor any float32 code reaches.
      gradientTorchFloat32VsFloat64: gradientFigures(gRule, g64, m, () => true),
      fgsmSigns: signFigures(images, g, g64, eps),
      fgsmSignsTorchPlain: signFigures(images, gPlain, g64, eps),
      fgsm: imageFigures(fgsm, fgsmRef, await predictArray(clf, fgsm, m), await predictArray(clf, fgsmRef, m), labels),
      pgd: { steps: PGD_STEPS, stepSize, ...imageFigures(pgd, pgdRef, await predictArray(clf, pgd, m), await predictArray(clf, pgdRef, m), labels) },
    };
    if (aaN > 0) figures.autoattack = await compareAutoAttack(clf, x, labels, eps, Math.min(aaN, m), work);
    return { figures, failures: failuresOf(figures) };
  } finally {
    tf.dispose([x, y]);
    loaded.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function compareAutoAttack(clf: Classifier, x: Tensor4D, labels: Int32Array, eps: number, k: number, work: string): Promise<Record<string, number>> {
  const xs = x.slice(0, k);
  const ys = tf.tensor1d(labels.slice(0, k), 'int32');
  const r = await getAttack('autoattack').run(clf, xs, ys, { eps, seed: 0 });
  tf.dispose([xs, ys, r.adversarial]);
  const ref = fs.readFileSync(path.join(work, 'aa_robust.u8'));
  let ours = 0,
    theirs = 0,
    same = 0;
  for (let i = 0; i < k; i++) {
    ours += 1 - r.success[i];
    theirs += ref[i];
    if (1 - r.success[i] === ref[i]) same++;
  }
  return { images: k, accuracy: ours / k, referenceAccuracy: theirs / k, imageAgreement: same / k };
}

type GradientRow = { images: number; medianRelativeError: number; p99RelativeError: number; maxRelativeError: number };
type SignRow = { agreement: number; counted: number; agreementAll: number; zeroInReference: number; nonzeroOursWhereReferenceZero: number };

function failuresOf(f: Record<string, unknown>): string[] {
  const t = TOLERANCES,
    out: string[] = [];
  const l = f.logits as { maxRelativeError: number };
  const s = f.fgsmSigns as SignRow;
  const p = f.pgd as { predictionAgreement: number; accuracy: number; referenceAccuracy: number };
  if (l.maxRelativeError > t.logitsRelative) out.push(`logits differ by ${l.maxRelativeError.toExponential(2)} (relative) > ${t.logitsRelative}`);
  const gradients: [string, GradientRow][] = [
    ['the float64 reference', f.gradient as GradientRow],
    ['PyTorch float32, same cotangent', f.gradientTorchFloat32 as GradientRow],
    [`PyTorch's own float32 CE (1 − p_y ≥ ${CONFIDENT})`, f.gradientTorchPlain as GradientRow],
  ];
  for (const [what, g] of gradients) {
    if (g.medianRelativeError > t.gradientMedian || g.p99RelativeError > t.gradientP99) {
      out.push(
        `input gradients differ from ${what}: median ${g.medianRelativeError.toExponential(2)}, 99th percentile ${g.p99RelativeError.toExponential(2)} (relative; tolerance ${t.gradientMedian}, ${t.gradientP99})`,
      );
    }
  }
  if (s.agreement < t.signAgreement)
    out.push(`FGSM signs agree with the float64 gradient's on ${(s.agreement * 100).toFixed(3)} % of unclipped pixels < ${t.signAgreement * 100} %`);
  if (p.predictionAgreement < t.pgdPredictionAgreement || Math.abs(p.accuracy - p.referenceAccuracy) * 100 > t.accuracyPoints) {
    out.push(
      `PGD-10 results differ: predictions agree on ${(p.predictionAgreement * 100).toFixed(1)} %, accuracy ${(p.accuracy * 100).toFixed(1)} % vs ${(p.referenceAccuracy * 100).toFixed(1)} %`,
    );
  }
  const aa = f.autoattack as { accuracy: number; referenceAccuracy: number } | undefined;
  if (aa && Math.abs(aa.accuracy - aa.referenceAccuracy) * 100 > t.accuracyPoints) {
    out.push(`AutoAttack accuracy ${(aa.accuracy * 100).toFixed(1)} % vs the reference's ${(aa.referenceAccuracy * 100).toFixed(1)} %`);
  }
  return out;
}

function summary(f: Record<string, unknown>): string[] {
  const pct = (v: number, d = 2) => `${(v * 100).toFixed(d)} %`;
  const e = (v: number) => v.toExponential(2);
  const q = (g: GradientRow) => `${e(g.medianRelativeError)} / ${e(g.p99RelativeError)} / ${e(g.maxRelativeError)}`;
  const l = f.logits as { maxRelativeError: number; maxRelativeErrorFloat64: number; predictionAgreement: number };
  const g = f.gradient as GradientRow,
    g32 = f.gradientTorchFloat32 as GradientRow;
  const gtt = f.gradientTorchFloat32VsFloat64 as GradientRow;
  const gp = f.gradientTorchPlain as GradientRow,
    gc = f.gradientTorchPlainConfident as GradientRow;
  const s = f.fgsmSigns as SignRow,
    sp = f.fgsmSignsTorchPlain as SignRow;
  const fg = f.fgsm as { equalValues: number; accuracy: number; referenceAccuracy: number };
  const p = f.pgd as { predictionAgreement: number; accuracy: number; referenceAccuracy: number; equalValues: number };
  const aa = f.autoattack as { images: number; accuracy: number; referenceAccuracy: number; imageAgreement: number } | undefined;
  return [
    `${f.model}: ${f.n} images of ${f.data}, ${String(f.engine)}; torch ${String(f.torch)}`,
    `  logits: max relative difference ${e(l.maxRelativeError)} (float32 torch), ${e(l.maxRelativeErrorFloat64)} (float64), same prediction on ${pct(l.predictionAgreement, 1)}`,
    `  CE input gradient (relative error per image, median / 99th percentile / max; tolerance ${TOLERANCES.gradientMedian} / ${TOLERANCES.gradientP99} / -):`,
    `    vs float64 torch, the exact cotangent: ${q(g)} over ${g.images} images`,
    `    vs float32 torch, the same cotangent: ${q(g32)}`,
    `    (float32 torch vs float64 torch, the same cotangent: ${q(gtt)})`,
    `    vs float32 torch's own CE, ${gp.images} images with 1 − p_y ≥ ${CONFIDENT}: ${q(gp)}`,
    ...(gc.images ? [`    (float32 torch's own CE vs float64 on the ${gc.images} confident images, not held: ${q(gc)}: its label term p_y − 1 cancels)`] : []),
    `  FGSM signs vs the float64 gradient: ${pct(s.agreement, 3)} of ${s.counted} unclipped pixels (${pct(s.agreementAll, 3)} of all with a nonzero reference); ` +
      `float32 torch's own CE: ${pct(sp.agreement, 3)}`,
    `  FGSM images vs float32 torch: ${pct(fg.equalValues, 3)} of values equal; accuracy ${pct(fg.accuracy, 1)} vs ${pct(fg.referenceAccuracy, 1)}`,
    `  PGD-10 (same start): same prediction on ${pct(p.predictionAgreement, 1)}, accuracy ${pct(p.accuracy, 1)} vs ${pct(p.referenceAccuracy, 1)}, ${pct(p.equalValues, 2)} of values equal`,
    ...(aa
      ? [
          `  AutoAttack (${aa.images} images): accuracy ${pct(aa.accuracy, 1)} vs the reference's ${pct(aa.referenceAccuracy, 1)}, same verdict on ${pct(aa.imageAgreement, 1)}`,
        ]
      : []),
  ];
}

export async function validateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      model: { type: 'string' },
      data: { type: 'string' },
      n: { type: 'string' },
      eps: { type: 'string' },
      json: { type: 'string' },
      'torch-model': { type: 'string' },
      autoattack: { type: 'string' },
      backend: { type: 'string' },
      engine: { type: 'string' },
    },
    'validate',
  );
  const jsonOut = jsonTarget(f);
  checkOutputs(jsonOut);
  // With the JSON on stdout, the human lines go to stderr.
  const say = (line: string): void => (jsonOut === '-' ? console.error(line) : console.log(line));
  const root = projectRoot();
  const models = (str(f, 'model') ?? ['gtsrb-cnn', 'gtsrb-cnn-robust'].map((m) => path.join(root, 'models', m)).join(','))
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
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
    say(`validate: skipped: ${missing}. Install Debian's python3-torch (apt-get install python3-torch) to run the PyTorch reference check.`);
    return;
  }
  await initBackend(str(f, 'backend'));
  const all: Record<string, unknown>[] = [];
  const failures: string[] = [];
  for (const m of models) {
    const r = await checkModel(m, torchModel ?? m, data, n, eps, aaN, str(f, 'engine'));
    all.push({ ...r.figures, failures: r.failures });
    for (const line of summary(r.figures)) say(line);
    for (const fail of r.failures) say(`  FAILED: ${fail}`);
    failures.push(...r.failures.map((x) => `${m}: ${x}`));
  }
  if (jsonOut) writeJsonOutput(jsonOut, { tolerances: TOLERANCES, models: all });
  if (failures.length) {
    say(`validate: FAILED (${failures.length} check${failures.length === 1 ? '' : 's'} beyond float tolerance)`);
    process.exitCode = 1;
  } else {
    say('validate: every check within float tolerance');
  }
}
