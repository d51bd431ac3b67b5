/** `advsign attack`: attacks one image file and writes the adversarial image. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../inference/tf';
import { initBackend } from '../inference/backend';
import { useEngine } from '../inference/engine';
import { loadClassifier } from '../inference/model-io';
import { predictTopK } from '../inference/model';
import { loadImageFile, cropResize, encodePng } from '../data/image-io';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import { getAttack, parseEps, validateTarget, attackNames } from '../attack/registry';
import { perturbationNorms } from '../attack/norms';
import { ATTACK_LOSSES, parseAttackLoss } from '../attack/loss';
import { classFlag, int, parseFlags, required, str } from './args';
import { checkWritable, writeFileAtomic } from '../util/atomic-file';

export const ATTACK_HELP = `advsign attack --model models/NAME --attack fgsm --eps 8/255 --input in.png --out adv.png

  --attack NAME      ${attackNames().join(', ')}
  --eps X            budget, e.g. 8/255 (default 8/255)
  --target N         class to aim for (targeted attacks)
  --label N          true class of the image (default: the model's clean prediction)
  --steps N          iterations for iterative attacks
  --loss L           objective of gradient attacks: ${ATTACK_LOSSES.join(' | ')} (default ce)
  --engine E         ort | tfjs (default: ort when it loads and the model exports)
  --json             print the result as JSON`;

export async function attackCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, attack: { type: 'string' }, eps: { type: 'string' }, input: { type: 'string' },
    out: { type: 'string' }, target: { type: 'string' }, label: { type: 'string' }, steps: { type: 'string' }, loss: { type: 'string' },
    json: { type: 'boolean' }, backend: { type: 'string' }, engine: { type: 'string' },
  }, 'attack');
  const attack = getAttack(str(f, 'attack', 'fgsm') as string);
  const eps = parseEps(str(f, 'eps', '8/255') as string);
  const loss = f.loss !== undefined ? parseAttackLoss(str(f, 'loss') ?? '') : undefined;
  if (loss && !attack.takesLoss) throw new UserError(`attack '${attack.name}' has its own objective: --loss does not apply to it`);
  const input = required(f, 'input', 'attack');
  const out = required(f, 'out', 'attack');
  const modelPath = str(f, 'model') ?? path.join(__dirname, '..', '..', '..', 'models', 'gtsrb-cnn');
  if (!fs.existsSync(input)) throw new UserError(`input image not found: ${input}`);
  checkWritable(out);
  const targetArg = classFlag(f, 'target'); // its range is checked against the model below
  await initBackend(str(f, 'backend'));
  const { classifier: clf, engine } = useEngine(await loadClassifier(modelPath), str(f, 'engine'));
  const img = await loadImageFile(input);
  const notes: string[] = [];
  if (img.width !== clf.inputSize || img.height !== clf.inputSize) {
    notes.push(`input is ${img.width}×${img.height}: resized to the model's ${clf.inputSize}×${clf.inputSize}`);
  }
  const pixels = cropResize(img, null, clf.inputSize, 0);
  const x = tf.tensor4d(pixels, [1, clf.inputSize, clf.inputSize, 3]);
  const [clean] = await predictTopK(clf, x, 3);
  const label = f.label !== undefined ? int(f, 'label', 0, 0, clf.numClasses - 1) : clean[0].classId;
  let target: number | undefined;
  if (targetArg !== null) {
    if (!attack.supportsTargeted) throw new UserError(`attack '${attack.name}' has no targeted mode`);
    target = validateTarget(targetArg, clf.numClasses, label);
  }
  const y = tf.tensor1d([label], 'int32');
  const steps = f.steps !== undefined ? int(f, 'steps', 10, 1, 10000) : undefined;
  const res = await attack.run(clf, x, y, { eps, targeted: target !== undefined, target, ...(steps ? { steps } : {}), ...(loss ? { loss } : {}) });
  const [adv] = await predictTopK(clf, res.adversarial, 3);
  const norms = await perturbationNorms(x, res.adversarial);
  const advPixels = (await res.adversarial.data()) as Float32Array;
  writeFileAtomic(out, await encodePng({ data: advPixels, width: clf.inputSize, height: clf.inputSize }));
  tf.dispose([x, y, res.adversarial]);
  clf.dispose?.();
  if (norms.l0[0] === 0 && (eps > 0 || !attack.usesEps)) {
    notes.push('the attack left the image unchanged: its gradient is zero here, or every pixel it would move is already at 0 or 1');
  }
  const result = {
    attack: attack.name, loss: attack.takesLoss ? loss ?? 'ce' : null, eps, label, target: target ?? null, success: res.success[0] === 1,
    clean: clean.map((p) => ({ ...p, name: CLASS_NAMES[p.classId] })),
    adversarial: adv.map((p) => ({ ...p, name: CLASS_NAMES[p.classId] })),
    l0: norms.l0[0], l2: norms.l2[0], linf: norms.linf[0], out, engine: engine.engine, notes,
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
