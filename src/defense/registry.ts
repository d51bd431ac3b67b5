/**
 * The defenses by command-line name and how each is built around a classifier. Defenses that
 * need training (autoencoder, detector, distilled) train on a slice of the training split within
 * a time budget and are cached under the advsign cache folder, keyed by the model's weights file
 * and the settings, so a second `evaluate --defense …` reuses them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { Tensor4D } from '../inference/tf';
import { Architecture, Classifier, LayersClassifier, ARCHITECTURES } from '../inference/model';
import { loadLayersModel, saveModel } from '../inference/model-io';
import { useEngine } from '../inference/engine';
import type { ImageSet } from '../data/types';
import { UserError } from '../data/types';
import { defaultCacheDir } from '../data/gtsrb';
import { DefendedModel, undefended } from './defended';
import { squeezeBits, medianFilter, jpegRoundTrip } from './transforms';
import { ReconstructedClassifier, trainAutoencoder } from './autoencoder';
import { Detector, trainDetector } from './detector';
import { trainDistilled } from './distill';
import { requireLogitsModel } from './adversarial';

export const DEFENSE_NAMES = ['none', 'squeeze-bits', 'median', 'jpeg', 'autoencoder', 'distilled', 'detector', 'ibp'] as const;
export type DefenseName = (typeof DEFENSE_NAMES)[number];

export interface DefenseSettings {
  /** Bit depth for squeeze-bits (default 4). */
  bits: number;
  /** Median window (default 2). */
  medianSize: 2 | 3;
  /** JPEG quality (default 75). */
  jpegQuality: number;
  /** Distillation temperature (default 20). */
  temperature: number;
  /** Detector training budgets (default 2/255, 4/255, 8/255). */
  detectorEps: number[];
  /** Training budget per trained defense, seconds (default 90). */
  trainSeconds: number;
}

export const DEFAULT_DEFENSE_SETTINGS: DefenseSettings = {
  bits: 4,
  medianSize: 2,
  jpegQuality: 75,
  temperature: 20,
  detectorEps: [2 / 255, 4 / 255, 8 / 255],
  trainSeconds: 90,
};

export function parseDefenseName(name: string): DefenseName {
  const n = name.trim().toLowerCase();
  const alias: Record<string, DefenseName> = {
    squeeze: 'squeeze-bits',
    bits: 'squeeze-bits',
    'bit-depth': 'squeeze-bits',
    distillation: 'distilled',
    ae: 'autoencoder',
    verify: 'ibp',
  };
  const v = alias[n] ?? n;
  if ((DEFENSE_NAMES as readonly string[]).includes(v)) return v as DefenseName;
  throw new UserError(`unknown defense '${name}': known defenses are ${DEFENSE_NAMES.join(', ')} (or 'all')`);
}

/** 'all' or a comma list → names, validated before any work. */
export function parseDefenseList(text: string): DefenseName[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UserError(`no defense given: use one of ${DEFENSE_NAMES.join(', ')} or 'all'`);
  if (items.length === 1 && items[0].toLowerCase() === 'all') return [...DEFENSE_NAMES];
  const out: DefenseName[] = [];
  for (const it of items) {
    const d = parseDefenseName(it);
    if (!out.includes(d)) out.push(d);
  }
  return out;
}

export interface DefenseContext {
  /** Model folder (for caching and the architecture). */
  modelDir: string;
  architecture: string;
  trainSet?: () => Promise<ImageSet>;
  /** What trainSet holds (data folder, image count): part of the cache key. */
  trainDescription?: string;
  settings: DefenseSettings;
  log?: (msg: string) => void;
  /** Cache folder for trained defenses (default <advsign cache>/defenses); null disables. */
  cacheDir?: string | null;
  /** The engine a distilled student runs on (ort | tfjs; default as useEngine). */
  engine?: string;
}

function cacheKey(ctx: DefenseContext, what: string, extra: unknown): string | null {
  if (ctx.cacheDir === null) return null;
  const w = path.join(path.resolve(ctx.modelDir), 'weights.bin');
  if (!fs.existsSync(w)) return null;
  const st = fs.statSync(w);
  // The budget and the training data are part of the key: a longer --defense-seconds must retrain.
  const h = crypto
    .createHash('sha1')
    .update(JSON.stringify([path.resolve(ctx.modelDir), st.size, st.mtimeMs, what, extra, ctx.settings.trainSeconds, ctx.trainDescription ?? null]))
    .digest('hex')
    .slice(0, 12);
  return path.join(ctx.cacheDir ?? path.join(defaultCacheDir(), 'defenses'), `${path.basename(path.resolve(ctx.modelDir))}-${what}-${h}`);
}

