/**
 * AutoAttack (Croce & Hein 2020), the standard version: APGD-CE, APGD-T (9 target classes),
 * FAB-T (9 targets) and Square (5000 queries), each run only on the images every earlier one
 * left correctly classified, as their reference implementation does; an image is robust only if it
 * survives all four. L∞ and L2. Also the members as attacks of their own: apgd-ce, apgd-dlr,
 * apgd-t, fab-t (and -l2 versions), with AutoAttack's settings as defaults.
 *
 * Every member returns images within the budget and [0, 1], and AutoAttack re-checks each
 * member's result with a forward pass before counting it (as the reference does).
 */
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import type { Attack, AttackOptions, AttackResult, AttackSettings, AttackStage } from './types';
import { intOption, labelArray, lossOption, predictBatch, rejectTargeted, requireEps, seedOption } from './common';
import { APGD_DEFAULTS, apgdAttack, ApgdOptions } from './apgd';
import { FAB_DEFAULTS, fabTargeted, FabOptions, outputsSoftmax, requireLogits } from './fab';
import { square } from './square';
import { squareL2 } from './square-l2';

export const AUTOATTACK_STAGES = ['apgd-ce', 'apgd-t', 'fab-t', 'square'] as const;
export type AutoAttackStage = (typeof AUTOATTACK_STAGES)[number] | 'apgd-dlr';

export interface AutoAttackOptions {
  norm: 'linf' | 'l2';
  eps: number;
  /** APGD and FAB iterations (100). */
  steps: number;
  /** APGD-CE runs (1 in the standard version). */
  restarts: number;
  /** Target classes of APGD-T and FAB-T (9; at most numClasses − 1). */
  targets: number;
  /** Square's proposals per image (5000). */
  queries: number;
  seed: number;
  /** The members in order (default AUTOATTACK_STAGES; FAB-T is left out for a softmax model). */
  stages: AutoAttackStage[];
}

export const AUTOATTACK_DEFAULTS = { steps: 100, restarts: 1, targets: 9, queries: 5000 } as const;

/**
 * Images per batch of `advsign evaluate` with AutoAttack or a member: the members run on the
 * images still robust, a fraction of each batch, and larger batches keep those calls efficient
 * (the reference's default is 250; 128 still reports progress often).
 */
export const AUTOATTACK_BATCH = 128;

/** Fooled flags of one member on images x (HWC floats out), run on all of them. */
async function runStage(model: Classifier, stage: AutoAttackStage, x: Tensor4D, y: Int32Array, o: AutoAttackOptions): Promise<Float32Array> {
  const apgd: ApgdOptions = {
    norm: o.norm,
    eps: o.eps,
    steps: o.steps,
    restarts: 1,
    loss: 'ce',
    rho: APGD_DEFAULTS.rho,
    momentum: APGD_DEFAULTS.momentum,
    seed: o.seed,
  };
  if (stage === 'apgd-ce') return (await apgdAttack(model, x, y, { ...apgd, restarts: o.restarts })).adversarial;
  if (stage === 'apgd-dlr') return (await apgdAttack(model, x, y, { ...apgd, loss: 'dlr', restarts: o.restarts })).adversarial;
  if (stage === 'apgd-t') return (await apgdAttack(model, x, y, apgd, Math.min(o.targets, model.numClasses - 1))).adversarial;
  if (stage === 'fab-t') {
    const fab: FabOptions = { ...FAB_DEFAULTS, norm: o.norm, eps: o.eps, steps: o.steps, targets: o.targets, seed: o.seed };
    return (await fabTargeted(model, x, y, fab)).adversarial;
  }
  if (o.norm === 'l2') {
    return (
      await squareL2(model, Float32Array.from((await x.data()) as Float32Array), y, {
        eps: o.eps,
        queries: o.queries,
        pInit: 0.8,
        rescaleSchedule: false,
        seed: o.seed,
      })
    ).adversarial;
  }
  // Square counts the clean check and the stripe start as queries: + 2 gives `queries` proposals.
  const yt = tf.tensor1d(y, 'int32');
  const r = await square.run(model, x, yt, { eps: o.eps, maxQueries: o.queries + 2, pInit: 0.8, rescaleSchedule: false, seed: o.seed });
  yt.dispose();
  const v = Float32Array.from((await r.adversarial.data()) as Float32Array);
  r.adversarial.dispose();
  return v;
}

/**
 * The cascade on a batch: each member attacks the images still robust, and what it returns is
 * re-classified before an image counts as broken. Returns the adversarial batch (clean where
 * nothing broke the image), success flags and which member broke each image.
 */
export async function autoAttack(model: Classifier, images: Tensor4D, y: Int32Array, o: AutoAttackOptions): Promise<AttackResult> {
  const n = y.length,
    d = images.size / n;
  const out = Float32Array.from((await images.data()) as Float32Array);
  const robust = Uint8Array.from(await predictBatch(model, images), (p, i) => (p === y[i] ? 1 : 0));
  const stages: AttackStage[] = [];
  for (const stage of o.stages) {
    const fooled = new Uint8Array(n);
    const entry: AttackStage = { attack: stage, fooled, seconds: 0 };
    stages.push(entry);
    const rows = Array.from({ length: n }, (_, i) => i).filter((i) => robust[i]);
    if (!rows.length) continue;
    const t0 = performance.now();
    const idx = tf.tensor1d(rows, 'int32');
    const x = tf.gather(images, idx) as Tensor4D;
    idx.dispose();
    const adv = await runStage(
      model,
      stage,
      x,
      Int32Array.from(rows, (i) => y[i]),
      o,
    );
    x.dispose();
    const at = tf.tensor4d(adv, x.shape);
    const pred = await predictBatch(model, at);
    at.dispose();
    rows.forEach((img, j) => {
      if (pred[j] === y[img]) return;
      robust[img] = 0;
      fooled[img] = 1;
      out.set(adv.subarray(j * d, (j + 1) * d), img * d);
    });
    entry.seconds = (performance.now() - t0) / 1000;
  }
  return { adversarial: tf.tensor4d(out, images.shape), success: Uint8Array.from(robust, (r) => 1 - r), stages };
}

