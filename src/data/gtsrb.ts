/**
 * GTSRB readers for the Kaggle layout (Train.csv/Test.csv, PNG) and the official one
 * (GT-<class>.csv per class folder / GT-final_test.csv, semicolon CSVs, PPM), plus
 * group-aware splitting and an on-disk cache of decoded sets.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import * as zlib from 'zlib';
import { cropResize, decodeImage, RgbImage, Roi } from './image-io';
import { createRng } from './random';
import { ImageSet, Preprocess, UserError } from './types';
import { writeFileAtomic } from '../util/atomic-file';

export const GTSRB_CLASSES = 43;

export type GtsrbLayout = 'kaggle' | 'official';
export type GtsrbSplit = 'train' | 'test';

export interface ReadGtsrbOptions {
  split: GtsrbSplit;
  /** Output side length in pixels. */
  size: number;
  /** ROI enlargement on each side as a fraction of ROI size (default 0.1). */
  margin?: number;
  /** 'whole': ignore the ROI and resize the whole image (how many Keras GTSRB models were trained). */
  preprocess?: Preprocess;
  /** Read only about this many images, spread over all classes (deterministic). */
  limit?: number;
  onProgress?: (done: number, total: number) => void;
  /** Images decoded at once (default 8). */
  concurrency?: number;
}

/** One CSV row, resolved. */
interface Row {
  file: string;
  /** Other folders to try when `file` is missing (official test CSV stored apart from its images). */
  altDirs: string[];
  roi: Roi;
  csvWidth: number | null;
  csvHeight: number | null;
  classId: number;
  group: string;
  csv: string;
  line: number;
}

const BYTE_TO_FLOAT = new Float32Array(256);
for (let i = 0; i < 256; i++) BYTE_TO_FLOAT[i] = i / 255;

// ---------------------------------------------------------------- layout

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** Case-insensitive lookup of a file directly inside dir. */
function findEntry(dir: string, name: string): string | null {
  const lower = name.toLowerCase();
  for (const e of fs.readdirSync(dir)) {
    if (e.toLowerCase() === lower) {
      const p = path.join(dir, e);
      if (statOrNull(p)?.isFile()) return p;
    }
  }
  return null;
}

const GT_CSV = /^GT-.*\.csv$/i;
const GT_CLASS_CSV = /^GT-\d+\.csv$/i;

/** GT-*.csv files below dir (depth-limited, skipping hidden folders), sorted for determinism. */
function findGtCsvs(dir: string, maxDepth = 6): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (depth < maxDepth) walk(p, depth + 1);
      } else if (GT_CSV.test(e.name)) {
        found.push(p);
      }
    }
  };
  walk(dir, 0);
  return found.sort();
}

function checkDir(dir: string): void {
  const st = statOrNull(dir);
  if (!st) throw new UserError(`GTSRB folder not found: ${dir}`);
  if (!st.isDirectory()) throw new UserError(`not a folder: ${dir} (expected the GTSRB dataset folder)`);
  if (fs.readdirSync(dir).length === 0) throw new UserError(`GTSRB folder is empty: ${dir}`);
}

/** Which GTSRB layout `dir` holds; UserError if missing, empty or neither. */
export function detectLayout(dir: string): GtsrbLayout {
  checkDir(dir);
  if (findEntry(dir, 'Train.csv') || findEntry(dir, 'Test.csv')) return 'kaggle';
  if (findGtCsvs(dir).length > 0) return 'official';
  throw new UserError(`${dir} is not a GTSRB folder: expected Train.csv/Test.csv (Kaggle layout) or GT-*.csv files (official layout)`);
}

// ---------------------------------------------------------------- CSV

interface Csv {
  file: string;
  header: string[];
  /** [line number (1-based), fields] */
  rows: Array<[number, string[]]>;
}

