/**
 * IBP training (Gowal et al. 2018, "On the effectiveness of interval bound propagation for
 * training verifiably robust models"): the loss κ·CE(clean) + (1 − κ)·CE(worst-case logits), the
 * worst case bounded by interval propagation (ibp.ts) over the eps box. A model trained plainly
 * certifies nothing (IBP bounds of an ordinary net are far too loose); trained on its own bounds
 * it becomes verifiable. The schedule matters: a clean warm-up (κ = 1, eps = 0), then eps ramps
 * linearly from 0 and κ falls from 1 to its final value over the ramp, then both stay put —
 * starting at full eps collapses the model to a constant. The kept epoch is the one with the
 * highest IBP-certified accuracy on validation images at the training eps.
 */
import type { ParseArgsConfig } from 'node:util';
import type { Classifier, LayersClassifier } from '../inference/model';
import type { LossPlan } from '../inference/data-parallel';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { parseEps } from '../attack/registry';
import { Flags } from '../cli/args';
import { certifiedAccuracy } from './ibp';

export const IBP_TRAINING_FLAGS: NonNullable<ParseArgsConfig['options']> = {
  ibp: { type: 'string' }, 'ibp-warmup': { type: 'string' }, 'ibp-ramp': { type: 'string' }, 'ibp-kappa': { type: 'string' },
};

export const IBP_TRAINING_HELP = `
certified training (IBP, Gowal et al. 2018):
  --ibp EPS              train on interval bounds over the L∞ box of radius EPS, e.g. 2/255
  --ibp-warmup E         clean epochs first (κ = 1, eps = 0; default 1)
  --ibp-ramp E           epochs over which eps grows to EPS and κ falls to its final value (default 5)
  --ibp-kappa K          final weight of the clean loss (default 0.5); the kept epoch is the one
                         with the highest IBP-certified validation accuracy at EPS`;

export interface IbpTrainingOptions {
  eps: number;
  warmupEpochs: number;
  rampEpochs: number;
  kappaEnd: number;
}

/** eps and κ at a step (1-based epoch, step within it): warm-up, linear ramp, then constant. */
export function ibpSchedule(o: IbpTrainingOptions, epoch: number, step: number, stepsPerEpoch: number): { eps: number; kappa: number } {
  const t = epoch - 1 + (stepsPerEpoch > 0 ? step / stepsPerEpoch : 0) - o.warmupEpochs;
  const progress = o.rampEpochs > 0 ? Math.min(1, Math.max(0, t / o.rampEpochs)) : (t >= 0 ? 1 : 0);
  return { eps: o.eps * progress, kappa: 1 - (1 - o.kappaEnd) * progress };
}

function epochsFlag(f: Flags, name: string, def: number): number {
  const v = f[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0 || n > 1000) throw new UserError(`--${name} must be a number of epochs from 0 to 1000, got '${String(v)}'`);
  return n;
}

/** The --ibp options, validated before any data is read; null without --ibp. */
export function parseIbpTraining(f: Flags, arch: string): IbpTrainingOptions | null {
  if (typeof f.ibp !== 'string') {
    for (const k of ['ibp-warmup', 'ibp-ramp', 'ibp-kappa']) if (f[k] !== undefined) throw new UserError(`--${k} only applies with --ibp EPS`);
    return null;
  }
  if (f.adversarial !== undefined) throw new UserError('--ibp and --adversarial are two different trainings: choose one');
  // Batch norm's batch statistics during training are not the affine map IBP bounds at test time.
  if (arch.endsWith('-bn')) throw new UserError(`--ibp needs an architecture without batch norm (not ${arch})`);
  let eps: number;
  try { eps = parseEps(f.ibp); } catch { eps = NaN; }
  if (!(eps > 0 && eps <= 1)) throw new UserError(`--ibp must be an L∞ radius in (0, 1], e.g. 2/255, got '${f.ibp}'`);
  const kappa = f['ibp-kappa'] === undefined ? 0.5 : Number(f['ibp-kappa']);
  if (!(kappa >= 0 && kappa <= 1)) throw new UserError(`--ibp-kappa must be in [0, 1], got '${String(f['ibp-kappa'])}'`);
  return { eps, warmupEpochs: epochsFlag(f, 'ibp-warmup', 1), rampEpochs: epochsFlag(f, 'ibp-ramp', 5), kappaEnd: kappa };
}

export interface IbpTrainingRun {
  lossPlan: (epoch: number, step: number, stepsPerEpoch: number) => LossPlan;
  validationScore: { name: string; score: (clf: Classifier) => Promise<number> };
  card: IbpTrainingOptions & { method: 'ibp'; epsOver255: number; loss: string; selection: string };
}

/** The loss schedule, the selection score and the card entry of one IBP training run. */
export function ibpTrainingRun(o: IbpTrainingOptions, val: ImageSet, labelSmoothing = 0): IbpTrainingRun {
  const over255 = +(o.eps * 255).toFixed(3);
  const name = `ibp-certified@${over255}/255`;
  return {
    lossPlan: (epoch, step, stepsPerEpoch) => ({ ...(labelSmoothing ? { labelSmoothing } : {}), ibp: ibpSchedule(o, epoch, step, stepsPerEpoch) }),
    validationScore: { name, score: (clf) => certifiedAccuracy((clf as LayersClassifier).model, val.images, val.labels, val.size, o.eps) },
    card: {
      method: 'ibp', ...o, epsOver255: over255,
      loss: 'κ·CE(clean) + (1 − κ)·CE(IBP worst-case logits, last layer elided); eps and κ ramp linearly after the warm-up',
      selection: `${name} accuracy on all ${val.n} validation images`,
    },
  };
}