async function cached(ctx: DefenseContext, what: string, extra: unknown, train: () => Promise<import('../inference/tf').tf.LayersModel>) {
  const dir = cacheKey(ctx, what, extra);
  if (dir && fs.existsSync(path.join(dir, 'model.json'))) {
    ctx.log?.(`${what}: using cached ${dir}`);
    return loadLayersModel(dir);
  }
  ctx.log?.(`${what}: training (≤ ${ctx.settings.trainSeconds} s)…`);
  const m = await train();
  if (dir) await saveModel(m, dir);
  return m;
}

async function needTrain(ctx: DefenseContext, name: string): Promise<ImageSet> {
  if (!ctx.trainSet) throw new UserError(`defense '${name}' needs training data`);
  return ctx.trainSet();
}

/**
 * Builds one defense around `clf` (the tfjs model: what distillation and the detector train
 * from); `run` is the same model on the engine the attacks and predictions use.
 */
export async function buildDefense(name: DefenseName, clf: Classifier, ctx: DefenseContext, run: Classifier = clf): Promise<DefendedModel> {
  const s = ctx.settings;
  switch (name) {
    case 'none':
    case 'ibp':
      return { ...undefended(run, name), title: name === 'ibp' ? 'no defense, IBP-verified' : 'no defense' };
    case 'squeeze-bits':
      return {
        name,
        title: `bit-depth reduction to ${s.bits} bits`,
        classifier: run,
        plainTarget: run,
        transform: async (x: Tensor4D) => squeezeBits(x, s.bits),
      };
    case 'median':
      return {
        name,
        title: `median filter ${s.medianSize}×${s.medianSize}`,
        classifier: run,
        plainTarget: run,
        transform: async (x: Tensor4D) => medianFilter(x, s.medianSize),
      };
    case 'jpeg':
      return {
        name,
        title: `JPEG re-encoding, quality ${s.jpegQuality}`,
        classifier: run,
        plainTarget: run,
        transform: (x: Tensor4D) => jpegRoundTrip(x, s.jpegQuality),
      };
    case 'autoencoder': {
      const ae = await cached(ctx, 'autoencoder', {}, async () => trainAutoencoder(await needTrain(ctx, name), { epochs: 20, maxSeconds: s.trainSeconds }));
      const rc = new ReconstructedClassifier(ae, run);
      return {
        name,
        title: 'denoising autoencoder in front',
        classifier: run,
        plainTarget: run,
        transform: async (x: Tensor4D) => rc.reconstruct(x),
        differentiableTransform: (x: Tensor4D) => rc.reconstruct(x),
      };
    }
    case 'detector': {
      requireLogitsModel(clf, 'the detector');
      const m = await cached(
        ctx,
        'detector',
        s.detectorEps,
        async () => (await trainDetector(clf, await needTrain(ctx, name), { epsList: s.detectorEps, epochs: 20, maxSeconds: s.trainSeconds })).model,
      );
      return { name, title: 'adversarial detector (FGSM/PGD-trained)', classifier: run, plainTarget: run, detector: new Detector(m) };
    }
    case 'distilled': {
      requireLogitsModel(clf, 'distillation');
      const arch = ctx.architecture as Architecture;
      if (!(ARCHITECTURES as readonly string[]).includes(arch)) throw new UserError(`distillation: unknown architecture '${arch}' in the model card`);
      const teacherInit = (clf as LayersClassifier).model;
      const m = await cached(
        ctx,
        'distilled',
        s.temperature,
        async () =>
          (
            await trainDistilled(await needTrain(ctx, name), {
              arch,
              temperature: s.temperature,
              epochs: 20,
              teacherInit,
              studentFromTeacher: true,
              maxSeconds: s.trainSeconds / 2,
              augment: true,
            })
          ).student.model,
      );
      const student = useEngine(new LayersClassifier(m), ctx.engine).classifier;
      // Plain attack: cross-entropy on the student at T = 1 (masked); adaptive: the logit margin.
      return { name, title: `defensive distillation, T = ${s.temperature}`, classifier: student, plainTarget: student, adaptiveLoss: 'margin' };
    }
  }
}