function readCsv(file: string): Csv {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split(/\r\n|\n|\r/);
  let h = 0;
  while (h < lines.length && lines[h].trim() === '') h++;
  if (h === lines.length) throw new UserError(`${file}: empty CSV`);
  const delim = lines[h].includes(';') ? ';' : ',';
  const split = (s: string): string[] =>
    s.split(delim).map((f) =>
      f
        .trim()
        .replace(/^"(.*)"$/, '$1')
        .trim(),
    );
  const header = split(lines[h]);
  const rows: Array<[number, string[]]> = [];
  for (let i = h + 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    rows.push([i + 1, split(lines[i])]);
  }
  return { file, header, rows };
}

/** Column indexes by name (case-insensitive); UserError naming the first missing column. */
function columns<K extends string>(csv: Csv, required: readonly K[]): Record<K, number> {
  const lower = csv.header.map((h) => h.toLowerCase());
  const out = {} as Record<K, number>;
  for (const name of required) {
    const i = lower.indexOf(name.toLowerCase());
    if (i < 0) {
      throw new UserError(`${csv.file}: missing column "${name}" (header: ${csv.header.join(', ')})`);
    }
    out[name] = i;
  }
  return out;
}

function optionalColumn(csv: Csv, name: string): number {
  return csv.header.map((h) => h.toLowerCase()).indexOf(name.toLowerCase());
}

const ROI_COLS = ['Roi.X1', 'Roi.Y1', 'Roi.X2', 'Roi.Y2', 'ClassId'] as const;

function parseClassId(s: string, where: string): number {
  if (!/^\d+$/.test(s) || Number(s) >= GTSRB_CLASSES) {
    throw new UserError(`${where}: bad ClassId "${s}" (must be an integer 0..${GTSRB_CLASSES - 1})`);
  }
  return Number(s);
}

function parseNum(s: string, col: string, where: string): number {
  const v = Number(s);
  if (s === '' || !Number.isFinite(v) || v < 0) throw new UserError(`${where}: bad ${col} "${s}" (must be a number >= 0)`);
  return v;
}

/** Common row parsing; `nameCol` is Path (Kaggle) or Filename (official). */
function parseRows(csv: Csv, nameCol: string, baseDir: string, groupOf: (name: string, classId: number) => string, altDirs: string[]): Row[] {
  const c = columns(csv, [...ROI_COLS, nameCol]);
  const wCol = optionalColumn(csv, 'Width');
  const hCol = optionalColumn(csv, 'Height');
  const need = Math.max(...Object.values<number>(c), wCol, hCol) + 1;
  const out: Row[] = [];
  for (const [line, f] of csv.rows) {
    const where = `${csv.file}:${line}`;
    if (f.length < need) throw new UserError(`${where}: expected ${need} fields, found ${f.length}`);
    const classId = parseClassId(f[c.ClassId], where);
    const roi = {
      x1: parseNum(f[c['Roi.X1']], 'Roi.X1', where),
      y1: parseNum(f[c['Roi.Y1']], 'Roi.Y1', where),
      x2: parseNum(f[c['Roi.X2']], 'Roi.X2', where),
      y2: parseNum(f[c['Roi.Y2']], 'Roi.Y2', where),
    };
    if (roi.x2 < roi.x1 || roi.y2 < roi.y1) {
      throw new UserError(`${where}: empty ROI (${roi.x1},${roi.y1})-(${roi.x2},${roi.y2})`);
    }
    const name = f[c[nameCol]].replace(/\\/g, '/');
    if (name === '') throw new UserError(`${where}: empty ${nameCol}`);
    out.push({
      file: path.resolve(baseDir, name),
      altDirs,
      roi,
      csvWidth: wCol >= 0 ? parseNum(f[wCol], 'Width', where) || null : null,
      csvHeight: hCol >= 0 ? parseNum(f[hCol], 'Height', where) || null : null,
      classId,
      group: groupOf(name, classId),
      csv: csv.file,
      line,
    });
  }
  if (out.length === 0) throw new UserError(`${csv.file}: no images listed`);
  return out;
}

const pad5 = (n: number): string => String(n).padStart(5, '0');
const stem = (name: string): string => path.posix.basename(name).replace(/\.[^.]*$/, '');

/** Test images have no tracks: each is its own group. */
const testGroup = (name: string): string => `test:${name}`;

