/**
 * IBP training (Gowal et al. 2018, "On the effectiveness of interval bound propagation for
 * training verifiably robust models"): the loss κ·CE(clean) + (1 − κ)·CE(worst-case logits), the
 * worst case bounded by interval propagation (src/inference/ibp.ts) over the eps box. A model trained plainly
 * certifies nothing (IBP bounds of an ordinary net are far too loose); trained on its own bounds
 * it becomes verifiable. The schedule matters: a clean warm-up (κ = 1, eps = 0), then eps ramps
 * linearly from 0 and κ falls from 1 to its final value over the ramp, then both stay put —
 * starting at full eps collapses the model to a constant. The kept epoch is the one with the
 * highest IBP-certified accuracy on validation images at the training eps. Its flags (--ibp…)
 * are parsed in src/cli/train-ibp.ts.
 */
import type { Classifier, LayersClassifier } from '../inference/model';
import type { LossPlan } from '../inference/data-parallel';
import type { ImageSet } from '../data/types';
import { certifiedAccuracy } from '../inference/ibp';
import type { StopCheck } from '../util/interrupt';

export interface IbpTrainingOptions {
  eps: number;
  warmupEpochs: number;
  rampEpochs: number;
  kappaEnd: number;
}

/** eps and κ at a step (1-based epoch, step within it): warm-up, linear ramp, then constant. */
export function ibpSchedule(o: IbpTrainingOptions, epoch: number, step: number, stepsPerEpoch: number): { eps: number; kappa: number } {
  const t = epoch - 1 + (stepsPerEpoch > 0 ? step / stepsPerEpoch : 0) - o.warmupEpochs;
  const progress = o.rampEpochs > 0 ? Math.min(1, Math.max(0, t / o.rampEpochs)) : t >= 0 ? 1 : 0;
  return { eps: o.eps * progress, kappa: 1 - (1 - o.kappaEnd) * progress };
}

export interface IbpTrainingRun {
  lossPlan: (epoch: number, step: number, stepsPerEpoch: number) => LossPlan;
  validationScore: { name: string; score: (clf: Classifier, shouldStop: StopCheck) => Promise<number> };
  card: IbpTrainingOptions & { method: 'ibp'; epsOver255: number; loss: string; selection: string };
}

/** The loss schedule, the selection score and the card entry of one IBP training run. */
export function ibpTrainingRun(o: IbpTrainingOptions, val: ImageSet, labelSmoothing = 0): IbpTrainingRun {
  const over255 = +(o.eps * 255).toFixed(3);
  const name = `ibp-certified@${over255}/255`;
  return {
    lossPlan: (epoch, step, stepsPerEpoch) => ({ ...(labelSmoothing ? { labelSmoothing } : {}), ibp: ibpSchedule(o, epoch, step, stepsPerEpoch) }),
    validationScore: {
      name,
      score: (clf, shouldStop) => certifiedAccuracy((clf as LayersClassifier).model, val.images, val.labels, val.size, o.eps, 128, true, shouldStop),
    },
    card: {
      method: 'ibp',
      ...o,
      epsOver255: over255,
      loss: 'κ·CE(clean) + (1 − κ)·CE(IBP worst-case logits, last layer elided); eps and κ ramp linearly after the warm-up',
      selection: `${name} accuracy on all ${val.n} validation images`,
    },
  };
}
