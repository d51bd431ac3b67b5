/**
 * The flags that say what a model expects (--input-range, --preprocess, --labels) and the
 * transfer attack's surrogate (--source-model, --source-attack): parsed here once for every
 * command that loads a model.
 */
import { UserError } from '../data/types';
import { DEFAULT_MODEL_INPUT, ModelInputOptions, parseInputRange, parsePreprocess, readLabels } from '../inference/model-input';
import { loadModel, LoadedModel } from '../inference/load-model';
import type { Classifier } from '../inference/model';
import { getAttack } from '../attack/registry';
import { makeTransferAttack } from '../attack/transfer';
import type { Attack } from '../attack/types';
import { alignSurrogate } from '../attack/align';
import { Flags, str } from './args';

export const MODEL_INPUT_FLAGS = {
  'input-range': { type: 'string' },
  preprocess: { type: 'string' },
  labels: { type: 'string' },
} as const;

export const MODEL_INPUT_HELP = `  --model PATH           a model folder (advsign or any TensorFlow.js layers/graph model) or a .tflite file
  --input-range LO,HI    the pixel values the model was trained on: 0,1 (default), 0,255, -1,1
                         (a quantised .tflite input defaults to the range its quantisation covers)
  --preprocess crop|whole  photos cropped to the sign's ROI + 10 % (default) or resized whole
  --labels FILE          the model's class names, one per line in output order (needed unless it
                         has GTSRB's 43 classes in class-id order; '14' or 'Stop' match GTSRB classes)`;

/** The raw values, from flags or (serve) the config. */
export interface ModelInputText {
  inputRange?: string | null;
  preprocess?: string | null;
  labels?: string | null;
}

export function modelInputOptions(
  t: ModelInputText,
  names: { inputRange: string; preprocess: string } = { inputRange: '--input-range', preprocess: '--preprocess' },
): ModelInputOptions {
  const labelsFile = t.labels ?? null;
  return {
    inputRange: t.inputRange ? parseInputRange(t.inputRange, names.inputRange) : DEFAULT_MODEL_INPUT.inputRange,
    preprocess: t.preprocess ? parsePreprocess(t.preprocess, names.preprocess) : DEFAULT_MODEL_INPUT.preprocess,
    labels: labelsFile ? readLabels(labelsFile) : null,
    labelsFile,
  };
}

export function modelInputFromFlags(f: Flags): ModelInputOptions {
  return modelInputOptions({ inputRange: str(f, 'input-range'), preprocess: str(f, 'preprocess'), labels: str(f, 'labels') });
}

export const TRANSFER_FLAGS = { 'source-model': { type: 'string' }, 'source-attack': { type: 'string' } } as const;

export const TRANSFER_HELP = `  --source-model PATH    for --attack transfer: the surrogate the examples are crafted on (white box)
  --source-attack NAME   the attack run on the surrogate (default pgd)`;

/** An attack named on the command line: a registry attack, or 'transfer' (resolved once models are loaded). */
export type AttackSpec = { kind: 'attack'; attack: Attack } | { kind: 'transfer'; inner: Attack };

/** Validates --attack names (and the transfer flags) before any slow work. */
export function parseAttackSpecs(text: string, f: Flags): AttackSpec[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UserError('no attack given');
  const specs = names.map((n): AttackSpec =>
    n.toLowerCase() === 'transfer'
      ? { kind: 'transfer', inner: getAttack(str(f, 'source-attack', 'pgd') as string) }
      : { kind: 'attack', attack: getAttack(n) },
  );
  const wantsTransfer = specs.some((s) => s.kind === 'transfer');
  if (wantsTransfer && !str(f, 'source-model')) throw new UserError('--attack transfer needs --source-model PATH (the surrogate model, e.g. models/gtsrb-cnn)');
  if (!wantsTransfer && (f['source-model'] !== undefined || f['source-attack'] !== undefined)) {
    throw new UserError('--source-model and --source-attack only apply with --attack transfer');
  }
  return specs;
}

/** True when some attack needs gradients of the target itself. */
export function needsGradients(specs: AttackSpec[]): boolean {
  return specs.some((s) => s.kind === 'attack' && !s.attack.blackBox);
}

/**
 * The attacks to run against `target`; 'transfer' loads the surrogate (default input options),
 * aligned to the target's image size and class order. The caller disposes `surrogate`.
 */
export async function resolveAttacks(specs: AttackSpec[], f: Flags, target: Classifier): Promise<{ attacks: Attack[]; surrogate: LoadedModel | null }> {
  let surrogate: LoadedModel | null = null;
  const attacks: Attack[] = [];
  for (const s of specs) {
    if (s.kind === 'attack') {
      attacks.push(s.attack);
      continue;
    }
    surrogate ??= await loadModel(str(f, 'source-model') as string);
    attacks.push(makeTransferAttack(alignSurrogate(surrogate.classifier, target), s.inner));
  }
  return { attacks, surrogate };
}