/** Kaggle Train/<cls>/<cls>_<track>_<frame>.png -> "<cls>_<track>" (unrecognised names: own group). */
function kaggleTrainGroup(name: string, classId: number): string {
  const m = /^(\d+)_(\d+)_(\d+)$/.exec(stem(name));
  return m ? `${m[1]}_${m[2]}` : `${pad5(classId)}_${name}`;
}

/** Official <class folder>/<track>_<frame>.ppm -> "<class>_<track>", same form as Kaggle groups. */
function officialTrainGroup(name: string, classId: number): string {
  const m = /^(\d+)_(\d+)$/.exec(stem(name));
  return m ? `${pad5(classId)}_${m[1]}` : `${pad5(classId)}_${name}`;
}

/** The CSV files a split reads (also feeds the cache key). */
function splitCsvs(dir: string, layout: GtsrbLayout, split: GtsrbSplit): string[] {
  if (layout === 'kaggle') {
    const name = split === 'train' ? 'Train.csv' : 'Test.csv';
    const f = findEntry(dir, name);
    if (!f) throw new UserError(`${dir}: no ${name} (Kaggle layout), cannot read the ${split} split`);
    return [f];
  }
  const all = findGtCsvs(dir);
  if (split === 'train') {
    const train = all.filter((f) => GT_CLASS_CSV.test(path.basename(f)));
    if (train.length === 0) throw new UserError(`${dir}: no per-class GT-<class>.csv files found for the train split`);
    return train;
  }
  // The official test images ship with GT-final_test.test.csv (no ClassId); labels come in
  // a separate GT-final_test.csv. Prefer that one, else any non-class GT csv with ClassId.
  const others = all.filter((f) => !GT_CLASS_CSV.test(path.basename(f)));
  const labelled = others.filter((f) => optionalColumn(readCsvHeaderOnly(f), 'ClassId') >= 0);
  if (labelled.length === 0) {
    throw new UserError(
      others.length > 0
        ? `${others[0]}: test CSV has no ClassId column; put GT-final_test.csv (from GTSRB_Final_Test_GT.zip) in ${dir}`
        : `${dir}: no test CSV found (expected GT-final_test.csv)`,
    );
  }
  const preferred = labelled.find((f) => path.basename(f).toLowerCase() === 'gt-final_test.csv');
  return [preferred ?? labelled[0]];
}

function readCsvHeaderOnly(file: string): Csv {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const first =
      buf
        .subarray(0, n)
        .toString('utf8')
        .replace(/^\uFEFF/, '')
        .split(/\r\n|\n|\r/)[0] ?? '';
    const delim = first.includes(';') ? ';' : ',';
    return { file, header: first.split(delim).map((s) => s.trim().replace(/^"(.*)"$/, '$1')), rows: [] };
  } finally {
    fs.closeSync(fd);
  }
}

function listRows(dir: string, layout: GtsrbLayout, split: GtsrbSplit, csvs: string[]): Row[] {
  if (layout === 'kaggle') {
    return parseRows(readCsv(csvs[0]), 'Path', dir, split === 'train' ? kaggleTrainGroup : testGroup, []);
  }
  if (split === 'train') {
    return csvs.flatMap((f) => parseRows(readCsv(f), 'Filename', path.dirname(f), officialTrainGroup, []));
  }
  const alt = findGtCsvs(dir)
    .filter((f) => !GT_CLASS_CSV.test(path.basename(f)) && f !== csvs[0])
    .map((f) => path.dirname(f));
  return parseRows(readCsv(csvs[0]), 'Filename', path.dirname(csvs[0]), testGroup, [...new Set(alt)]);
}

// ---------------------------------------------------------------- selection

/**
 * Deterministic subset of about `limit` rows: each class gets a share proportional to its
 * size (at least one when limit >= number of classes), taken evenly spaced within the class
 * so several tracks are covered. Original order is kept.
 */
