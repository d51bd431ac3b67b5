/**
 * The `advsign train` flags for adversarial training and fine-tuning (--adversarial, --eps,
 * --adv-ratio, --pgd-steps, --ramp-epochs, --guard-every, --init), kept here so src/cli/train.ts
 * only gains a few lines. Validation happens before any data is read.
 */
import * as path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { tf } from '../inference/tf';
import { ARCHITECTURES, Architecture, LayersClassifier } from '../inference/model';
import { loadClassifier, readCard } from '../inference/model-io';
import type { TrainResult, BatchHook } from '../inference/train';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { parseEps } from '../attack/registry';
import { Flags } from '../cli/args';
import {
  AdversarialMethod, adversarialBatchHook, AdversarialHookState, checkTrainingEps, OverfitGuard,
  parseAdversarialMethod, requireLogitsModel,
} from './adversarial';

export const ADVERSARIAL_FLAGS: NonNullable<ParseArgsConfig['options']> = {
  adversarial: { type: 'string' }, eps: { type: 'string' }, 'adv-ratio': { type: 'string' },
  'pgd-steps': { type: 'string' }, 'ramp-epochs': { type: 'string' }, 'guard-every': { type: 'string' },
  init: { type: 'string' },
};

export const ADVERSARIAL_HELP = `
adversarial training (src/defense):
  --adversarial NAME     fgsm | fgsm-rs (random start, step 1.25·eps, overfitting guard) | pgd
  --eps X                L∞ budget in (0, 1], e.g. 8/255 (required with --adversarial)
  --adv-ratio X          share of each batch made adversarial (default 0.5)
  --pgd-steps N          steps of PGD training (default 7)
  --ramp-epochs X        epochs over which eps grows from 0 (default 1; 0 = none)
  --guard-every N        FGSM-RS guard: also check PGD accuracy every N batches (default 200)
  --init DIR             start from this model (fine-tuning; architecture taken from it)`;

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
  rampEpochs: number;
  initFrom?: string;
  guard?: { checks: number; collapses: number; restoredWeights: number; fallbackToPgd: boolean; bestHeldPgdAccuracy: number; finalHeldPgdAccuracy: number };
  batchesAdversarial: number;
}

export interface AdversarialRun {
  hook?: BatchHook;
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
    for (const k of ['eps', 'adv-ratio', 'pgd-steps', 'ramp-epochs', 'guard-every']) {
      if (f[k] !== undefined) throw new UserError(`--${k} only applies with --adversarial fgsm|fgsm-rs|pgd`);
    }
    if (!initDir) return null;
  }
  const method = methodFlag ? parseAdversarialMethod(methodFlag) : null;
  let eps = 0;
  if (method) {
    if (typeof f.eps !== 'string') throw new UserError('--adversarial needs --eps, e.g. --eps 8/255');
    let v: number;
    try { v = parseEps(f.eps); } catch { throw new UserError(`--eps must be in (0, 1] (e.g. 8/255), got '${f.eps}'`); }
    eps = checkTrainingEps(v);
  }
  const ratio = numberFlag(f, 'adv-ratio', 0.5, 0, 1, true);
  const pgdSteps = Math.round(numberFlag(f, 'pgd-steps', 7, 1, 100));
  const rampEpochs = numberFlag(f, 'ramp-epochs', 1, 0, 100);
  const guardEvery = Math.round(numberFlag(f, 'guard-every', 200, 0, 1e9));

  return {
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
    prepare(ctx: { init?: InitModel; train: ImageSet; val: ImageSet; batchSize: number; seed: number; log: (m: string) => void }): AdversarialRun {
      const { init, train, val } = ctx;
      if (init && init.model.inputs[0].shape[1] !== train.size) {
        throw new UserError(`--init model takes ${init.model.inputs[0].shape[1]}px images but --size is ${train.size}`);
      }
      const base: AdversarialCard = {
        method: method ?? 'none', eps, epsOver255: +(eps * 255).toFixed(3), ratio, rampEpochs,
        ...(method === 'pgd' ? { pgdSteps } : {}),
        ...(init ? { initFrom: path.basename(path.resolve(init.dir)) } : {}), batchesAdversarial: 0,
      };
      if (!method) return { finish: async () => base };
      if (!init) {
        // Without --init the model is built inside trainClassifier; the guard needs it up front.
        ctx.log('note: adversarial training from scratch; --init models/<name> (fine-tuning) is much faster');
      }
      let guard: OverfitGuard | undefined;
      let state: AdversarialHookState;
      let hook: BatchHook;
      const stepsPerEpoch = Math.ceil(train.n / ctx.batchSize);
      const mk = (g?: OverfitGuard) => adversarialBatchHook({ method, eps, ratio, pgdSteps, rampEpochs, stepsPerEpoch, seed: ctx.seed }, g);
      const held = heldBatch(val, 256, ctx.seed);
      if (method === 'fgsm-rs') {
        // The guard needs the model object; with --init we have it, else it is bound on first use.
        let g: OverfitGuard | undefined;
        const inner = { hook: null as BatchHook | null };
        hook = (clf, x, y, epoch) => {
          if (!g) {
            const model = (clf as LayersClassifier).model;
            g = new OverfitGuard(model, held.images, held.labels, val.size, {
              eps, everyBatches: guardEvery,
              onCheck: (c) => { if (c.collapsed) ctx.log(`\noverfitting guard: held-batch PGD accuracy fell to ${c.pgdAccuracy.toFixed(3)} (epoch ${c.epoch}); ${c.restored ? 'restored the last good weights' : 'no good weights yet'}`); },
            });
            guard = g;
            const made = mk(g);
            inner.hook = made.hook;
            state = made.state;
          }
          return (inner.hook as BatchHook)(clf, x, y, epoch);
        };
      } else {
        const made = mk();
        hook = made.hook;
        state = made.state;
      }
      return {
        hook,
        async finish(result: TrainResult): Promise<AdversarialCard> {
          const card: AdversarialCard = { ...base, batchesAdversarial: state?.batches ?? 0 };
          if (guard) {
            // trainClassifier restored its best-validation weights; those may be a collapsed epoch
            // (catastrophic overfitting raises clean accuracy), so check once more.
            const last = guard.check(result.classifier, result.bestEpoch);
            if (last.collapsed) ctx.log(`overfitting guard: PGD accuracy collapsed to ${last.pgdAccuracy.toFixed(3)} at the end; restored the last good weights`);
            card.guard = {
              checks: guard.checks.length, collapses: guard.collapses,
              restoredWeights: guard.checks.filter((c) => c.restored).length,
              fallbackToPgd: guard.fallbackMethod != null, bestHeldPgdAccuracy: guard.bestPgdAccuracy,
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
