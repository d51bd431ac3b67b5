/**
 * The `advsign train` flags for adversarial training and fine-tuning (--adversarial, --eps,
 * --adv-ratio, --pgd-steps, --ramp-epochs, --guard-every, --init), kept here so src/cli/train.ts
 * only gains a few lines. Validation happens before any data is read.
 */
import * as path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { tf } from '../inference/tf';
import { ARCHITECTURES, Architecture, Classifier, LayersClassifier } from '../inference/model';
import { loadClassifier, readCard } from '../inference/model-io';
import { accuracy, TrainResult } from '../inference/train';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { parseEps } from '../attack/registry';
import { AttackLoss, parseAttackLoss } from '../attack/loss';
import { apgdAttack, APGD_DEFAULTS } from '../attack/apgd';
import { Flags } from './args';
import { StopCheck, yieldUnlessStopped } from '../util/interrupt';
import {
  AdversarialMethod,
  adversarialPlanner,
  pgdCorrect,
  AdversarialHookState,
  AdversarialPlanner,
  checkTrainingEps,
  OverfitGuard,
  parseAdversarialMethod,
  requireLogitsModel,
} from '../defense/adversarial';

export const ADVERSARIAL_FLAGS: NonNullable<ParseArgsConfig['options']> = {
  adversarial: { type: 'string' },
  eps: { type: 'string' },
  'adv-ratio': { type: 'string' },
  'pgd-steps': { type: 'string' },
  'ramp-epochs': { type: 'string' },
  'guard-every': { type: 'string' },
  init: { type: 'string' },
  'max-clean-drop': { type: 'string' },
  'clean-reference': { type: 'string' },
  'select-steps': { type: 'string' },
  'select-loss': { type: 'string' },
  'select-attack': { type: 'string' },
  'trades-beta': { type: 'string' },
};

export const ADVERSARIAL_HELP = `
adversarial training (src/defense):
  --adversarial NAME     fgsm | fgsm-rs (random start, step 1.25·eps, overfitting guard) | pgd
                         | trades (CE + β·KL to a KL-maximising neighbour, on every image)
  --eps X                L∞ budget in (0, 1], e.g. 8/255 (required with --adversarial)
  --adv-ratio X          share of each batch made adversarial (default 0.5)
  --pgd-steps N          steps of PGD training, or of TRADES's inner maximisation (default 7)
  --trades-beta B        TRADES's weight of the KL term (default 6)
  --ramp-epochs X        epochs over which eps grows from 0 (default 1; 0 = none)
  --guard-every N        FGSM-RS guard: also check PGD accuracy every N batches (default 200)
  --init DIR             start from this model (fine-tuning; architecture taken from it)
  --max-clean-drop P     keep the most robust epoch whose clean validation accuracy is at most P points
                         below the --init model's (default: the most robust epoch, whatever its clean accuracy)
  --clean-reference DIR  the model whose clean validation accuracy --max-clean-drop counts from (default --init)
  --select-attack A      the validation attack that picks the kept epoch: pgd (random start, step
                         2.5·eps/steps) or apgd (Croce & Hein's step schedule and momentum; default pgd)
  --select-steps N       its steps (default 10)
  --select-loss L,…      its objectives, ce | margin | dlr; with several an image counts as robust
                         only if it survives each (default ce; ce,dlr is much stronger)`;

export interface InitModel {
  model: tf.LayersModel;
  arch: Architecture;
  dir: string;
}

export interface AdversarialCard {
  method: AdversarialMethod | 'none';
  eps: number;
  epsOver255: number;
  ratio: number;
  pgdSteps?: number;
  tradesBeta?: number;
  rampEpochs: number;
  initFrom?: string;
  guard?: { checks: number; collapses: number; restoredWeights: number; fallbackToPgd: boolean; bestHeldPgdAccuracy: number; finalHeldPgdAccuracy: number };
  batchesAdversarial: number;
}

export interface AdversarialRun {
  planner?: AdversarialPlanner;
  /** Epoch selection by PGD-10 accuracy on validation images (robust early stopping). */
  validationScore?: {
    name: string;
    images: number;
    score: (clf: Classifier, shouldStop: StopCheck) => Promise<number>;
    eligible?: (valAccuracy: number) => boolean;
  };
  /** How the kept epoch was chosen, for the card. */
  selection?: string;
  finish(result: TrainResult): Promise<AdversarialCard>;
}