function selectRows(rows: Row[], limit: number): Row[] {
  if (limit >= rows.length) return rows;
  const byClass = new Map<number, number[]>();
  rows.forEach((r, i) => {
    const list = byClass.get(r.classId);
    if (list) list.push(i);
    else byClass.set(r.classId, [i]);
  });
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const quota = new Map<number, number>();
  if (limit < classes.length) {
    // Too few for one per class: spread the picks over the class list.
    for (let k = 0; k < limit; k++) quota.set(classes[Math.floor(((k + 0.5) * classes.length) / limit)], 1);
  } else {
    let left = limit;
    for (const c of classes) {
      quota.set(c, 1);
      left--;
    }
    // Largest-remainder allocation of the rest, proportional to class size.
    const spare = rows.length - classes.length;
    const frac: Array<[number, number]> = [];
    for (const c of classes) {
      const cap = byClass.get(c)!.length - 1;
      const exact = spare > 0 ? (left * cap) / spare : 0;
      const whole = Math.min(cap, Math.floor(exact));
      quota.set(c, quota.get(c)! + whole);
      frac.push([c, exact - whole]);
    }
    left = limit - [...quota.values()].reduce((a, b) => a + b, 0);
    frac.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    for (let k = 0; left > 0 && k < frac.length * 2; k++) {
      const c = frac[k % frac.length][0];
      if (quota.get(c)! < byClass.get(c)!.length) {
        quota.set(c, quota.get(c)! + 1);
        left--;
      }
    }
  }
  const keep: number[] = [];
  for (const [c, q] of quota) {
    const idx = byClass.get(c)!;
    for (let j = 0; j < q; j++) keep.push(idx[Math.floor(((j + 0.5) * idx.length) / q)]);
  }
  keep.sort((a, b) => a - b);
  return keep.map((i) => rows[i]);
}

// ---------------------------------------------------------------- reading

// The callback readFile is markedly cheaper than fs.promises.readFile for many small files.
const readFileCb = promisify(fs.readFile);

