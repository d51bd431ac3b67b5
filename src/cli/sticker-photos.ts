/**
 * `advsign sticker --photos DIR`: real photos of the sign in the loop. Reads and splits the
 * folder by track (before the model loads, so bad folders fail fast), prepares the scenes once the
 * model's input size is known, and turns held-out measurements into the JSON block and the lines
 * the command prints.
 */
import type { Preprocess } from '../data/types';
import { UserError } from '../data/types';
import { PhotoFolder, readPhotoFolder, SignPhoto, splitPhotosByTrack } from '../data/sign-photos';
import { hashSeed } from '../data/random';
import { PhotoScene, photoScenes, PhotoSuccess } from '../sticker/photos';
import { HeldOutPhotoReport } from '../sticker/photo-measure';
import { signCanvas } from '../sticker/optimize';

export const PHOTO_HELP = `  --photos DIR        real photos of the sign in the loop: a GTSRB folder (photos of --sign from
                      its train split, tracks from the file names) or a folder of your own photos
                      (each photo = the sign's bounding square, or boxes.csv: file,x1,y1,x2,y2
                      [,track][,class]; one track per photo unless a track column says otherwise).
                      Held-out tracks measure success (never optimised on), next to random noise
                      and a uniform patch of the same area; writes sticker-report.html
  --holdout F         share of the tracks held out for measurement (default 0.3)
  --photo-share F     share of each step's EOT samples that are photo views (default 0.5)
  --photo-views N     views per held-out photo (default 4)
  --photo-angle DEG   the sticker's viewing angle on a photo, ±DEG yaw and pitch (default 20)
  --area F            the mask (--mask stripes|rect|circle|auto) sized to this share of the sign, e.g. 0.1
  --areas LIST        with --photos: also optimise and measure at these areas (e.g. 0.05,0.1,0.15,0.2)
                      for the report's success-against-area curve`;

export const PHOTO_FLAGS = {
  photos: { type: 'string' },
  holdout: { type: 'string' },
  'photo-share': { type: 'string' },
  'photo-views': { type: 'string' },
  'photo-angle': { type: 'string' },
  area: { type: 'string' },
  areas: { type: 'string' },
} as const;

export interface PhotoSplit {
  folder: PhotoFolder;
  train: SignPhoto[];
  heldOut: SignPhoto[];
  tracks: { train: number; heldOut: number };
}

export async function readPhotoSplit(dir: string, classId: number, holdout: number, seed: number): Promise<PhotoSplit> {
  const folder = await readPhotoFolder(dir, classId);
  const split = splitPhotosByTrack(folder.photos, holdout, hashSeed(seed, 0x7ac));
  return { folder, ...split };
}

export interface PreparedPhotos {
  split: PhotoSplit;
  train: PhotoScene[];
  heldOut: PhotoScene[];
}

/** Scenes at the model's input size and crop (the ROI margin of 'crop', the whole photo for 'whole'). */
export function preparePhotos(split: PhotoSplit, classId: number, inputSize: number, preprocess: Preprocess, supersample: number): PreparedPhotos {
  const g = { outputSize: inputSize, supersample, margin: preprocess === 'whole' ? null : 0.1, signInBox: split.folder.signInBox };
  const art = signCanvas(classId, 64);
  return { split, train: photoScenes(split.train, g, art), heldOut: photoScenes(split.heldOut, g, art) };
}

/** Parses --areas: a comma-separated list of shares in (0, 0.5]. */
export function parseAreas(text: string, parse: (t: string, flag: string) => number): number[] {
  const list = text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .map((t) => parse(t, '--areas'));
  if (list.length === 0) throw new UserError(`--areas needs at least one share, e.g. 0.05,0.1,0.15,0.2`);
  return [...new Set(list)].sort((a, b) => a - b);
}

const brief = (s: PhotoSuccess) => ({ views: s.views, successRate: s.successRate, untargetedRate: s.untargetedRate });

/** The JSON block for a held-out measurement (per-photo arrays left out). */
export function photoReportJson(r: HeldOutPhotoReport) {
  return {
    photos: r.photos,
    viewsPerPhoto: r.viewsPerPhoto,
    seed: r.seed,
    clean: r.clean,
    sticker: brief(r.sticker),
    noise: brief(r.noise),
    uniform: brief(r.uniform),
    byCondition: r.byCondition,
  };
}

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

/** What the command prints about the held-out photos. */
export function photoLines(r: HeldOutPhotoReport, p: PreparedPhotos, targeted: boolean, area: number): string[] {
  const what = targeted ? 'targeted' : 'untargeted';
  const lines = [
    `real photos (${p.split.folder.kind === 'gtsrb' ? 'GTSRB' : 'own'}): optimised with ${p.train.length} photos of ${p.split.tracks.train} tracks; held out ${r.photos} photos of ${p.split.tracks.heldOut} tracks × ${r.viewsPerPhoto} views`,
    `held-out real-photo success (${what}), area ${pct(area)}: sticker ${pct(r.sticker.successRate)}, random noise ${pct(r.noise.successRate)}, uniform patch ${pct(r.uniform.successRate)}` +
      (targeted
        ? `; untargeted: sticker ${pct(r.sticker.untargetedRate)}, noise ${pct(r.noise.untargetedRate)}, uniform ${pct(r.uniform.untargetedRate)}`
        : ''),
    `clean held-out photos under the same views: classified correctly ${pct(r.clean.accuracy)}${targeted ? `, as the target ${pct(r.clean.targetRate)}` : ''}`,
  ];
  const bins = (name: string, unit: string, b: HeldOutPhotoReport['byCondition']['sizePx']) =>
    `  by ${name}: ` + b.map((x) => `${x.from.toFixed(unit === 'px' ? 0 : 2)}–${x.to.toFixed(unit === 'px' ? 0 : 2)}${unit} ${pct(x.success)}`).join(', ');
  lines.push(
    'sticker success per condition (terciles of the held-out photos):',
    bins('sign size', 'px', r.byCondition.sizePx),
    bins('brightness', '', r.byCondition.brightness),
    bins('sharpness', '', r.byCondition.sharpness),
  );
  return lines;
}