function numberFlag(f: Flags, name: string, def: number, min: number, max: number, minExclusive = false): number {
  const v = f[name];
  if (v === undefined) return def;
  const n = typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isFinite(n) || n > max || (minExclusive ? n <= min : n < min)) {
    throw new UserError(`--${name} must be a number in ${minExclusive ? '(' : '['}${min}, ${max}], got '${String(v)}'`);
  }
  return n;
}

/** Null when neither --adversarial nor --init is given (plain training, unchanged behaviour). */
export function addAdversarialTraining(f: Flags) {
  const methodFlag = typeof f.adversarial === 'string' ? f.adversarial : undefined;
  const initDir = typeof f.init === 'string' ? f.init : undefined;
  if (!methodFlag) {
    for (const k of [
      'eps',
      'adv-ratio',
      'pgd-steps',
      'ramp-epochs',
      'guard-every',
      'max-clean-drop',
      'clean-reference',
      'select-steps',
      'select-loss',
      'select-attack',
      'trades-beta',
    ]) {
      if (f[k] !== undefined) throw new UserError(`--${k} only applies with --adversarial fgsm|fgsm-rs|pgd`);
    }
    if (!initDir) return null;
  }
  const method = methodFlag ? parseAdversarialMethod(methodFlag) : null;
  let eps = 0;
  if (method) {
    if (typeof f.eps !== 'string') throw new UserError('--adversarial needs --eps, e.g. --eps 8/255');
    let v: number;
    try {
      v = parseEps(f.eps);
    } catch {
      throw new UserError(`--eps must be in (0, 1] (e.g. 8/255), got '${f.eps}'`);
    }
    eps = checkTrainingEps(v);
  }
  const ratio = numberFlag(f, 'adv-ratio', 0.5, 0, 1, true);
  const pgdSteps = Math.round(numberFlag(f, 'pgd-steps', 7, 1, 100));
  const tradesBeta = numberFlag(f, 'trades-beta', 6, 0, 1000);
  if (f['trades-beta'] !== undefined && method !== 'trades') throw new UserError('--trades-beta only applies with --adversarial trades');
  if (f['adv-ratio'] !== undefined && method === 'trades') throw new UserError('--adv-ratio does not apply to TRADES: every image gets both loss terms');
  const rampEpochs = numberFlag(f, 'ramp-epochs', 1, 0, 100);
  const guardEvery = Math.round(numberFlag(f, 'guard-every', 200, 0, 1e9));
  const maxCleanDrop = f['max-clean-drop'] !== undefined ? numberFlag(f, 'max-clean-drop', 0, 0, 100) : undefined;
  const referenceDir = typeof f['clean-reference'] === 'string' ? f['clean-reference'] : initDir;
  if (maxCleanDrop !== undefined && !referenceDir)
    throw new UserError('--max-clean-drop needs --init or --clean-reference (the model whose clean accuracy is the reference)');
  if (f['clean-reference'] !== undefined && maxCleanDrop === undefined) throw new UserError('--clean-reference only applies with --max-clean-drop');
  const selectSteps = Math.round(numberFlag(f, 'select-steps', 10, 1, 1000));
  const selectLosses: AttackLoss[] = typeof f['select-loss'] === 'string' ? [...new Set(f['select-loss'].split(',').map((t) => parseAttackLoss(t)))] : ['ce'];
  const selectAttack = typeof f['select-attack'] === 'string' ? f['select-attack'] : 'pgd';
  if (selectAttack !== 'pgd' && selectAttack !== 'apgd') throw new UserError(`--select-attack must be pgd or apgd, got '${selectAttack}'`);
  if (selectAttack === 'apgd' && selectLosses.includes('margin')) throw new UserError('--select-attack apgd climbs ce or dlr, not margin');

  return {
    method,
    async loadInit(): Promise<InitModel | undefined> {
      if (!initDir) return undefined;
      const clf: LayersClassifier = await loadClassifier(initDir);
      if (method) requireLogitsModel(clf, `adversarial training (--init ${initDir})`);
      const card = readCard(initDir);
      const arch = (card?.architecture ?? '') as Architecture;
      if (!(ARCHITECTURES as readonly string[]).includes(arch)) {
        throw new UserError(`--init ${initDir}: its card names no known architecture (${ARCHITECTURES.join(', ')})`);
      }
      return { model: clf.model, arch, dir: initDir };
    },
    async prepare(ctx: {
      init?: InitModel;
      train: ImageSet;
      val: ImageSet;
      batchSize: number;
      seed: number;
      log: (m: string) => void;
    }): Promise<AdversarialRun> {
      const { init, train, val } = ctx;
      if (init && init.model.inputs[0].shape[1] !== train.size) {
        throw new UserError(`--init model takes ${init.model.inputs[0].shape[1]}px images but --size is ${train.size}`);
      }
      const base: AdversarialCard = {
        method: method ?? 'none',
        eps,
        epsOver255: +(eps * 255).toFixed(3),
        ratio,
        rampEpochs,
        ...(method === 'pgd' || method === 'trades' ? { pgdSteps } : {}),
        ...(method === 'trades' ? { tradesBeta, ratio: 1 } : {}),
        ...(init ? { initFrom: path.basename(path.resolve(init.dir)) } : {}),
        batchesAdversarial: 0,
      };
      if (!method) return { finish: async () => base };
      if (!init) {
        // Without --init the model is built inside trainClassifier; the guard needs it up front.
        ctx.log('note: adversarial training from scratch; --init models/<name> (fine-tuning) is much faster');
      }
      let guard: OverfitGuard | undefined;
      let state: AdversarialHookState;
      let planner: AdversarialPlanner;
      const stepsPerEpoch = Math.ceil(train.n / ctx.batchSize);
      const mk = (g?: OverfitGuard) => adversarialPlanner({ method, eps, ratio, pgdSteps, tradesBeta, rampEpochs, stepsPerEpoch, seed: ctx.seed }, g);
      const held = heldBatch(val, 256, ctx.seed);
      if (method === 'fgsm-rs') {
        // The guard needs the model object; with --init we have it, else it is bound on first use.
        let g: OverfitGuard | undefined;
        const inner = { planner: null as AdversarialPlanner | null };
        planner = (clf, epoch) => {
          if (!g) {
            const model = (clf as LayersClassifier).model;
            g = new OverfitGuard(model, held.images, held.labels, val.size, {
              eps,
              everyBatches: guardEvery,
              onCheck: (c) => {
                if (c.collapsed)
                  ctx.log(
                    `\noverfitting guard: held-batch PGD accuracy fell to ${c.pgdAccuracy.toFixed(3)} (epoch ${c.epoch}); ${c.restored ? 'restored the last good weights' : 'no good weights yet'}`,
                  );
              },
            });
            guard = g;
            const made = mk(g);
            inner.planner = made.planner;
            state = made.state;
          }
          return (inner.planner as AdversarialPlanner)(clf, epoch);
        };
      } else {
        const made = mk();
        planner = made.planner;
        state = made.state;
      }
      const scored = heldBatch(val, 512, ctx.seed + 1);
      const lossText = selectLosses.length === 1 && selectLosses[0] === 'ce' ? '' : `-${selectLosses.join('+')}`;
      const name = `${selectAttack}${selectSteps}${lossText}@${+(eps * 255).toFixed(2)}/255`;
      let eligible: ((v: number) => boolean) | undefined;
      let selection = `${name} accuracy on ${scored.labels.length} validation images`;
      if (maxCleanDrop !== undefined && referenceDir) {
        // Measured before training starts: with --init, the reference model is the one being trained.
        const ref = await accuracy(referenceDir === initDir && init ? new LayersClassifier(init.model) : await loadClassifier(referenceDir), val);
        const floor = ref - maxCleanDrop / 100;
        eligible = (v) => v >= floor;
        selection += `, among epochs with clean validation accuracy ≥ ${(floor * 100).toFixed(2)}% (${path.basename(path.resolve(referenceDir))}: ${(ref * 100).toFixed(2)}% − ${maxCleanDrop} points)`;
        ctx.log(`keeping the most robust epoch with clean validation accuracy ≥ ${(floor * 100).toFixed(2)}%`);
      }
      const validationScore = {
        name,
        images: scored.labels.length,
        score: (clf: Classifier, shouldStop: StopCheck) =>
          selectionAccuracy(clf, scored, val.size, { attack: selectAttack, eps, steps: selectSteps, losses: selectLosses }, shouldStop),
        eligible,
      };
      return {
        planner,
        validationScore,
        selection,
        async finish(result: TrainResult): Promise<AdversarialCard> {
          const card: AdversarialCard = { ...base, batchesAdversarial: state?.batches ?? 0 };
          if (guard) {
            // trainClassifier restored its best-validation weights; those may be a collapsed epoch
            // (catastrophic overfitting raises clean accuracy), so check once more.
            const last = guard.check(result.classifier, result.bestEpoch);
            if (last.collapsed)
              ctx.log(`overfitting guard: PGD accuracy collapsed to ${last.pgdAccuracy.toFixed(3)} at the end; restored the last good weights`);
            card.guard = {
              checks: guard.checks.length,
              collapses: guard.collapses,
              restoredWeights: guard.checks.filter((c) => c.restored).length,
              fallbackToPgd: guard.fallbackMethod != null,
              bestHeldPgdAccuracy: guard.bestPgdAccuracy,
              finalHeldPgdAccuracy: last.restored ? guard.pgdAccuracy(result.classifier) : last.pgdAccuracy,
            };
            guard.dispose();
          }
          return card;
        },
      };
    },
  };
}

