/** `advsign attack`: attacks one image file and writes the adversarial image. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../inference/tf';
import { initBackend } from '../inference/backend';
import { loadClassifier } from '../inference/model-io';
import { predictTopK } from '../inference/model';
import { loadImageFile, cropResize, encodePng } from '../data/image-io';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import { getAttack, parseEps, validateTarget, attackNames } from '../attack/registry';
import { measureWritten, quantiseArray } from '../attack/written';
import { ATTACK_LOSSES, parseAttackLoss } from '../attack/loss';
import { int, parseFlags, required, str } from './args';

export const ATTACK_HELP = `advsign attack --model models/NAME --attack fgsm --eps 8/255 --input in.png --out adv.png

  --attack NAME      ${attackNames().join(', ')}
  --eps X            budget, e.g. 8/255 (default 8/255)
  --target N         class to aim for (targeted attacks)
  --label N          true class of the image (default: the model's clean prediction)
  --steps N          iterations for iterative attacks
  --loss L           objective of gradient attacks: ${ATTACK_LOSSES.join(' | ')} (default ce)
  --json             print the result as JSON`;

export async function attackCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, attack: { type: 'string' }, eps: { type: 'string' }, input: { type: 'string' },
    out: { type: 'string' }, target: { type: 'string' }, label: { type: 'string' }, steps: { type: 'string' }, loss: { type: 'string' },
    json: { type: 'boolean' }, backend: { type: 'string' },
  }, 'attack');
  const attack = getAttack(str(f, 'attack', 'fgsm') as string);
  const eps = parseEps(str(f, 'eps', '8/255') as string);
  const loss = f.loss !== undefined ? parseAttackLoss(str(f, 'loss') ?? '') : undefined;
  if (loss && !attack.takesLoss) throw new UserError(`attack '${attack.name}' has its own objective: --loss does not apply to it`);
  const input = required(f, 'input', 'attack');
  const out = required(f, 'out', 'attack');
  const modelPath = str(f, 'model') ?? path.join(__dirname, '..', '..', '..', 'models', 'gtsrb-cnn');
  if (!fs.existsSync(input)) throw new UserError(`input image not found: ${input}`);
  await initBackend(str(f, 'backend'));
  const clf = await loadClassifier(modelPath);
  const img = await loadImageFile(input);
  const notes: string[] = [];
  if (img.width !== clf.inputSize || img.height !== clf.inputSize) {
    notes.push(`input is ${img.width}×${img.height}: resized to the model's ${clf.inputSize}×${clf.inputSize}`);
  }
  // On the 8-bit grid from the start (a resized photo is not): the written image's perturbation
  // is then exactly the pixels the attack changed, and an eps budget survives rounding.
  const pixels = quantiseArray(cropResize(img, null, clf.inputSize, 0));
  const x = tf.tensor4d(pixels, [1, clf.inputSize, clf.inputSize, 3]);
  const [clean] = await predictTopK(clf, x, 3);
  const label = f.label !== undefined ? int(f, 'label', 0, 0, clf.numClasses - 1) : clean[0].classId;
  let target: number | undefined;
  if (f.target !== undefined) {
    if (!attack.supportsTargeted) throw new UserError(`attack '${attack.name}' has no targeted mode`);
    target = validateTarget(Number(f.target), clf.numClasses, label);
  }
  const y = tf.tensor1d([label], 'int32');
  const steps = f.steps !== undefined ? int(f, 'steps', 10, 1, 10000) : undefined;
  const options = { eps, targeted: target !== undefined, target, eightBit: true, ...(steps ? { steps } : {}), ...(loss ? { loss } : {}) };
  notes.push(...attack.notes?.(clf, options) ?? []);
  const res = await attack.run(clf, x, y, options);
  // Everything reported below is measured on the 8-bit image written to --out.
  const written = await measureWritten(clf, pixels, Float32Array.from(await res.adversarial.data() as Float32Array),
    Int32Array.of(label), target !== undefined ? Int32Array.of(target) : null, attack.usesEps ? { norm: attack.norm, eps } : undefined);
  const xw = tf.tensor4d(written.images, x.shape);
  const [adv] = await predictTopK(clf, xw, 3);
  const norms = written.norms;
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, await encodePng({ data: written.images, width: clf.inputSize, height: clf.inputSize }));
  tf.dispose([x, y, xw, res.adversarial]);
  if (res.success[0] !== written.success[0]) {
    notes.push(res.success[0]
      ? 'the attack\'s float result fooled the model, but rounding it to the 8-bit image written undid that'
      : 'rounding to the 8-bit image written made the attack succeed where its float result did not');
  }
  if (norms.l0[0] === 0 && (eps > 0 || !attack.usesEps)) {
    notes.push('the attack left the image unchanged: its gradient is zero here, or every pixel it would move is already at 0 or 1');
  }
  const result = {
    attack: attack.name, loss: attack.takesLoss ? loss ?? 'ce' : null, eps, label, target: target ?? null, success: written.success[0] === 1,
    clean: clean.map((p) => ({ ...p, name: CLASS_NAMES[p.classId] })),
    adversarial: adv.map((p) => ({ ...p, name: CLASS_NAMES[p.classId] })),
    l0: norms.l0[0], l2: norms.l2[0], linf: norms.linf[0], out, notes,
  };
  if (f.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return;
  }
  for (const n of notes) console.log(`note: ${n}`);
  const fmt = (p: { classId: number; probability: number }) => `${p.classId} ${CLASS_NAMES[p.classId]} (${(p.probability * 100).toFixed(1)}%)`;
  console.log(`clean:       ${fmt(clean[0])}`);
  console.log(`adversarial: ${fmt(adv[0])}  ${result.success ? 'FOOLED' : 'not fooled'}`);
  console.log(`perturbation: L0 ${result.l0} pixels, L2 ${result.l2.toFixed(4)}, Linf ${result.linf.toFixed(4)} (${(result.linf * 255).toFixed(1)}/255)`);
  console.log(`wrote ${out}`);
}
