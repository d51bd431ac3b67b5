/** `advsign attack`: attacks one image file and writes the adversarial image. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../inference/tf';
import { initBackend } from '../inference/backend';
import { measuredOn, predictTopK } from '../inference/model';
import { describeModel, loadModelOnEngine } from '../inference/load-model';
import { loadImageFile, cropResize, encodePng } from '../data/image-io';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import { parseEps, validateTarget, attackNames } from '../attack/registry';
import { measureWritten, quantiseArray } from '../attack/written';
import { ATTACK_LOSSES, parseAttackLoss } from '../attack/loss';
import { classFlag, int, jsonTarget, parseFlags, required, str, writeJsonOutput } from './args';
import { checkOutputs, checkWritable, writeFileAtomic } from '../util/atomic-file';
import { defaultModelDir } from './paths';
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

export const ATTACK_HELP = `advsign attack --model models/NAME|model.tflite --attack fgsm --eps 8/255 --input in.png --out adv.png

${MODEL_INPUT_HELP}
                         (the input image is resized whole: crop it to the sign first)
  --attack NAME      ${attackNames().join(', ')}, transfer
${TRANSFER_HELP}
  --eps X            budget, e.g. 8/255 (default 8/255)
  --target N         class to aim for (targeted attacks)
  --label N          true class of the image (default: the model's clean prediction)
  --steps N          iterations for iterative attacks
  --queries N        query budget of black-box attacks (square; default 1000)
  --loss L           objective of gradient attacks: ${ATTACK_LOSSES.join(' | ')} (default ce)
  --engine E         ort | tfjs (default: ort when it loads and the model exports)
  --backend NAME     tensorflow | wasm | cpu
  --json FILE|-      write the result as JSON to FILE; '-' or a bare --json: stdout only

Predictions come from the model's own runtime (for a .tflite file, its interpreter); gradient
attacks differentiate the model (for a .tflite file, its graph rebuilt in TensorFlow.js).`;

export async function attackCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      model: { type: 'string' },
      attack: { type: 'string' },
      eps: { type: 'string' },
      input: { type: 'string' },
      out: { type: 'string' },
      target: { type: 'string' },
      label: { type: 'string' },
      steps: { type: 'string' },
      loss: { type: 'string' },
      queries: { type: 'string' },
      json: { type: 'string' },
      backend: { type: 'string' },
      engine: { type: 'string' },
      ...MODEL_INPUT_FLAGS,
      ...TRANSFER_FLAGS,
    },
    'attack',
  );
  checkOutputs(jsonTarget(f));
  const specs = parseAttackSpecs(str(f, 'attack', 'fgsm') as string, f);
  if (specs.length !== 1) throw new UserError('attack: give one --attack (evaluate runs several)');
  const eps = parseEps(str(f, 'eps', '8/255') as string);
  const loss = f.loss !== undefined ? parseAttackLoss(str(f, 'loss') ?? '') : undefined;
  const chosen = specs[0].kind === 'attack' ? specs[0].attack : specs[0].inner;
  if (loss && !chosen.takesLoss) throw new UserError(`attack '${chosen.name}' has its own objective: --loss does not apply to it`);
  const input = required(f, 'input', 'attack');
  const out = required(f, 'out', 'attack');
  const modelPath = str(f, 'model') ?? defaultModelDir();
  const modelInput = modelInputFromFlags(f);
  const steps = f.steps !== undefined ? int(f, 'steps', 10, 1, 10000) : undefined;
  const queries = f.queries !== undefined ? int(f, 'queries', 1000, 1, 1e7) : undefined;
  if (!fs.existsSync(input)) throw new UserError(`input image not found: ${input}`);
  checkWritable(out);
  const targetArg = classFlag(f, 'target'); // its range is checked against the model below
  await initBackend(str(f, 'backend'));
  const loaded = await loadModelOnEngine(modelPath, modelInput, str(f, 'engine'));
  const clf = loaded.classifier;
  const runtime = measuredOn(clf);
  if (needsGradients(specs) && loaded.description.gradients === null) throw new UserError(loaded.description.noGradients ?? `${modelPath} has no gradients`);
  const names = clf.classNames ?? CLASS_NAMES;
  const s = clf.inputSize;
  const img = await loadImageFile(input);
  const notes: string[] = [];
  if (img.width !== s || img.height !== s) notes.push(`input is ${img.width}×${img.height}: resized to the model's ${s}×${s}`);
  // On the 8-bit grid from the start (a resized photo is not): the written image's perturbation
  // is then exactly the pixels the attack changed, and an eps budget survives rounding.
  const pixels = quantiseArray(cropResize(img, null, s, 0));
  const x = tf.tensor4d(pixels, [1, s, s, 3]);
  const [clean] = await predictTopK(runtime, x, 3);
  const label = f.label !== undefined ? int(f, 'label', 0, 0, clf.numClasses - 1) : clean[0].classId;
  const {
    attacks: [attack],
    surrogate,
  } = await resolveAttacks(specs, f, clf);
  let target: number | undefined;
  if (targetArg !== null) {
    if (!attack.supportsTargeted) throw new UserError(`attack '${attack.name}' has no targeted mode`);
    target = validateTarget(targetArg, clf.numClasses, label);
  }
  const y = tf.tensor1d([label], 'int32');
  const options = {
    eps,
    targeted: target !== undefined,
    target,
    eightBit: true,
    ...(steps ? { steps } : {}),
    ...(queries ? { maxQueries: queries } : {}),
    ...(loss ? { loss } : {}),
  };
  notes.push(...(attack.notes?.(clf, options) ?? []));
  const res = await attack.run(attack.blackBox ? runtime : clf, x, y, options);
  surrogate?.dispose();
  // Everything reported below is measured on the 8-bit image written to --out, by the runtime.
  const written = await measureWritten(
    runtime,
    pixels,
    Float32Array.from((await res.adversarial.data()) as Float32Array),
    Int32Array.of(label),
    target !== undefined ? Int32Array.of(target) : null,
    attack.usesEps ? { norm: attack.norm, eps } : undefined,
  );
  const xw = tf.tensor4d(written.images, x.shape);
  const [adv] = await predictTopK(runtime, xw, 3);
  const norms = written.norms;
  writeFileAtomic(out, await encodePng({ data: written.images, width: s, height: s }));
  tf.dispose([x, y, xw, res.adversarial]);
  loaded.dispose();
  if (res.success[0] !== written.success[0]) {
    notes.push(
      res.success[0]
        ? "the attack's float result fooled the model, but rounding it to the 8-bit image written undid that"
        : 'rounding to the 8-bit image written made the attack succeed where its float result did not',
    );
  }
  if (norms.l0[0] === 0 && (eps > 0 || !attack.usesEps)) {
    notes.push('the attack left the image unchanged: its gradient is zero here, or every pixel it would move is already at 0 or 1');
  }
  const named = (p: { classId: number; probability: number }) => ({ ...p, name: names[p.classId] });
  const result = {
    attack: attack.name,
    loss: attack.takesLoss ? (loss ?? 'ce') : null,
    eps,
    label,
    target: target ?? null,
    success: written.success[0] === 1,
    clean: clean.map(named),
    adversarial: adv.map(named),
    l0: norms.l0[0],
    l2: norms.l2[0],
    linf: norms.linf[0],
    queries: res.queries ? res.queries[0] : null,
    out,
    engine: loaded.engine.engine,
    notes,
    model: loaded.description,
  };
  const json = jsonTarget(f);
  if (json) writeJsonOutput(json, result);
  if (json === '-') return;
  for (const line of describeModel(loaded.description)) console.log(line);
  for (const n of notes) console.log(`note: ${n}`);
  const fmt = (p: { classId: number; probability: number }) => `${p.classId} ${names[p.classId]} (${(p.probability * 100).toFixed(1)}%)`;
  console.log(`clean:       ${fmt(clean[0])}`);
  console.log(`adversarial: ${fmt(adv[0])}  ${result.success ? 'FOOLED' : 'not fooled'}`);
  console.log(
    `perturbation: L0 ${result.l0} pixels, L2 ${result.l2.toFixed(4)}, Linf ${result.linf.toFixed(4)} (${(result.linf * 255).toFixed(1)}/255)` +
      (result.queries != null ? `; ${result.queries} model queries` : ''),
  );
  console.log(`wrote ${out}`);
}