/**
 * Accuracy under the selection attack (worst case over `losses` per image) on a fixed image set,
 * in batches of 128: PGD (step 2.5·eps/steps, random start) or APGD (apgd.ts). Yields to the event
 * loop between batches and objectives; throws EvaluationInterrupted once `shouldStop` turns true.
 */
export async function selectionAccuracy(
  clf: Classifier,
  set: { images: Float32Array; labels: Int32Array },
  size: number,
  o: { attack: 'pgd' | 'apgd'; eps: number; steps: number; losses: AttackLoss[] },
  shouldStop?: StopCheck,
): Promise<number> {
  const px = size * size * 3;
  let ok = 0;
  for (let i = 0; i < set.labels.length; i += 128) {
    await yieldUnlessStopped(shouldStop);
    const m = Math.min(128, set.labels.length - i);
    const labels = set.labels.subarray(i, i + m);
    const x = tf.tensor4d(set.images.subarray(i * px, (i + m) * px), [m, size, size, 3]);
    try {
      if (o.attack === 'pgd') {
        const y = tf.tensor1d(labels, 'int32');
        ok += pgdCorrect(clf, x, y, o.eps, o.steps, 777 + i, o.losses);
        y.dispose();
      } else {
        const fooled = new Uint8Array(m);
        for (const [k, loss] of o.losses.entries()) {
          if (k > 0) await yieldUnlessStopped(shouldStop);
          const r = await apgdAttack(clf, x, labels, { ...APGD_DEFAULTS, norm: 'linf', eps: o.eps, steps: o.steps, loss: loss as 'ce' | 'dlr', seed: 777 + i });
          r.fooled.forEach((f, j) => {
            fooled[j] |= f;
          });
        }
        ok += fooled.reduce((a, f) => a + (f ? 0 : 1), 0);
      }
    } finally {
      x.dispose();
    }
  }
  return ok / set.labels.length;
}

/** A fixed, class-mixed batch from the validation split for the guard's PGD checks. */
function heldBatch(val: ImageSet, n: number, seed: number): { images: Float32Array; labels: Int32Array } {
  const m = Math.min(n, val.n);
  const px = val.size * val.size * 3;
  const images = new Float32Array(m * px);
  const labels = new Int32Array(m);
  // An even stride over the (class-ordered) split covers all classes.
  const stride = val.n / m;
  const off = seed % Math.max(1, Math.floor(stride));
  for (let i = 0; i < m; i++) {
    const j = Math.min(val.n - 1, Math.floor(i * stride) + off);
    images.set(val.images.subarray(j * px, (j + 1) * px), i * px);
    labels[i] = val.labels[j];
  }
  return { images, labels };
}
