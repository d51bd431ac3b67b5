/** `advsign train --ibp EPS …`: the certified-training flags, validated before any data is read (src/defense/ibp-train.ts trains). */
import type { ParseArgsConfig } from 'node:util';
import { UserError } from '../util/errors';
import { parseEps } from '../attack/registry';
import type { IbpTrainingOptions } from '../defense/ibp-train';
import { Flags } from './args';

export const IBP_TRAINING_FLAGS: NonNullable<ParseArgsConfig['options']> = {
  ibp: { type: 'string' },
  'ibp-warmup': { type: 'string' },
  'ibp-ramp': { type: 'string' },
  'ibp-kappa': { type: 'string' },
};

export const IBP_TRAINING_HELP = `
certified training (IBP, Gowal et al. 2018):
  --ibp EPS              train on interval bounds over the L∞ box of radius EPS, e.g. 2/255
  --ibp-warmup E         clean epochs first (κ = 1, eps = 0; default 1)
  --ibp-ramp E           epochs over which eps grows to EPS and κ falls to its final value (default 5)
  --ibp-kappa K          final weight of the clean loss (default 0.5); the kept epoch is the one
                         with the highest IBP-certified validation accuracy at EPS`;

function epochsFlag(f: Flags, name: string, def: number): number {
  const v = f[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0 || n > 1000)
    throw new UserError(`--${name} must be a number of epochs from 0 to 1000, got '${String(v)}'`);
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
  try {
    eps = parseEps(f.ibp);
  } catch {
    eps = NaN;
  }
  if (!(eps > 0 && eps <= 1)) throw new UserError(`--ibp must be an L∞ radius in (0, 1], e.g. 2/255, got '${f.ibp}'`);
  const kappa = f['ibp-kappa'] === undefined ? 0.5 : Number(f['ibp-kappa']);
  if (!(kappa >= 0 && kappa <= 1)) throw new UserError(`--ibp-kappa must be in [0, 1], got '${String(f['ibp-kappa'])}'`);
  return { eps, warmupEpochs: epochsFlag(f, 'ibp-warmup', 1), rampEpochs: epochsFlag(f, 'ibp-ramp', 5), kappaEnd: kappa };
}
