/**
 * Resolves a `--data` argument: the word `synthetic` (the project's own renderer, the embedded
 * default) or a GTSRB folder in either layout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageSet, Preprocess, UserError } from './types';
import { readGtsrbCached, GtsrbSplit } from './gtsrb';
import { renderDataset } from './synthetic';
import { Progress, progressBar } from '../util/progress';

export interface LoadOptions {
  split: GtsrbSplit;
  size: number;
  limit?: number;
  /** Synthetic only: images per class (default 200 for train, 40 for test). */
  perClass?: number;
  progress?: boolean;
  /** GTSRB folders: crop to each sign's ROI (default) or resize the whole photo. */
  preprocess?: Preprocess;
}

/** Seeds keep synthetic train and test disjoint and reproducible. */
const SYNTHETIC_SEEDS: Record<GtsrbSplit, number> = { train: 1001, test: 2002 };

export function isSynthetic(spec: string): boolean {
  return spec.trim().toLowerCase() === 'synthetic';
}

/** The shared GTSRB copy used for development and CI, when it is there. */
export function sharedGtsrbDir(): string | null {
  const candidates = [
    process.env.ADVSIGN_GTSRB,
    path.resolve(__dirname, '../../../../shared/data/gtsrb'),
    path.resolve(process.cwd(), '../shared/data/gtsrb'),
  ].filter((p): p is string => Boolean(p));
  return candidates.find((p) => fs.existsSync(path.join(p, 'Train.csv'))) ?? null;
}

export async function loadDataset(spec: string, o: LoadOptions): Promise<ImageSet> {
  if (isSynthetic(spec)) {
    let perClass = o.perClass ?? (o.split === 'train' ? 200 : 40);
    if (o.limit) perClass = Math.max(1, Math.min(perClass, Math.ceil(o.limit / 43)));
    const set = renderDataset({ perClass, size: o.size, seed: SYNTHETIC_SEEDS[o.split], augment: true });
    return set;
  }
  const dir = path.resolve(spec);
  if (!fs.existsSync(dir)) throw new UserError(`dataset folder not found: ${spec} (give a GTSRB folder or 'synthetic')`);
  // The total is known only once the CSVs are read, so the bar starts with the first report.
  let bar: Progress | null = null;
  const set = await readGtsrbCached(dir, {
    split: o.split,
    size: o.size,
    limit: o.limit,
    preprocess: o.preprocess,
    onProgress: o.progress
      ? (done, total) => {
          bar ??= progressBar(`reading ${o.split}`, total);
          bar.update(done);
        }
      : undefined,
  });
  (bar as Progress | null)?.done(`${set.n} images`);
  if (set.n === 0) throw new UserError(`no ${o.split} images in ${spec}`);
  return set;
}