/** eps for the AutoAttack family: required and positive (with eps = 0 there is nothing to search). */
function positiveEps(options: AttackOptions, name: string): number {
  const eps = requireEps(options, name);
  if (!(eps > 0)) throw new UserError(`attack '${name}' needs eps > 0 (eps = 0 is the clean image: nothing to attack), e.g. 8/255`);
  return eps;
}

function targetNote(model: Classifier, options: AttackOptions, who: string): string[] {
  const want = intOption(options, 'targetClasses', AUTOATTACK_DEFAULTS.targets, 1);
  const have = model.numClasses - 1;
  return want > have ? [`${who}: the model has ${model.numClasses} classes, so ${have} target class${have === 1 ? '' : 'es'} instead of ${want}`] : [];
}

function options(model: Classifier, o: AttackOptions, name: string, norm: 'linf' | 'l2'): AutoAttackOptions {
  lossOption(o, { name, takesLoss: false });
  rejectTargeted(o, name);
  return {
    norm,
    eps: positiveEps(o, name),
    steps: intOption(o, 'steps', AUTOATTACK_DEFAULTS.steps, 1),
    restarts: intOption(o, 'restarts', AUTOATTACK_DEFAULTS.restarts, 1),
    targets: intOption(o, 'targetClasses', AUTOATTACK_DEFAULTS.targets, 1),
    queries: intOption(o, 'maxQueries', AUTOATTACK_DEFAULTS.queries, 1),
    seed: seedOption(o),
    stages: AUTOATTACK_STAGES.filter((s) => s !== 'fab-t' || !outputsSoftmax(model)),
  };
}

const NORM_TITLE = { linf: 'L∞', l2: 'L2' } as const;

/** One AutoAttack member, or the whole cascade, as an Attack. */
function member(stage: AutoAttackStage | 'autoattack', norm: 'linf' | 'l2'): Attack {
  const name = (stage === 'square' ? 'square' : stage) + (norm === 'l2' ? '-l2' : '');
  const titles: Record<AutoAttackStage | 'autoattack', string> = {
    autoattack: 'AutoAttack (APGD-CE, APGD-T, FAB-T, Square)',
    'apgd-ce': 'APGD-CE (Auto-PGD, cross-entropy)',
    'apgd-dlr': 'APGD-DLR (Auto-PGD, difference of logits ratio)',
    'apgd-t': 'APGD-T (Auto-PGD, targeted DLR, top classes)',
    'fab-t': 'FAB-T (targeted fast adaptive boundary)',
    square: 'Square Attack',
  };
  const self: Attack = {
    name,
    title: `${titles[stage]}, ${NORM_TITLE[norm]}`,
    norm,
    usesEps: true,
    supportsTargeted: false,
    takesLoss: false,
    notes(model, o) {
      const out: string[] = [];
      if (stage === 'apgd-t' || stage === 'fab-t' || stage === 'autoattack')
        out.push(...targetNote(model, o, stage === 'autoattack' ? 'APGD-T and FAB-T' : stage));
      if (stage === 'autoattack' && outputsSoftmax(model)) {
        out.push('FAB-T left out: the model ends in softmax, and FAB needs logits (its clipped log-probabilities have no gradient below 1e-12)');
      }
      return out;
    },
    settings(o) {
      const s: AttackSettings = { norm, steps: intOption(o, 'steps', AUTOATTACK_DEFAULTS.steps, 1) };
      if (stage === 'autoattack') s.members = AUTOATTACK_STAGES.join(', ');
      if (stage === 'autoattack' || stage === 'apgd-ce' || stage === 'apgd-dlr') s.restarts = intOption(o, 'restarts', AUTOATTACK_DEFAULTS.restarts, 1);
      if (stage === 'autoattack' || stage === 'apgd-t' || stage === 'fab-t') s.targetClasses = intOption(o, 'targetClasses', AUTOATTACK_DEFAULTS.targets, 1);
      if (stage === 'autoattack' || stage === 'square') s.queries = intOption(o, 'maxQueries', AUTOATTACK_DEFAULTS.queries, 1);
      if (stage === 'square') delete s.steps;
      return s;
    },
    async run(model, images, labels, o) {
      const opts = options(model, o, name, norm);
      if (stage === 'fab-t') requireLogits(model, name);
      const y = labelArray(labels);
      const r = await autoAttack(model, images, y, stage === 'autoattack' ? opts : { ...opts, stages: [stage] });
      return stage === 'autoattack' ? r : { adversarial: r.adversarial, success: r.success };
    },
  };
  return self;
}

export const autoattackLinf = member('autoattack', 'linf');
export const autoattackL2 = member('autoattack', 'l2');
export const AUTOATTACK_FAMILY: Record<string, Attack> = Object.fromEntries(
  (['autoattack', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'fab-t'] as const).flatMap((s) => [member(s, 'linf'), member(s, 'l2')]).map((a) => [a.name, a]),
);
AUTOATTACK_FAMILY['square-l2'] = member('square', 'l2');
