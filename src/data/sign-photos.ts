/**
 * Real photos of one sign for `advsign sticker --photos DIR`: a GTSRB folder (either layout; the
 * class comes from its CSV, the train split, tracks from file names) or a folder of the user's
 * own photos, each the sign's bounding square unless `boxes.csv` gives a box (file,x1,y1,x2,y2
 * and optionally track and class columns). Photos are split by track: held-out tracks measure,
 * the rest are optimised on, so near-identical frames never sit on both sides.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLASS_NAMES } from './classes';
import { detectLayout, readGtsrbPhotos, SignPhoto } from './gtsrb';
import { loadImageFile, Roi } from './image-io';
import { createRng } from './random';
import { UserError } from './types';

export type { SignPhoto } from './gtsrb';

export interface PhotoFolder {
  kind: 'gtsrb' | 'own';
  dir: string;
  photos: SignPhoto[];
  /**
   * The side of the sign's bounding square as a fraction of its box. GTSRB boxes run wider than
   * the sign (on the shared copy's stop photos the red octagon spans a median 0.85 of the box; the
   * white rim takes it to about 0.9); a user's own photo or box is the bounding square itself.
   */
  signInBox: number;
}

export const GTSRB_SIGN_IN_BOX = 0.9;
const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.ppm', '.bmp', '.tif', '.tiff']);
const BOXES_CSV = 'boxes.csv';

function isGtsrbFolder(dir: string): boolean {
  try {
    detectLayout(dir);
    return true;
  } catch {
    return false;
  }
}

interface BoxRow {
  roi: Roi | null;
  group: string | null;
  classId: number | null;
}

/** boxes.csv: header with file,x1,y1,x2,y2 (any order), optional track and class columns. */
function readBoxes(file: string): Map<string, BoxRow> {
  const lines = fs
    .readFileSync(file, 'utf8')
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '');
  const delim = (lines[0] ?? '').includes(';') ? ';' : ',';
  const head = (lines[0] ?? '').split(delim).map((h) => h.trim().toLowerCase());
  const col = (n: string) => head.indexOf(n);
  const need = ['file', 'x1', 'y1', 'x2', 'y2'];
  const missing = need.filter((n) => col(n) < 0);
  if (missing.length) throw new UserError(`${file}: header needs ${need.join(',')} (missing ${missing.join(', ')})`);
  const out = new Map<string, BoxRow>();
  lines.slice(1).forEach((line, i) => {
    const f = line.split(delim).map((c) => c.trim());
    const [x1, y1, x2, y2] = ['x1', 'y1', 'x2', 'y2'].map((n) => Number(f[col(n)]));
    if (![x1, y1, x2, y2].every(Number.isFinite) || x2 <= x1 || y2 <= y1)
      throw new UserError(`${file}:${i + 2}: box must be four numbers with x2 > x1 and y2 > y1`);
    const cls = col('class') >= 0 && f[col('class')] !== '' ? Number(f[col('class')]) : null;
    if (cls !== null && !Number.isInteger(cls)) throw new UserError(`${file}:${i + 2}: class '${f[col('class')]}' is not a class id`);
    out.set(f[col('file')], { roi: { x1, y1, x2, y2 }, group: col('track') >= 0 ? f[col('track')] || null : null, classId: cls });
  });
  return out;
}

async function readOwnPhotos(dir: string, classId: number): Promise<SignPhoto[]> {
  const boxesFile = path.join(dir, BOXES_CSV);
  const boxes = fs.existsSync(boxesFile) ? readBoxes(boxesFile) : null;
  const names = boxes
    ? [...boxes.keys()]
    : fs
        .readdirSync(dir)
        .filter((n) => IMAGE_EXT.has(path.extname(n).toLowerCase()) && !n.startsWith('.'))
        .sort();
  const out: SignPhoto[] = [];
  for (const name of names) {
    const box = boxes?.get(name) ?? null;
    if (box?.classId !== null && box?.classId !== undefined && box.classId !== classId) continue;
    const image = await loadImageFile(path.join(dir, name));
    const roi = box?.roi ?? { x1: 0, y1: 0, x2: image.width - 1, y2: image.height - 1 };
    out.push({ file: path.join(dir, name), image, roi, classId, group: box?.group ?? name });
  }
  return out;
}

/** Reads the photos of class `classId` in `dir`; one-line errors for every way it can be unusable. */
export async function readPhotoFolder(dir: string, classId: number): Promise<PhotoFolder> {
  const st = fs.existsSync(dir) ? fs.statSync(dir) : null;
  if (!st) throw new UserError(`--photos folder not found: ${dir}`);
  if (!st.isDirectory()) throw new UserError(`--photos must be a folder of photos (or a GTSRB folder), got the file ${dir}`);
  const gtsrb = isGtsrbFolder(dir);
  const photos = gtsrb ? await readGtsrbPhotos(dir, 'train', classId) : await readOwnPhotos(dir, classId);
  if (photos.length === 0) {
    throw new UserError(
      gtsrb
        ? `${dir}: no photos of class ${classId} (${CLASS_NAMES[classId] ?? '?'}) in its train split`
        : `${dir}: no photos of the sign (image files, or the files listed in ${BOXES_CSV} with class ${classId})`,
    );
  }
  return { kind: gtsrb ? 'gtsrb' : 'own', dir, photos, signInBox: gtsrb ? GTSRB_SIGN_IN_BOX : 1 };
}

/**
 * Splits photos by track: about `heldOutFraction` of the tracks (at least one, never all) are
 * held out. Deterministic for a seed.
 */
export function splitPhotosByTrack(
  photos: SignPhoto[],
  heldOutFraction: number,
  seed: number,
): { train: SignPhoto[]; heldOut: SignPhoto[]; tracks: { train: number; heldOut: number } } {
  const groups = [...new Set(photos.map((p) => p.group))].sort();
  if (groups.length < 2) {
    throw new UserError(
      `the photos form ${groups.length} track: at least 2 are needed to hold some out (own photos: one track per photo unless ${BOXES_CSV} has a track column)`,
    );
  }
  const rng = createRng(seed);
  for (let i = groups.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [groups[i], groups[j]] = [groups[j], groups[i]];
  }
  const k = Math.min(groups.length - 1, Math.max(1, Math.round(heldOutFraction * groups.length)));
  const held = new Set(groups.slice(0, k));
  return {
    train: photos.filter((p) => !held.has(p.group)),
    heldOut: photos.filter((p) => held.has(p.group)),
    tracks: { train: groups.length - k, heldOut: k },
  };
}