async function readRowBytes(row: Row): Promise<Buffer> {
  const candidates = [row.file, ...row.altDirs.map((d) => path.join(d, path.basename(row.file)))];
  for (const f of candidates) {
    try {
      return await readFileCb(f);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new UserError(`${row.csv}:${row.line}: cannot read ${f} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      }
    }
  }
  throw new UserError(`${row.csv}:${row.line}: image not found: ${row.file}`);
}

/** `margin` null: the whole image, not the ROI. */
function checkOptions(opts: ReadGtsrbOptions): { margin: number | null; limit: number | null; concurrency: number } {
  if (opts.split !== 'train' && opts.split !== 'test') throw new UserError(`split must be "train" or "test", got "${String(opts.split)}"`);
  if (!(Number.isInteger(opts.size) && opts.size > 0 && opts.size <= 1024)) {
    throw new UserError(`image size must be an integer 1..1024, got ${opts.size}`);
  }
  const margin = opts.margin ?? 0.1;
  if (!(Number.isFinite(margin) && margin >= 0 && margin <= 2)) throw new UserError(`margin must be 0..2, got ${margin}`);
  const limit = opts.limit ?? null;
  if (limit !== null && !(Number.isInteger(limit) && limit > 0)) throw new UserError(`limit must be a positive integer, got ${limit}`);
  const concurrency = opts.concurrency ?? 8;
  if (!(Number.isInteger(concurrency) && concurrency > 0)) throw new UserError(`concurrency must be a positive integer, got ${concurrency}`);
  if (opts.preprocess !== undefined && opts.preprocess !== 'crop' && opts.preprocess !== 'whole') {
    throw new UserError(`preprocess must be "crop" or "whole", got "${String(opts.preprocess)}"`);
  }
  return { margin: opts.preprocess === 'whole' ? null : margin, limit, concurrency };
}

/**
 * Reads one split of a GTSRB folder (either layout) into an ImageSet: each image is
 * cropped to its ROI (+margin), resized to size×size and rounded to multiples of 1/255
 * (the source is 8-bit; rounding makes cached and uncached reads bit-identical).
 * Order follows the CSV(s); decoding runs `concurrency` images at a time.
 */
export async function readGtsrb(dir: string, opts: ReadGtsrbOptions): Promise<ImageSet> {
  const o = checkOptions(opts);
  const layout = detectLayout(dir);
  const csvs = splitCsvs(dir, layout, opts.split);
  return readRows(selectRows(listRows(dir, layout, opts.split, csvs), o.limit ?? Infinity), opts.size, o.margin, o.concurrency, opts.onProgress);
}

async function readRows(
  rows: Row[],
  size: number,
  margin: number | null,
  concurrency: number,
  onProgress?: (done: number, total: number) => void,
): Promise<ImageSet> {
  const n = rows.length;
  const stride = size * size * 3;
  const images = new Float32Array(n * stride);
  const labels = new Int32Array(n);
  const groups = new Array<string>(n);
  let next = 0;
  let done = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < n) {
      const i = next++;
      const row = rows[i];
      try {
        const bytes = await readRowBytes(row);
        const img = await decodeImage(bytes, `${row.file} (${path.basename(row.csv)} line ${row.line})`);
        const roi = roiInImage(row, img);
        const px = margin === null ? cropResize(img, null, size, 0) : cropResize(img, roi, size, margin);
        const base = i * stride;
        for (let k = 0; k < stride; k++) {
          const v = px[k] * 255 + 0.5;
          images[base + k] = BYTE_TO_FLOAT[v >= 255 ? 255 : v > 0 ? v | 0 : 0];
        }
      } catch (err) {
        failed = true;
        throw err;
      }
      labels[i] = row.classId;
      groups[i] = row.group;
      done++;
      onProgress?.(done, n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { images, labels, groups, size, n };
}

/** The row's ROI in the decoded image (scaled with it when the image was resized after the CSV was written). */
function roiInImage(row: Row, img: RgbImage): Roi {
  const roi = row.roi;
  if (!(row.csvWidth && row.csvHeight && (row.csvWidth !== img.width || row.csvHeight !== img.height))) return roi;
  const sx = img.width / row.csvWidth;
  const sy = img.height / row.csvHeight;
  return { x1: roi.x1 * sx, y1: roi.y1 * sy, x2: (roi.x2 + 1) * sx - 1, y2: (roi.y2 + 1) * sy - 1 };
}

/** One photo of a sign, whole, with its box (as the CSV gives it) and its track. */
export interface SignPhoto {
  file: string;
  image: RgbImage;
  roi: Roi;
  classId: number;
  /** Track (GTSRB) or the user's grouping: photos of one track are never split apart. */
  group: string;
}

/** The photos of one class in a GTSRB split, decoded whole (for pasting onto them); [] when it has none. */
export async function readGtsrbPhotos(dir: string, split: GtsrbSplit, classId: number): Promise<SignPhoto[]> {
  const layout = detectLayout(dir);
  const rows = listRows(dir, layout, split, splitCsvs(dir, layout, split)).filter((r) => r.classId === classId);
  const out: SignPhoto[] = [];
  for (const row of rows) {
    const image = await decodeImage(await readRowBytes(row), `${row.file} (${path.basename(row.csv)} line ${row.line})`);
    out.push({ file: row.file, image, roi: roiInImage(row, image), classId, group: row.group });
  }
  return out;
}

// ---------------------------------------------------------------- set helpers

/** Copies the given images (in the given order) into a new set. */
export function subset(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const stride = set.size * set.size * 3;
  const n = indices.length;
  const images = new Float32Array(n * stride);
  const labels = new Int32Array(n);
  const groups = new Array<string>(n);
  for (let k = 0; k < n; k++) {
    const i = indices[k];
    if (!(Number.isInteger(i) && i >= 0 && i < set.n)) throw new RangeError(`subset index ${i} out of range 0..${set.n - 1}`);
    images.set(set.images.subarray(i * stride, (i + 1) * stride), k * stride);
    labels[k] = set.labels[i];
    groups[k] = set.groups[i];
  }
  return { images, labels, groups, size: set.size, n };
}

/**
 * The set in a model's label space: `outputIds[j]` is the GTSRB class of output j (−1: none).
 * Images of classes the model does not have are left out; labels become output indices.
 */
export function relabelForModel(set: ImageSet, outputIds: Int32Array): { set: ImageSet; dropped: number } {
  const outputOf = new Map<number, number>();
  outputIds.forEach((id, j) => {
    if (id >= 0 && !outputOf.has(id)) outputOf.set(id, j);
  });
  const keep: number[] = [];
  for (let i = 0; i < set.n; i++) if (outputOf.has(set.labels[i])) keep.push(i);
  const out = subset(set, keep);
  for (let k = 0; k < out.n; k++) out.labels[k] = outputOf.get(out.labels[k]) as number;
  return { set: out, dropped: set.n - out.n };
}

export function concatSets(a: ImageSet, b: ImageSet): ImageSet {
  if (a.size !== b.size) throw new UserError(`cannot combine image sets of different sizes (${a.size} and ${b.size})`);
  const stride = a.size * a.size * 3;
  const images = new Float32Array((a.n + b.n) * stride);
  images.set(a.images.subarray(0, a.n * stride), 0);
  images.set(b.images.subarray(0, b.n * stride), a.n * stride);
  const labels = new Int32Array(a.n + b.n);
  labels.set(a.labels.subarray(0, a.n), 0);
  labels.set(b.labels.subarray(0, b.n), a.n);
  return { images, labels, groups: [...a.groups.slice(0, a.n), ...b.groups.slice(0, b.n)], size: a.size, n: a.n + b.n };
}

/**
 * Splits by group (track) so no group lands in both parts. Per class, about
 * valFraction of its groups go to validation: at least one when the class has >= 2
 * groups (and at least one always stays in train). A group's class is the label of its
 * first image. Deterministic for a given seed; original order is kept in both parts.
 */
export function splitByGroup(set: ImageSet, valFraction: number, seed: number): { train: ImageSet; val: ImageSet } {
  if (!(Number.isFinite(valFraction) && valFraction >= 0 && valFraction < 1)) {
    throw new UserError(`validation fraction must be in [0, 1), got ${valFraction}`);
  }
  const groupClass = new Map<string, number>();
  for (let i = 0; i < set.n; i++) if (!groupClass.has(set.groups[i])) groupClass.set(set.groups[i], set.labels[i]);
  const byClass = new Map<number, string[]>();
  for (const [g, c] of groupClass) {
    const list = byClass.get(c);
    if (list) list.push(g);
    else byClass.set(c, [g]);
  }
  const rng = createRng(seed);
  const valGroups = new Set<string>();
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const gs = byClass.get(c)!.sort();
    if (valFraction === 0 || gs.length < 2) continue;
    const k = Math.min(gs.length - 1, Math.max(1, Math.round(valFraction * gs.length)));
    // Partial Fisher-Yates: the first k after shuffling go to validation.
    for (let j = 0; j < k; j++) {
      const r = j + Math.floor(rng() * (gs.length - j));
      [gs[j], gs[r]] = [gs[r], gs[j]];
      valGroups.add(gs[j]);
    }
  }
  const tr: number[] = [];
  const va: number[] = [];
  for (let i = 0; i < set.n; i++) (valGroups.has(set.groups[i]) ? va : tr).push(i);
  return { train: subset(set, tr), val: subset(set, va) };
}

// ---------------------------------------------------------------- cache

const CACHE_MAGIC = Buffer.from('ADVSGTS1', 'latin1');
const CACHE_VERSION = 1;

export function defaultCacheDir(): string {
  return process.env.ADVSIGN_CACHE || path.join(os.homedir(), '.cache', 'advsign');
}

interface CacheHeader {
  version: number;
  key: string;
  n: number;
  size: number;
  groups: string[];
  crc: number;
}

/**
 * Cache file layout: magic(8) | u32 header length | header JSON | pad to 4 |
 * labels int32[n] | pixels uint8[n*size*size*3]. Pixels are exact because readGtsrb
 * already rounds to multiples of 1/255; crc32 covers labels and pixels.
 */
function encodeCache(set: ImageSet, key: string): Buffer {
  const stride = set.size * set.size * 3;
  const body = Buffer.alloc(set.n * 4 + set.n * stride);
  Buffer.from(set.labels.buffer, set.labels.byteOffset, set.n * 4).copy(body, 0);
  const px = body.subarray(set.n * 4);
  for (let i = 0; i < set.n * stride; i++) {
    const v = set.images[i] * 255 + 0.5;
    px[i] = v >= 255 ? 255 : v > 0 ? v | 0 : 0;
  }
  const header: CacheHeader = { version: CACHE_VERSION, key, n: set.n, size: set.size, groups: set.groups, crc: zlib.crc32(body) };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pre = 8 + 4 + json.length;
  const pad = (4 - (pre % 4)) % 4;
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length + pad, 0);
  return Buffer.concat([CACHE_MAGIC, len, json, Buffer.alloc(pad, 0x20), body]);
}

/** Parses a cache file; null when it is corrupt, truncated or for another key. */
function decodeCache(buf: Buffer, key: string): ImageSet | null {
  try {
    if (buf.length < 12 || !buf.subarray(0, 8).equals(CACHE_MAGIC)) return null;
    const hlen = buf.readUInt32LE(8);
    if (12 + hlen > buf.length) return null;
    const h = JSON.parse(buf.subarray(12, 12 + hlen).toString('utf8')) as CacheHeader;
    if (h.version !== CACHE_VERSION || h.key !== key) return null;
    if (!(Number.isInteger(h.n) && h.n >= 0 && Number.isInteger(h.size) && h.size > 0)) return null;
    if (!Array.isArray(h.groups) || h.groups.length !== h.n || !h.groups.every((g) => typeof g === 'string')) return null;
    const stride = h.size * h.size * 3;
    const body = buf.subarray(12 + hlen);
    if (body.length !== h.n * 4 + h.n * stride || zlib.crc32(body) !== h.crc) return null;
    const labels = new Int32Array(h.n);
    Buffer.from(labels.buffer).set(body.subarray(0, h.n * 4));
    for (let i = 0; i < h.n; i++) if (labels[i] < 0 || labels[i] >= GTSRB_CLASSES) return null;
    const px = body.subarray(h.n * 4);
    const images = new Float32Array(h.n * stride);
    for (let i = 0; i < px.length; i++) images[i] = BYTE_TO_FLOAT[px[i]];
    return { images, labels, groups: h.groups, size: h.size, n: h.n };
  } catch {
    return null;
  }
}

/**
 * readGtsrb with an on-disk cache (default ADVSIGN_CACHE or ~/.cache/advsign). The key
 * covers the folder, options and the CSVs' paths, sizes and mtimes (not every image's,
 * which would cost as much as a stat of the whole set). A corrupt or stale file is
 * ignored and rebuilt; failure to write the cache does not fail the read.
 */
export async function readGtsrbCached(dir: string, opts: ReadGtsrbOptions, cacheDir: string = defaultCacheDir()): Promise<ImageSet> {
  const o = checkOptions(opts);
  const layout = detectLayout(dir);
  const csvs = splitCsvs(dir, layout, opts.split);
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        v: CACHE_VERSION,
        dir: fs.realpathSync(dir),
        layout,
        split: opts.split,
        size: opts.size,
        margin: o.margin,
        limit: o.limit,
        csvs: csvs.map((f) => {
          const st = fs.statSync(f);
          return [f, st.size, st.mtimeMs];
        }),
      }),
    )
    .digest('hex');
  const file = path.join(cacheDir, `gtsrb-${opts.split}-${opts.size}-${key.slice(0, 16)}.bin`);
  let cached: Buffer | null = null;
  try {
    cached = await fs.promises.readFile(file);
  } catch {
    cached = null;
  }
  if (cached) {
    const set = decodeCache(cached, key);
    if (set) {
      opts.onProgress?.(set.n, set.n);
      return set;
    }
  }
  const set = await readRows(selectRows(listRows(dir, layout, opts.split, csvs), o.limit ?? Infinity), opts.size, o.margin, o.concurrency, opts.onProgress);
  try {
    writeFileAtomic(file, encodeCache(set, key));
  } catch {
    /* no cache this time (read-only or full disk): the images were read all the same */
  }
  return set;
}
